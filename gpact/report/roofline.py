"""`gpact bench --roofline`: how far the batched evaluator is from what this machine's building blocks allow.

Three measurements on the machine it runs on, and one model:

- peaks: the batched matmul of the protocol's widest layer (fp32, all candidates' networks in one call)
  and the bandwidth of an elementwise op on a tensor the size of one hidden layer of the whole batch;
- the work of one training (`work`): matmul FLOPs (forward, weight gradient, input gradient), and the
  bytes a perfectly fused step would still move (each hidden tensor written and read the fewest times
  the hand-written step allows, Adam's buffers once); elementwise FLOPs are left out (they are small
  next to the matmuls, and the transcendental ones are what the breakdown shows);
- the limit: trainings/s if each training took max(FLOPs / peak FLOP/s, bytes / bandwidth), an upper
  bound no implementation reaches; the evaluator's trainings/s as a fraction of it;
- the step, phase by phase (matmul, activation value and slope, loss, backward elementwise, Adam,
  other), from a short training with a clock, and the shared-activation ceiling: the same trainer with
  every network using GELU, which shows what distinct formulas cost over one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch

from gpact.config import TrainConfig
from gpact.expr.grammar import load_grammar
from gpact.expr.trees import formula_to_sympy
from gpact.report.bench import candidate_mix, workload
from gpact.train.batched import Net, PhaseClock, map_parts, resolve_device, train_batched, train_groups
from gpact.train.mlp import layer_sizes
from gpact.train.program import lower

HIDDEN_PASSES = 13  # per hidden layer and step, fully fused: matmul writes z; act reads z, writes value and
# slope; next matmul reads value; backward: gh written, read with the slope, gz written, read by the bias
# sum and both gradient matmuls, the layer input read again by the weight-gradient matmul
ADAM_PASSES = 8  # gradient written; parameters, gradient, both moments read; parameters and moments written


@dataclass(frozen=True)
class Roofline:
    device: str
    setting: str
    candidates: int
    networks: int  # trained in the timed run: candidates x networks per candidate
    steps: int
    matmul_gflops: float  # measured peak, fp32 batched matmul at the widest layer's shape
    bandwidth_gbs: float  # measured, elementwise op over one hidden layer of the whole batch
    gflop_per_training: float
    mbytes_per_training: float
    limit_trainings_per_s: float  # what the peaks allow: 1 / max(FLOPs / peak, bytes / bandwidth)
    batched_trainings_per_s: float
    fraction: float  # batched / limit
    shared_trainings_per_s: float  # the same trainer, every network GELU
    shared_fraction: float
    distinct_vs_shared: float  # batched / shared: what distinct formulas cost
    step_ms: float  # one step of the timed population, from the clocked run (sum of the phases)
    phase_ms: dict[str, float]  # per step
    phase_share: dict[str, float]  # of step_ms
    repeat: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def work(d_in: int, n_train: int, n_ood: int, width: int, depth: int, steps: int) -> tuple[float, float]:
    """(FLOPs, bytes in float32) of one training: `steps` steps on n_train points, then one forward on
    the train and one on the OOD points."""
    sizes = layer_sizes(d_in, TrainConfig(width=width, depth=depth))
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    fwd = sum(2 * fi * fo for fi, fo in layers)
    bwd = sum(2 * fi * fo for fi, fo in layers) + sum(2 * fi * fo for fi, fo in layers[1:])
    flops = steps * n_train * (fwd + bwd) + (n_train + n_ood) * fwd
    params = sum((fi + 1) * fo for fi, fo in layers)
    floats = steps * (HIDDEN_PASSES * depth * n_train * width + ADAM_PASSES * params)
    floats += (n_train + n_ood) * 2 * depth * width  # the final forwards: each hidden tensor written, read
    return float(flops), 4.0 * floats


def _median_seconds(fn: Callable[[], object], repeat: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peaks(n_nets: int, n_train: int, width: int, device: torch.device) -> tuple[float, float]:
    """(GFLOP/s of [P, N, W] @ [P, W, W], GB/s of an elementwise add over [P, N, W]), fp32, measured here.

    On CPU the P networks are split over one thread per core with torch's intra-op threads at 1, as the
    trainer runs them (`batched.map_parts`); on CUDA one call each."""
    h = torch.rand(n_nets, n_train, width, device=device)
    w = torch.rand(n_nets, width, width, device=device)
    out = torch.empty_like(h)
    if device.type == "cuda":
        mm = _median_seconds(lambda: (torch.bmm(h, w, out=out), torch.cuda.synchronize(device)))
        add = _median_seconds(lambda: (torch.add(h, out, out=out), torch.cuda.synchronize(device)))
    else:
        n = min(torch.get_num_threads(), n_nets)
        cut = [n_nets * i // n for i in range(n + 1)]
        parts = [slice(lo, hi) for lo, hi in zip(cut[:-1], cut[1:], strict=True)]
        mm = _median_seconds(lambda: map_parts(lambda s: torch.bmm(h[s], w[s], out=out[s]), parts))
        add = _median_seconds(lambda: map_parts(lambda s: torch.add(h[s], out[s], out=out[s]), parts))
    return 2.0 * h.numel() * width / mm / 1e9, 3.0 * 4 * h.numel() / add / 1e9


def _time_training(programs, w, dev, kernel: str, repeat: int) -> float:
    """Median seconds of one batched training of `programs` on workload `w`."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        train_batched(programs, w.tasks, w.seeds, w.cfg, dev, kernel)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_roofline(candidates: int = 64, device: str = "auto", steps: int | None = None, setting: str = "protocol",
                 kernel: str = "auto", repeat: int = 1, clock_steps: int = 20,
                 echo: Callable[[str], None] = lambda s: None) -> Roofline:
    """Measure the peaks, time the evaluator and the shared-GELU ceiling, and clock one short training."""
    dev = resolve_device(device)
    g = load_grammar("full")
    w = workload(setting, steps)
    cfg = w.cfg
    programs = [lower(e, g) for _, e in candidate_mix(g, candidates)]
    gelu = [lower(formula_to_sympy("gelu(x)", g), g)] * len(programs)
    n_nets = len(programs) * w.networks
    n_train = w.tasks[0].x_train.shape[0]
    d_in = max(t.x_train.shape[1] for t in w.tasks)
    echo(f"roofline ({setting}): {len(programs)} candidates x {w.networks} networks, {cfg.steps} steps, "
         f"device {dev}")
    mm_gflops, bw_gbs = peaks(n_nets, n_train, cfg.width, dev)
    flops, nbytes = work(d_in, n_train, w.tasks[0].x_ood.shape[0], cfg.width, cfg.depth, cfg.steps)
    limit = 1.0 / max(flops / (mm_gflops * 1e9), nbytes / (bw_gbs * 1e9))
    train_batched(programs[:4], w.tasks, w.seeds, replace(cfg, steps=2), dev, kernel)  # warm-up
    batched = n_nets / _time_training(programs, w, dev, kernel, repeat)
    echo(f"  batched: {batched:.2f} trainings/s")
    shared = n_nets / _time_training(gelu, w, dev, kernel, repeat)
    echo(f"  shared GELU: {shared:.2f} trainings/s")
    clock = PhaseClock(dev)
    n_clock = max(1, min(clock_steps, cfg.steps))
    train_groups(programs, [[Net(t, s, replace(cfg, steps=n_clock)) for t in w.tasks for s in w.seeds]], dev,
                 kernel, clock=clock)
    phase_ms = {k: 1e3 * v / max(clock.steps, 1) for k, v in clock.seconds.items()}
    step_ms = sum(phase_ms.values())
    return Roofline(
        str(dev), setting, len(programs), n_nets, cfg.steps, mm_gflops, bw_gbs, flops / 1e9, nbytes / 1e6, limit,
        batched, batched / limit, shared, shared / limit, batched / shared, step_ms, phase_ms,
        {k: v / step_ms if step_ms else 0.0 for k, v in phase_ms.items()}, repeat)


