"""Population-batched evaluator: every (candidate, task, seed) network of a generation trains at once.

One candidate at a time, the time goes to Python and kernel launches, not arithmetic (docs/design.md §4).
Here the networks of a whole chunk of candidates are stacked:

- Parameters live in one flat buffer per chunk, each layer a contiguous [P, fan_in, fan_out] view, so
  a layer is one `baddbmm` for all P networks and Adam is a handful of elementwise ops on the buffer.
- Forward and backward are written out by hand (no autograd graph to build every step). The
  activation comes from an interpreter (`gpact.train.interpreters`), which runs every candidate's
  `gpact.train.program` Program and yields value and derivative together (dual numbers), so the backward
  pass through it is one multiply; nothing is compiled per generation.
- No operation mixes networks: losses, gradients and updates are per network. A network whose loss
  turns non-finite or exceeds `clip_loss` is marked failed (on the device, no host sync) and scored
  worst, exactly as the reference evaluator would, and the other networks' numbers are the same as in a
  batch without it.

Initial weights come from `gpact.train.mlp.init_params`, as in the reference evaluator, and Adam follows
torch.optim.Adam's arithmetic, so the two evaluators agree to float32 rounding (tests/test_batched.py
states the tolerance). A formula the program lowering cannot express runs on the reference evaluator.

With a protocol distribution (gpact.train.protocol), networks of one training differ in learning rate (a
per-network rate in Adam) and steps (a network that has done its steps stops updating while the others go
on). Width and depth change tensor shapes, so networks are grouped by those, and the groups train in
lockstep: their hidden layers i share one activation call per step, so the call count does not grow
with the number of groups.
"""

from __future__ import annotations

import functools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sympy as sp
import torch

from gpact.config import ProtocolDist, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.train.fitness import Fitness, aggregate, evaluate_reference
from gpact.train.interpreters import make_interpreter
from gpact.train.mlp import DEFAULT_CONFIG, init_params, layer_sizes
from gpact.train.program import MAX_REGS, Program, ProgramError, lower_all
from gpact.train.protocol import draw, widest
from gpact.train.reference import WORST, TrainResult
from gpact.train.tasks import Task

Progress = Callable[[int, int], None]

# ---------------------------------------------------------------------------------------------------------
# Training


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but torch sees no CUDA device")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device '{device}' (use auto, cpu or cuda)") from None


@dataclass
class _Stack:
    """Parameters (or their gradients / Adam moments) of P networks in one flat buffer."""

    flat: torch.Tensor
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # (W [P, fi, fo], b [P, 1, fo]) views into flat

    @classmethod
    def empty_like(cls, other: _Stack) -> _Stack:
        return cls.view(torch.zeros_like(other.flat), [w.shape for w, _ in other.layers])

    @classmethod
    def view(cls, flat: torch.Tensor, shapes: list[torch.Size]) -> _Stack:
        layers, off = [], 0
        for p, fi, fo in shapes:
            w = flat[off: off + p * fi * fo].view(p, fi, fo)
            off += p * fi * fo
            b = flat[off: off + p * fo].view(p, 1, fo)
            off += p * fo
            layers.append((w, b))
        return cls(flat, layers)


@dataclass(frozen=True)
class Net:
    """One network of a batched training: its task, initialisation seed and protocol."""

    task: Task
    seed: int
    cfg: TrainConfig


def _initial_stack(nets: list[Net], n_cand: int, d_in: int, device: torch.device) -> _Stack:
    """init_params per network, the first layer zero-padded to d_in inputs, repeated per candidate."""
    per_net = []
    for net in nets:
        params = init_params(net.task.x_train.shape[1], net.cfg, net.seed)
        w0, b0 = params[0]
        params[0] = (torch.cat([w0, w0.new_zeros(d_in - w0.shape[0], w0.shape[1])]), b0)
        per_net.append(params)
    cfg = nets[0].cfg
    sizes = layer_sizes(d_in, cfg)
    shapes = [torch.Size((n_cand * len(per_net), fi, fo)) for fi, fo in zip(sizes[:-1], sizes[1:], strict=True)]
    parts = []
    for layer in range(len(shapes)):
        w = torch.stack([p[layer][0] for p in per_net]).repeat(n_cand, 1, 1)
        b = torch.stack([p[layer][1] for p in per_net]).unsqueeze(1).repeat(n_cand, 1, 1)
        parts += [w.reshape(-1), b.reshape(-1)]
    return _Stack.view(torch.cat(parts).to(device, cfg.torch_dtype), shapes)


def _data(nets: list[Net], n_cand: int, d_in: int, split: str, device: torch.device, dtype: torch.dtype):
    """[P, N, d_in] inputs and [P, N, 1] targets, network p = (candidate, net) in that order."""
    xs, ys = [], []
    for net in nets:
        t = net.task
        x, y = (t.x_train, t.y_train) if split == "train" else (t.x_ood, t.y_ood)
        xs.append(torch.cat([x, x.new_zeros(x.shape[0], d_in - x.shape[1])], 1))
        ys.append(y)
    x = torch.stack(xs).repeat(n_cand, 1, 1)
    y = torch.stack(ys).repeat(n_cand, 1, 1)
    return x.to(device, dtype), y.to(device, dtype)


class PhaseClock:
    """Seconds spent per phase of the training step (`gpact bench --roofline`), summed over steps.

    Each phase is bracketed by a device synchronisation, so timing costs speed: the trainer is only
    given a clock when a breakdown is asked for, and then runs without candidate threads.
    """

    PHASES = ("matmul", "activation", "loss", "backward", "adam", "other")

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self.steps = 0
        self._t = 0.0

    def start(self) -> None:
        """Begin a phase (the time since the last `lap` or `start` is not counted)."""
        _sync(self.device)
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        """End `phase`: the time since the last lap (or start) is its."""
        _sync(self.device)
        now = time.perf_counter()
        self.seconds[phase] += now - self._t
        self._t = now


class _NoClock:
    """The clock of a normal training: does nothing, reads nothing back from the device."""

    def start(self) -> None:
        pass

    def lap(self, phase: str) -> None:
        pass