def format_roofline(r: Roofline) -> str:
    """The report as text: peaks, work, limit and fractions, then the step's phases."""
    lines = [
        f"device {r.device}, setting {r.setting}: {r.candidates} candidates, {r.networks} trainings, {r.steps} steps",
        f"peaks:     batched matmul {r.matmul_gflops:8.1f} GFLOP/s, elementwise {r.bandwidth_gbs:8.1f} GB/s",
        f"work:      {r.gflop_per_training:8.3f} GFLOP and {r.mbytes_per_training:8.1f} MB per training",
        f"limit:     {r.limit_trainings_per_s:9.2f} trainings/s",
        f"batched:   {r.batched_trainings_per_s:9.2f} trainings/s = {100 * r.fraction:5.1f}% of the limit",
        f"all GELU:  {r.shared_trainings_per_s:9.2f} trainings/s = {100 * r.shared_fraction:5.1f}% of the limit "
        f"(distinct formulas run at {100 * r.distinct_vs_shared:.0f}% of it)",
        f"one step ({r.step_ms:.2f} ms, without candidate threads):",
    ]
    lines += [f"  {k:<10} {r.phase_ms[k]:8.2f} ms  {100 * r.phase_share[k]:5.1f}%" for k in r.phase_ms]
    return "\n".join(lines)