_NO_CLOCK = _NoClock()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _affine(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h @ w + b per network, [P, N, fo]. One input: an outer product, elementwise (one rounding per
    product, as the reference's mm). One output: computed as w^T h^T, a row times a matrix, which the BLAS
    does twice as fast as the matrix-vector product h @ w (the order of the sum is the BLAS's either way)."""
    if w.shape[2] == 1:
        return torch.baddbmm(b, w.transpose(1, 2), h.transpose(1, 2)).transpose(1, 2)
    if w.shape[1] == 1:
        return torch.addcmul(b, h, w)
    return torch.baddbmm(b, h, w)


def _forward(stacks: list[_Stack], xs: list[torch.Tensor], act: Callable, n_cand: int, deriv: bool,
             clock: PhaseClock | _NoClock = _NO_CLOCK):
    """Per stack: network outputs [P, N, 1], per hidden layer (its input, act' at its pre-activation), and
    the last hidden output. Stacks (of different widths, depths, sizes) go through layer i together: one
    activation call for all their hidden layers i, on each candidate's pre-activations side by side."""
    hs, saved = list(xs), [[] for _ in stacks]
    outs: list[torch.Tensor | None] = [None] * len(stacks)
    lasts: list[torch.Tensor | None] = [None] * len(stacks)
    for i in range(max(len(s.layers) for s in stacks)):
        hidden = []
        for g, stack in enumerate(stacks):
            if i < len(stack.layers):
                z = _affine(hs[g], *stack.layers[i])
                clock.lap("matmul")
                if i == len(stack.layers) - 1:
                    outs[g], lasts[g] = z, hs[g]
                else:
                    hidden.append((g, z))
        if not hidden:
            continue
        flat = [z.view(n_cand, -1) for _, z in hidden]
        if hasattr(act, "at"):  # trainable constants (gpact.train.trainable): each layer has its own
            act.at(i, [stacks[g] for g, _ in hidden], [f.shape[1] for f in flat])
        a, d = act(flat[0] if len(flat) == 1 else torch.cat(flat, 1), deriv)
        clock.lap("activation")
        off = 0
        for (g, z), f in zip(hidden, flat, strict=True):
            cols = slice(off, off + f.shape[1])
            off += f.shape[1]
            saved[g].append((hs[g], None if d is None else d[:, cols].reshape(z.shape)))
            hs[g] = a[:, cols].reshape(z.shape)
        clock.lap("other")
    return outs, saved, lasts


def _backward(stack: _Stack, grads: _Stack, err: torch.Tensor, saved, h_last: torch.Tensor,
              clock: PhaseClock | _NoClock = _NO_CLOCK, on_grad: Callable[[int, torch.Tensor], None] | None = None,
              ) -> None:
    """Gradients of mean((out - y)^2) per network, written into `grads`; `on_grad(i, dL/d act_i)` per hidden
    layer (the activation's own parameters, gpact.train.trainable)."""
    g = err * (2.0 / err.shape[1])
    w_last, _ = stack.layers[-1]
    gw, gb = grads.layers[-1]
    torch.sum(g, 1, keepdim=True, out=gb)
    clock.lap("backward")
    torch.bmm(g.transpose(1, 2), h_last, out=gw.view(gw.shape[0], 1, gw.shape[1]))  # (h^T g)^T: see _affine
    gh = g * w_last.transpose(1, 2)  # an outer product: the bmm's numbers, elementwise
    clock.lap("matmul")
    for i in range(len(saved) - 1, -1, -1):
        h_in, slope = saved[i]
        if on_grad is not None:
            on_grad(i, gh)
        gz = gh * slope
        gw, gb = grads.layers[i]
        torch.sum(gz, 1, keepdim=True, out=gb)
        clock.lap("backward")
        torch.bmm(h_in.transpose(1, 2), gz, out=gw)
        if i:
            gh = torch.bmm(gz, stack.layers[i][0].transpose(1, 2))
        clock.lap("matmul")


class _Adam:
    """torch.optim.Adam's update (defaults betas 0.9, 0.999, eps 1e-8), on a whole flat buffer at once.

    `lr` is one rate, or a rate per parameter (per network, see `_per_param`); a parameter whose rate is 0
    does not move, even where its gradient is not finite. The step count and the bias corrections live on
    the device (float64, as torch.optim.Adam's Python floats), so a step reads nothing back to the host.
    """

    def __init__(self, params: torch.Tensor, lr: float | torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8):
        self.p, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m, self.v = torch.zeros_like(params), torch.zeros_like(params)
        self.t = torch.zeros((), dtype=torch.float64, device=params.device)

    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t.add_(1)
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        correction1 = 1 - torch.pow(b1, self.t)
        denom = (self.v.sqrt() / torch.sqrt(1 - torch.pow(b2, self.t)).to(self.p.dtype)).add_(self.eps)
        if isinstance(self.lr, torch.Tensor):
            step_size = self.lr / correction1.to(self.p.dtype)
            self.p.sub_(torch.where(step_size > 0, self.m / denom * step_size, 0.0))
        else:  # p + (-lr / c1) * m / denom, rounded as addcdiv_(m, denom, value=-lr / c1) rounds it
            self.p.addcdiv_(self.m * (-self.lr / correction1).to(self.p.dtype), denom)


def _per_param(stack: _Stack, values: list[float], n_cand: int) -> torch.Tensor:
    """A flat buffer like `stack.flat` holding, for every parameter, its network's value (`values` per net)."""
    v = torch.tensor(values, dtype=stack.flat.dtype, device=stack.flat.device).repeat(n_cand)[:, None, None]
    return torch.cat([v.expand_as(t).reshape(-1) for layer in stack.layers for t in layer])


def _rates(stack: _Stack, nets: list[Net], n_cand: int, step: int) -> torch.Tensor | float:
    """Adam's rate at `step`: one float when every network shares it, else per parameter, 0 once a network
    has done its steps."""
    lrs = [n.cfg.lr if step < n.cfg.steps else 0.0 for n in nets]
    return lrs[0] if len(set(lrs)) == 1 else _per_param(stack, lrs, n_cand)


_NONFINITE, _DIVERGED = 1, 2
_REASONS = {_NONFINITE: "nonfinite", _DIVERGED: "diverged"}


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).square().mean((1, 2))


def _record(failed: torch.Tensor, code: torch.Tensor) -> None:
    """Keep each network's first failure code (0: none so far), in place, without a host sync."""
    failed.copy_(torch.where(failed == 0, code.to(failed.dtype), failed))


def _check(loss: torch.Tensor, failed: torch.Tensor, clip: float) -> None:
    """A loss that is non-finite, or above `clip`, fails its network (as in the reference evaluator)."""
    _record(failed, torch.where(~torch.isfinite(loss), _NONFINITE, torch.where(loss > clip, _DIVERGED, 0)))


def train_batched(programs: Sequence[Program], tasks: list[Task], seeds: Sequence[int],
                  cfg: TrainConfig = DEFAULT_CONFIG, device: str | torch.device = "cpu",
                  kernel: str = "auto") -> list[list[TrainResult]]:
    """Train every (program, task, seed) network together; results[c][t * len(seeds) + s].

    All tasks must share n_train and n_ood (evaluate_batched groups them); input dimensions may differ.
    """
    return train_nets(programs, [Net(t, s, cfg) for t in tasks for s in seeds], device, kernel)


def train_nets(programs: Sequence[Program], nets: list[Net], device: str | torch.device = "cpu",
               kernel: str = "auto") -> list[list[TrainResult]]:
    """Train every (program, net) network together; results[c][n].

    The nets must share split sizes, width, depth, dtype and clip_loss; learning rate and steps may differ.
    """
    return train_groups(programs, [nets], device, kernel)[0]


@dataclass
class _Group:
    """One group's training state: nets of one shape, their parameters, data, optimiser and failures."""

    nets: list[Net]
    stack: _Stack
    grads: _Stack
    x: torch.Tensor
    y: torch.Tensor
    adam: _Adam
    failed: torch.Tensor
    steps: int  # its longest network's steps; 0 once every network has failed

    @property
    def cfg(self) -> TrainConfig:
        return self.nets[0].cfg


def _start(nets: list[Net], n_cand: int, device: torch.device) -> _Group:
    if len({(n.task.x_train.shape[0], n.task.x_ood.shape[0]) for n in nets}) != 1:
        raise ConfigError("train_batched needs tasks with equal n_train and n_ood")
    if len({(n.cfg.width, n.cfg.depth, n.cfg.dtype, n.cfg.clip_loss) for n in nets}) != 1:
        raise ConfigError("train_nets needs networks of one width, depth, dtype and clip_loss")
    d_in = max(n.task.x_train.shape[1] for n in nets)
    stack = _initial_stack(nets, n_cand, d_in, device)
    x, y = _data(nets, n_cand, d_in, "train", device, nets[0].cfg.torch_dtype)
    failed = torch.zeros(x.shape[0], dtype=torch.int8, device=device)
    return _Group(nets, stack, _Stack.empty_like(stack), x, y, _Adam(stack.flat, _rates(stack, nets, n_cand, 0)),
                  failed, max(n.cfg.steps for n in nets))


def train_groups(programs: Sequence[Program], groups: list[list[Net]], device: str | torch.device = "cpu",
                 kernel: str = "auto", clock: PhaseClock | None = None) -> list[list[list[TrainResult]]]:
    """Train groups of nets (each as `train_nets` takes them) in lockstep; results[g][c][n].

    Each step, every group's hidden layer i goes through one activation call, so the call count follows
    the deepest group, not the number of groups. Groups must share the dtype.

    On CPU the candidates are split into one contiguous part per torch thread, each part a training of its
    own in a thread of its own, with torch's intra-op threads set to 1 meanwhile: the cores never wait at
    a barrier inside a small op, and no operation mixes networks, so the split changes no number. A
    `clock` (a per-phase breakdown) runs the step in one part.
    """
    device = torch.device(device)
    n_cand = len(programs)
    if not n_cand or not groups:
        return [[[] for _ in programs] for _ in groups]
    if len({n.cfg.dtype for nets in groups for n in nets}) != 1:
        raise ConfigError("train_groups needs networks of one dtype")
    if device.type != "cpu":
        return _train(programs, groups, device, kernel, clock or _NO_CLOCK)
    forced = os.environ.get("GPACT_KERNEL", "auto") if kernel == "auto" else kernel
    # the Triton kernel (on CPU only under TRITON_INTERPRET=1) runs from one thread: its interpreter is not
    # thread-safe
    n_parts = 1 if clock is not None or forced == "triton" else min(torch.get_num_threads(), n_cand)
    bounds = [n_cand * i // n_parts for i in range(n_parts + 1)]
    parts = [list(programs[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    done = map_parts(lambda part: _train(part, groups, device, kernel, clock or _NO_CLOCK), parts)
    return [[res for part in done for res in part[g]] for g in range(len(groups))]


def map_parts(fn: Callable, parts: list) -> list:
    """[fn(part) for part in parts], one thread per part, torch's intra-op threads set to 1 meanwhile: the CPU
    trainer's parallelism (also how `gpact bench --roofline` measures the peaks it is compared with)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [fn(parts[0])] if len(parts) == 1 else list(_pool(len(parts)).map(fn, parts))
    finally:
        torch.set_num_threads(threads)


@functools.cache
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n, thread_name_prefix="gpact-train")


def _train(programs: Sequence[Program], groups: list[list[Net]], device: torch.device, kernel: str,
           clock: PhaseClock | _NoClock) -> list[list[list[TrainResult]]]:
    n_cand = len(programs)
    state = [_start(nets, n_cand, device) for nets in groups]
    dtype = state[0].cfg.torch_dtype
    act = make_interpreter(programs, device, dtype, kernel)
    consts = act if hasattr(act, "start") else None  # trainable constants: per network and layer
    if consts is not None:
        consts.start([(g.stack, g.nets) for g in state], _Adam)
    with torch.no_grad():
        for step in range(max(g.steps for g in state)):
            live = [g for g in state if step < g.steps]
            if not live:
                break  # every network of every group diverged
            for g in live:
                if step in {n.cfg.steps for n in g.nets}:
                    g.adam.lr = _rates(g.stack, g.nets, n_cand, step)
            _step(live, act, n_cand, clock, consts, step)
            if device.type == "cpu" and step % 64 == 63:  # host memory: reading it back is no device sync
                for g in live:
                    if bool((g.failed != 0).all()):
                        g.steps = 0  # everything diverged: nothing left to learn
        for g in state:
            finite = torch.stack([torch.isfinite(t).flatten(1).all(1) for layer in g.stack.layers for t in layer])
            _record(g.failed, torch.where(finite.all(0), 0, _NONFINITE))
        stacks = [g.stack for g in state]
        id_losses = [_mse(out, g.y) for out, g in
                     zip(_forward(stacks, [g.x for g in state], act, n_cand, deriv=False)[0], state, strict=True)]
        ood = [_data(g.nets, n_cand, g.x.shape[2], "ood", device, dtype) for g in state]
        ood_losses = [_mse(out, y) for out, (_, y) in
                      zip(_forward(stacks, [x for x, _ in ood], act, n_cand, deriv=False)[0], ood, strict=True)]
        for g, id_loss, ood_loss in zip(state, id_losses, ood_losses, strict=True):
            _check(id_loss, g.failed, g.cfg.clip_loss)
            _record(g.failed, torch.where(torch.isfinite(ood_loss), 0, _NONFINITE))
    results = [_results(g, i, o, n_cand) for g, i, o in zip(state, id_losses, ood_losses, strict=True)]
    return results if consts is None else [consts.learned(g.stack, r) for g, r in zip(state, results, strict=True)]


def _step(live: list[_Group], act: Callable, n_cand: int, clock: PhaseClock | _NoClock, consts=None,
          step: int = 0) -> None:
    """One Adam step of every live group (and of the activations' trainable constants, `consts`, when there are:
    gpact.train.trainable). Reads nothing back to the host (tests/test_batched.py checks it on fake tensors,
    where any such read raises), so on a GPU it never waits for the device."""
    clock.start()
    outs, saved, lasts = _forward([g.stack for g in live], [g.x for g in live], act, n_cand, True, clock)
    for g, out, sv, h_last in zip(live, outs, saved, lasts, strict=True):
        err = out - g.y
        _check(err.square().mean((1, 2)), g.failed, g.cfg.clip_loss)
        clock.lap("loss")
        _backward(g.stack, g.grads, err, sv, h_last, clock, consts and consts.grad_hook(g.stack))
        g.adam.step(g.grads.flat)
        if consts is not None:
            consts.step(g.stack, step)
        clock.lap("adam")
    if isinstance(clock, PhaseClock):
        clock.steps += 1


def _results(g: _Group, id_loss: torch.Tensor, ood_loss: torch.Tensor, n_cand: int) -> list[list[TrainResult]]:
    per_net = zip(g.failed.tolist(), id_loss.tolist(), ood_loss.tolist(), strict=True)
    results = [
        TrainResult(WORST, WORST, True, _REASONS[f]) if f else TrainResult(min(i, WORST), min(o, WORST), False)
        for f, i, o in per_net
    ]
    per_cand = len(g.nets)
    return [results[c * per_cand: (c + 1) * per_cand] for c in range(n_cand)]


# ---------------------------------------------------------------------------------------------------------
# Memory estimate and the evaluation entry point


def bytes_per_candidate(tasks: list[Task], n_seeds: int, cfg: TrainConfig, n_regs: int = MAX_REGS) -> int:
    """Peak device memory one candidate's networks need in `train_batched` (a generous estimate)."""
    n = max(max(t.x_train.shape[0], t.x_ood.shape[0]) for t in tasks)
    d_in = max(t.x_train.shape[1] for t in tasks)
    hidden = n * cfg.width
    # per hidden layer: z, saved input and slope, gradient temporaries; shared: the register file
    # (value + slope per register) and the op temporaries of one group
    floats = hidden * (6 * cfg.depth + 2 * (n_regs + 1) + 6) + 4 * n * (d_in + 1)
    sizes = layer_sizes(d_in, cfg)
    floats += 4 * sum((fi + 1) * fo for fi, fo in zip(sizes[:-1], sizes[1:], strict=True))  # p, grad, m, v
    return torch.finfo(cfg.torch_dtype).bits // 8 * floats * len(tasks) * n_seeds


def memory_budget(device: torch.device) -> int:
    """Bytes the batched evaluator may use: GPACT_MEMORY_BYTES, else half of the free GPU memory on CUDA, or
    on CPU half of the available RAM, at most CPU_BUDGET (bigger chunks gain nothing on a CPU)."""
    if os.environ.get("GPACT_MEMORY_BYTES"):
        return int(float(os.environ["GPACT_MEMORY_BYTES"]))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    available = available_ram()
    return CPU_BUDGET if available is None else max(1, min(CPU_BUDGET, available // 2))


CPU_BUDGET = 2 << 30


def available_ram() -> int | None:
    """Bytes of RAM this process can still take without swapping, or None where unknown: Linux MemAvailable,
    capped by the container's cgroup limit (cgroup v2 memory.max less memory.current) when there is one."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f_max, open("/sys/fs/cgroup/memory.current") as f_cur:
            limit = f_max.read().strip()
            if limit != "max":
                found.append(max(0, int(limit) - int(f_cur.read())))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def chunk_candidates(tasks: list[Task], n_seeds: int, cfg: TrainConfig = DEFAULT_CONFIG,
                     device: str | torch.device = "auto", n_regs: int = MAX_REGS) -> int:
    """How many candidates fit in one batched training on `device` (at least 1)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    return max(1, memory_budget(dev) // bytes_per_candidate(tasks, n_seeds, cfg, n_regs))


def _group_nets(nets: list[Net]) -> list[list[int]]:
    """Indices of the nets that can train in one tensor program: equal split sizes, width and depth."""
    groups: dict[tuple[int, int, int, int], list[int]] = defaultdict(list)
    for i, n in enumerate(nets):
        groups[(n.task.x_train.shape[0], n.task.x_ood.shape[0], n.cfg.width, n.cfg.depth)].append(i)
    return list(groups.values())


def _train_chunk(progs: list[Program], nets: list[Net], groups: list[list[int]], dev: torch.device,
                 kernel: str) -> list[list[TrainResult]]:
    """Per candidate, the results of every net in `nets` order; all groups in one train_groups."""
    results: list[list[TrainResult]] = [[None] * len(nets) for _ in progs]  # type: ignore[list-item]
    trained = train_groups(progs, [[nets[i] for i in group] for group in groups], dev, kernel)
    for group, per_cand in zip(groups, trained, strict=True):
        for j, res in enumerate(per_cand):
            for i, r in zip(group, res, strict=True):
                results[j][i] = r
    return results


def evaluate_batched(exprs: Sequence[sp.Expr], grammar: Grammar | None, tasks: list[Task], seeds: Sequence[int],
                     cfg: TrainConfig = DEFAULT_CONFIG, device: str = "auto",
                     progress: Progress | None = None, kernel: str = "auto",
                     protocol: ProtocolDist | None = None) -> list[Fitness]:
    """Score formulas like `fitness.evaluate_reference` does, all lowered ones trained together.

    Candidates are split into chunks by the memory estimate (halved and retried if the device still runs
    out of memory), and networks into groups of equal split sizes, width and depth (`protocol` draws
    those per (task, seed) network; None: all train with `cfg`).
    A formula with no program form (an `import:` primitive with no base op) runs on the reference path.
    """
    if not tasks or not seeds:
        raise ConfigError("evaluate_batched needs at least one task and one seed")
    dev = resolve_device(device)
    lowered = lower_all(exprs, grammar)
    todo = [i for i, p in enumerate(lowered) if isinstance(p, Program)]
    out: list[Fitness | None] = [None] * len(exprs)
    total, done = len(exprs), 0
    if todo:
        n_regs = max(lowered[i].n_regs for i in todo)
        chunk = chunk_candidates(tasks, len(seeds), widest(protocol, cfg), dev, n_regs)
        nets = [Net(t, s, draw(protocol, cfg, t.spec.name, s)) for t in tasks for s in seeds]
        groups = _group_nets(nets)
        n_seeds = len(seeds)
        start = 0
        while start < len(todo):
            ids = todo[start: start + chunk]
            try:
                results = _train_chunk([lowered[i] for i in ids], nets, groups, dev, kernel)
            except torch.OutOfMemoryError:
                if len(ids) == 1:
                    raise
                chunk = max(1, len(ids) // 2)  # the estimate was too hopeful for this device: halve and retry
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            for j, i in enumerate(ids):
                out[i] = aggregate({t.spec.name: results[j][k * n_seeds: (k + 1) * n_seeds]
                                    for k, t in enumerate(tasks)}, seeds)
            start += len(ids)
            done += len(ids)
            if progress:
                progress(done, total)
    from gpact.expr.trees import compile_expr  # reference fallback for what has no program

    for i, p in enumerate(lowered):
        if isinstance(p, ProgramError):
            out[i] = evaluate_reference(compile_expr(exprs[i], grammar), tasks, seeds, cfg, protocol)
            done += 1
            if progress:
                progress(done, total)
    return out  # type: ignore[return-value]


__all__ = [
    "train_batched", "train_nets", "train_groups", "Net", "evaluate_batched", "chunk_candidates", "bytes_per_candidate",
    "memory_budget", "resolve_device", "PhaseClock", "map_parts",
]  # fmt: skip
