"""Scale-out: the search hands a generation's candidates to a backend and gets one Fitness per candidate back.

- `serial` (default): `evaluate_population` in this process. The reference every other backend must match.
- `process`: local worker processes (`multiprocess`, spawn start method: CUDA can't fork), one per visible
  GPU, or N on CPU.
- `ray`: Ray actors on a local Ray or on a running cluster, one GPU each where the cluster has GPUs.

Work travels as text, never as pickled DEAP or sympy objects: each candidate as an exact formula string
(`expr_to_text`), the grammar as its YAML text, the tasks as (names, sizes, seed), the training config as a
dict; results come back as plain dicts. Workers rebuild grammar and tasks once per context and keep them, so
they stay warm across generations. The evaluator trains every candidate on its own, so a candidate's fitness
does not depend on which chunk it lands in: every backend gives the serial backend's numbers.

Faults: a worker that dies (killed, out of memory) or runs past `chunk_timeout` on a chunk is replaced and
its chunk re-run once, on another worker where there is one; a second failure scores the chunk's candidates
WORST with the reason, so the run always completes.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import os
import random
import signal
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sympy as sp
import torch
import yaml
from sympy.core.function import UndefinedFunction

from gpact.config import BACKENDS, TrainConfig
from gpact.errors import ConfigError, FormulaError, GpactError
from gpact.expr.grammar import Grammar, Primitive, grammar_from_dict
from gpact.expr.symbolic import X
from gpact.train.evaluate import Progress, evaluate_population
from gpact.train.fitness import WORST, Fitness
from gpact.train.mlp import DEFAULT_CONFIG
from gpact.train.tasks import Task, make_suite

ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `gpact/`: workers must import this tree
STARTUP_TIMEOUT = 600.0  # seconds without any worker ready before giving up (a cluster with no room, say)


class BackendError(GpactError):
    """Workers cannot be started or reached, or a worker raised (the serial backend would have raised too)."""


class Backend(Protocol):
    """Formulas in, one Fitness each out, with `evaluate_population`'s signature; `close` frees workers."""

    name: str
    faults: list[str]  # why chunk attempts failed (worker died, timed out), for the run's summary

    def evaluate(self, exprs: Sequence[sp.Expr], grammar: Grammar, tasks: list[Task], seeds: Sequence[int],
                 cfg: TrainConfig = DEFAULT_CONFIG, evaluator: str = "auto", device: str = "auto",
                 progress: Progress | None = None) -> list[Fitness]: ...

    def check(self, grammar: Grammar) -> None: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def make_backend(name: str = "serial", workers: int = 0, ray_address: str = "", chunk_timeout: float = 0.0,
                 device: str = "auto", task_seed: int = 0) -> Backend:
    """The backend called `name`; `task_seed` is the seed the run's task suites were built with."""
    if name == "serial":
        return SerialBackend()
    if name == "process":
        return ProcessBackend(workers, device, chunk_timeout, task_seed)
    if name == "ray":
        return RayBackend(workers, ray_address, device, chunk_timeout, task_seed)
    raise ConfigError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")


class SerialBackend:
    """This process, one call to the evaluator: the default."""

    name = "serial"

    def __init__(self) -> None:
        self.faults: list[str] = []

    def evaluate(self, exprs: Sequence[sp.Expr], grammar: Grammar, tasks: list[Task], seeds: Sequence[int],
                 cfg: TrainConfig = DEFAULT_CONFIG, evaluator: str = "auto", device: str = "auto",
                 progress: Progress | None = None) -> list[Fitness]:
        return evaluate_population(exprs, grammar, tasks, seeds, cfg, evaluator=evaluator, device=device,
                                   progress=progress)

    def check(self, grammar: Grammar) -> None:
        """Any grammar works in this process."""

    def describe(self) -> str:
        return "serial (this process)"

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------
# Wire format: formulas as exact text, parsed back without eval


_NUMBER_SYMBOLS = {"pi": sp.pi, "E": sp.E, "oo": sp.oo, "zoo": sp.zoo, "nan": sp.nan, "EulerGamma": sp.EulerGamma,
                   "GoldenRatio": sp.GoldenRatio, "Catalan": sp.Catalan}
_SYMBOL_NAMES = {v: k for k, v in _NUMBER_SYMBOLS.items()}


def expr_to_text(expr: sp.Expr) -> str:
    """A formula as exact prefix text, e.g. `Add(Mul(Rational(1, 10), sin(x)), gelu(x))`.

    Unlike `str(expr)`, the text rebuilds the very same expression tree (argument order, exact Floats),
    so a worker compiles the same torch function as this process and gets bit-identical losses.
    """
    if expr == X:
        return "x"
    if isinstance(expr, sp.Integer):
        return str(int(expr))
    if isinstance(expr, sp.Rational):
        return f"Rational({expr.p}, {expr.q})"
    if isinstance(expr, sp.Float):
        sign, man, exp, _ = expr._mpf_
        if not man and exp:  # mpmath's inf / nan encodings
            raise FormulaError(f"cannot ship the float {expr} to a worker")
        return f"Float({-man if sign else man}, {exp}, {expr._prec})"
    if expr in _SYMBOL_NAMES:
        return _SYMBOL_NAMES[expr]
    func = expr.func
    name = func.__name__
    if isinstance(func, UndefinedFunction):  # a named grammar primitive, gelu(x)
        head = f"Function({name!r})" if name in _reserved() else name
    elif getattr(sp, name, None) is func:
        head = name
    else:
        raise FormulaError(f"cannot ship {type(expr).__name__} in {expr} to a worker")
    return f"{head}({', '.join(expr_to_text(a) for a in expr.args)})"


def text_to_expr(text: str) -> sp.Expr:
    """Inverse of `expr_to_text`: walks Python's `ast`, builds sympy objects unevaluated; nothing is eval'ed."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"bad formula text {text[:80]!r}: {exc.msg}") from None
    return _build(tree.body)


def _build(node: ast.AST) -> sp.Expr:
    if isinstance(node, ast.Name):
        if node.id == "x":
            return X
        if node.id in _NUMBER_SYMBOLS:
            return _NUMBER_SYMBOLS[node.id]
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        return sp.Integer(node.value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -_build(node.operand)
    elif isinstance(node, ast.Call) and not node.keywords:
        if isinstance(node.func, ast.Call):  # Function('name')(args): a primitive named like a sympy class
            inner = node.func
            if (isinstance(inner.func, ast.Name) and inner.func.id == "Function" and len(inner.args) == 1
                    and isinstance(inner.args[0], ast.Constant) and isinstance(inner.args[0].value, str)):
                return sp.Function(inner.args[0].value)(*map(_build, node.args))
        elif isinstance(node.func, ast.Name):
            name, args = node.func.id, node.args
            if name == "Rational" and len(args) == 2:
                return sp.Rational(int(_build(args[0])), int(_build(args[1])))
            if name == "Float" and len(args) == 3:
                man, exp, prec = (int(_build(a)) for a in args)
                return sp.Float(sp.Integer(man) * sp.Integer(2) ** exp, precision=prec)
            cls = getattr(sp, name, None)
            built = [_build(a) for a in args]
            if isinstance(cls, type) and issubclass(cls, sp.Basic):
                return cls(*built, evaluate=False)
            if name.isidentifier() and cls is None:
                return sp.Function(name)(*built)
    raise FormulaError(f"unexpected {ast.dump(node)[:80]} in formula text")


def _reserved() -> set[str]:
    return {"x", "Rational", "Float", "Function", *_NUMBER_SYMBOLS, *(n for n in dir(sp) if not n.startswith("_"))}


def _ship(expr: sp.Expr) -> str | None:
    """The text for `expr` if it rebuilds exactly, else None (that candidate is then evaluated here)."""
    try:
        text = expr_to_text(expr)
        return text if text_to_expr(text) == expr else None
    except (FormulaError, TypeError, ValueError, RecursionError):
        return None


# ---------------------------------------------------------------------------------------------------------
# Worker side: the same in a local process and in a Ray actor


class Worker:
    """Evaluates chunks exactly as the serial backend would; grammar and tasks built once per context (warm)."""

    def __init__(self, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self._contexts: OrderedDict[str, tuple[Grammar, list[Task]]] = OrderedDict()

    def run(self, ctx: dict[str, Any], texts: list[str], seeds: list[int], chunk: int, attempt: int) -> dict:
        """One chunk; the answer names its chunk and attempt, so a late answer is never taken for another."""
        _test_faults(ctx.get("faults", {}), chunk, attempt)
        grammar, tasks = self._context(ctx)
        fits = evaluate_population([text_to_expr(t) for t in texts], grammar, tasks, seeds,
                                   TrainConfig(**ctx["train"]), evaluator=ctx["evaluator"], device=ctx["device"])
        return {"chunk": chunk, "attempt": attempt, "fits": [dataclasses.asdict(f) for f in fits]}

    def _context(self, ctx: dict[str, Any]) -> tuple[Grammar, list[Task]]:
        key = ctx["key"]
        if key not in self._contexts:
            grammar = grammar_from_dict(yaml.safe_load(ctx["grammar"]), name=ctx["grammar_path"])
            tasks = make_suite(ctx["tasks"], n_train=ctx["n_train"], n_ood=ctx["n_ood"], seed=ctx["task_seed"])
            self._contexts[key] = (grammar, tasks)
            while len(self._contexts) > 8:  # a run uses 2-4 (its grammar and the references', search and holdout)
                self._contexts.popitem(last=False)
        self._contexts.move_to_end(key)
        return self._contexts[key]


def _test_faults(faults: dict[str, str], chunk: int, attempt: int) -> None:
    """Fault injection for the tests: GPACT_TEST_KILL_CHUNK / GPACT_TEST_HANG_CHUNK = "<chunk>" in the main
    process's environment makes the worker die / hang on the first attempt of that chunk (of every call),
    "<chunk>:always" on every attempt. The settings travel with the work, so they reach any worker."""
    for var in ("GPACT_TEST_KILL_CHUNK", "GPACT_TEST_HANG_CHUNK"):
        spec = faults.get(var, "")
        n, _, mode = spec.partition(":")
        if n and int(n) == chunk and (attempt == 0 or mode == "always"):
            if var == "GPACT_TEST_KILL_CHUNK":
                os._exit(3)
            time.sleep(3600)


def _process_main(conn, env: dict[str, str], threads: int) -> None:
    """A local worker process: report ready, then answer chunks until told to stop or the pipe closes."""
    os.environ.update(env)  # before anything touches CUDA: CUDA_VISIBLE_DEVICES pins this worker's GPU
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process, which finishes the generation
    worker = Worker(threads)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        try:
            conn.send(("done", worker.run(*msg)))
        except Exception as exc:  # the serial backend would raise this; the main process does
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _RayWorker:
    """Body of the Ray actor (wrapped by `ray.remote` in RayBackend, so ray is imported only when used)."""

    def __init__(self) -> None:
        self.worker = Worker()

    def ready(self) -> tuple[int, str]:
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, ctx: dict[str, Any], texts: list[str], seeds: list[int], chunk: int, attempt: int) -> dict:
        return self.worker.run(ctx, texts, seeds, chunk, attempt)


# ---------------------------------------------------------------------------------------------------------
# Main side: chunks, contexts and the fault policy, shared by the process and Ray backends


class _Pool(Protocol):
    """Worker slots. `start` is asynchronous (the slot reports "ready"); `poll` returns events
    (slot, kind, payload) with kind "ready", "done", "error" or "died"."""

    size: int

    def starting(self, slot: int) -> bool: ...

    def start(self, slot: int) -> None: ...

    def submit(self, slot: int, args: tuple) -> None: ...

    def poll(self, timeout: float | None) -> list[tuple[int, str, Any]]: ...

    def kill(self, slot: int) -> None: ...

    def close(self) -> None: ...


class _Distributed:
    """What the process and Ray backends share: plain chunks out, plain records back, faults handled."""

    name = "?"

    def __init__(self, workers: int, device: str, chunk_timeout: float, task_seed: int):
        if workers < 0 or chunk_timeout < 0:
            raise ConfigError("workers and chunk_timeout must be >= 0 (0: automatic / no limit)")
        self.workers, self.device, self.chunk_timeout, self.task_seed = workers, device, chunk_timeout, task_seed
        self.faults: list[str] = []
        self._pool: _Pool | None = None
        self._ready: set[int] = set()
        self._grammars: dict[int, tuple[Grammar, str]] = {}  # id -> (grammar kept alive, YAML text)
        self._recipes: dict[tuple[int, ...], tuple[list[Task], dict]] = {}

    # -- hooks for the subclasses
    def _make_pool(self) -> _Pool:
        raise NotImplementedError

    def _memory_device(self) -> str:
        return "cpu"

    # -- public
    def check(self, grammar: Grammar) -> None:
        """Refuse, with a message, a grammar that worker processes cannot rebuild from its file."""
        self._grammar_text(grammar)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._pool, self._ready = None, set()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def evaluate(self, exprs: Sequence[sp.Expr], grammar: Grammar, tasks: list[Task], seeds: Sequence[int],
                 cfg: TrainConfig = DEFAULT_CONFIG, evaluator: str = "auto", device: str = "auto",
                 progress: Progress | None = None) -> list[Fitness]:
        """Cut the formulas into chunks, run them on the workers, and return fitness in input order."""
        n = len(exprs)
        if not n:
            return []
        ctx = self._context(grammar, tasks, cfg, evaluator, device)
        seeds = list(seeds)
        texts = [_ship(e) for e in exprs]
        out: list[Fitness | None] = [None] * n
        shipped = [i for i, t in enumerate(texts) if t is not None]
        with _global_rngs_kept():
            self._run_remote(ctx, texts, shipped, seeds, tasks, cfg, out, progress)
        local = [i for i, t in enumerate(texts) if t is None]  # rare: a sympy form the wire format can't carry
        if local:
            fits = evaluate_population([exprs[i] for i in local], grammar, tasks, seeds, cfg, evaluator=evaluator,
                                       device=device)
            for i, f in zip(local, fits, strict=True):
                out[i] = f
        return out  # type: ignore[return-value]

    def _run_remote(self, ctx: dict, texts: list[str | None], shipped: list[int], seeds: list[int],
                    tasks: list[Task], cfg: TrainConfig, out: list[Fitness | None], progress: Progress | None) -> None:
        """Chunks of the shipped formulas through the workers; results land in `out` at their input positions."""
        if not shipped:
            return
        if self._pool is None:
            self._pool = self._make_pool()
        size = chunk_size(len(shipped), self._pool.size, tasks, len(seeds), cfg, self._memory_device())
        chunks = [shipped[i:i + size] for i in range(0, len(shipped), size)]
        done = 0

        def finished(c: int, fits: list[Fitness]) -> None:
            nonlocal done
            for i, f in zip(chunks[c], fits, strict=True):
                out[i] = f
            done += len(chunks[c])
            if progress:
                progress(done, len(out))

        try:
            self._schedule(ctx, [[texts[i] for i in c] for c in chunks], seeds, tasks, finished)
        except BaseException:  # an error or Ctrl-C mid-call: workers may still hold its chunks, start afresh
            self.close()
            raise

    # -- the scheduling loop and its fault policy
    def _schedule(self, ctx: dict, chunks: list[list[str]], seeds: list[int], tasks: list[Task], finished) -> None:
        pool = self._pool
        queue: deque[tuple[int, int, int]] = deque((c, 0, -1) for c in range(len(chunks)))  # chunk, attempt, avoid
        running: dict[int, tuple[int, int, float]] = {}  # slot -> (chunk, attempt, deadline)
        first_failure: dict[int, str] = {}
        for slot in range(pool.size):
            if slot not in self._ready and not pool.starting(slot):
                pool.start(slot)
        waiting_since, start_failures = time.monotonic(), 0

        def fault(slot: int, chunk: int, attempt: int, reason: str) -> None:
            self.faults.append(reason)
            if attempt == 0:
                first_failure[chunk] = reason
                queue.appendleft((chunk, 1, slot))  # once more, on another slot when there is one
            else:
                first = first_failure.get(chunk, reason)
                why = f"{reason}, twice" if first == reason else f"{first}; on retry: {reason}"
                finished(chunk, [worst(why, tasks, seeds)] * len(chunks[chunk]))

        while queue or running:
            for slot in sorted(self._ready - set(running)):  # a retry avoids its failed slot if another is ready
                item = next((q for q in queue if q[2] != slot or len(self._ready) == 1), None)
                if item is None:
                    continue
                queue.remove(item)
                chunk, attempt, _ = item
                deadline = time.monotonic() + self.chunk_timeout if self.chunk_timeout else math.inf
                running[slot] = (chunk, attempt, deadline)
                try:
                    pool.submit(slot, (ctx, chunks[chunk], seeds, chunk, attempt))
                except _Lost as exc:
                    del running[slot]
                    self._restart(slot)
                    fault(slot, chunk, attempt, str(exc))
            if not running and not self._ready and time.monotonic() - waiting_since > STARTUP_TIMEOUT:
                raise BackendError(f"no {self.name} worker became ready within {STARTUP_TIMEOUT:.0f}s")
            now = time.monotonic()
            deadlines = [d for _, _, d in running.values() if d < math.inf]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            if not running:
                timeout = 5.0 if timeout is None else min(timeout, 5.0)
            for slot, kind, payload in pool.poll(timeout):
                if kind == "ready":
                    self._ready.add(slot)
                    start_failures = 0
                elif kind == "done" and running.get(slot, ())[:2] == (payload["chunk"], payload["attempt"]):
                    del running[slot]
                    finished(payload["chunk"], [Fitness(**d) for d in payload["fits"]])
                elif kind == "error":
                    raise BackendError(f"{self.name} worker raised {payload}")
                elif kind == "died":
                    if slot in running:
                        chunk, attempt, _ = running.pop(slot)
                        fault(slot, chunk, attempt, payload)
                    elif slot not in self._ready:
                        start_failures += 1
                        if start_failures > 2 * pool.size + 2:
                            raise BackendError(f"{self.name} workers keep dying before they are ready ({payload}); "
                                               f"can they import gpact (PYTHONPATH={ROOT})?")
                    self._restart(slot)
            now = time.monotonic()
            for slot, (chunk, attempt, deadline) in list(running.items()):
                if now > deadline:
                    del running[slot]
                    self._restart(slot)
                    fault(slot, chunk, attempt, f"chunk timed out after {self.chunk_timeout:g}s")
            if self._ready:
                waiting_since = time.monotonic()

    def _restart(self, slot: int) -> None:
        self._ready.discard(slot)
        self._pool.kill(slot)
        self._pool.start(slot)

    # -- contexts: what a worker needs besides the formulas, as plain data
    def _context(self, grammar: Grammar, tasks: list[Task], cfg: TrainConfig, evaluator: str, device: str) -> dict:
        ctx = {"grammar": self._grammar_text(grammar), "grammar_path": grammar.path, **self._task_recipe(tasks),
               "train": dataclasses.asdict(cfg), "evaluator": evaluator, "device": device}
        faults = {k: v for k, v in os.environ.items() if k in ("GPACT_TEST_KILL_CHUNK", "GPACT_TEST_HANG_CHUNK")}
        if faults:
            ctx["faults"] = faults
        ctx["key"] = hashlib.sha1(json.dumps(ctx, sort_keys=True).encode()).hexdigest()
        return ctx

    def _grammar_text(self, grammar: Grammar) -> str:
        if id(grammar) not in self._grammars:
            self._grammars[id(grammar)] = (grammar, grammar_text(grammar, self.name))
        return self._grammars[id(grammar)][1]

    def _task_recipe(self, tasks: list[Task]) -> dict:
        key = tuple(map(id, tasks))
        if key not in self._recipes:
            self._recipes[key] = (tasks, task_recipe(tasks, (self.task_seed, 0), self.name))
        return self._recipes[key][1]


@contextmanager
def _global_rngs_kept() -> Iterator[None]:
    """The search draws from the global `random` (DEAP) and a run is reproducible from its seed, but starting
    workers may draw from it too (ray.init does): put the global generators back as they were."""
    state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.random.set_rng_state(state[2])


class _Lost(Exception):
    """A worker could not be reached (its pipe broke)."""


def worst(reason: str, tasks: list[Task], seeds: Sequence[int]) -> Fitness:
    """The score of a candidate whose chunk failed twice: WORST, with why."""
    return Fitness(WORST, WORST, {t.spec.name: WORST for t in tasks}, len(tasks) * len(seeds), reason)


def chunk_size(n: int, workers: int, tasks: list[Task], n_seeds: int, cfg: TrainConfig, device: str) -> int:
    """Candidates per chunk: an even share per worker, capped by the batched evaluator's memory estimate."""
    even = max(1, math.ceil(n / max(1, workers)))
    try:
        from gpact.train.batched import chunk_candidates
    except ImportError:  # before the batched evaluator exists: even shares
        return even
    return max(1, min(even, int(chunk_candidates(tasks, n_seeds, cfg, device))))


def grammar_text(grammar: Grammar, backend: str = "process") -> str:
    """The grammar's YAML text, after checking that it rebuilds the same primitives in a worker."""
    path = Path(grammar.path)
    hint = f"use --backend serial, or declare it in a grammar file (`import: \"package.module:function\"` for " \
           f"Python code) so {backend} workers can rebuild it"
    if not path.is_file():
        raise ConfigError(f"grammar '{grammar.name}' was built in Python, not read from a file; {hint}")
    text = path.read_text(encoding="utf-8")
    try:
        rebuilt = grammar_from_dict(yaml.safe_load(text), name=str(path))
    except (GpactError, yaml.YAMLError) as exc:
        raise ConfigError(f"grammar '{grammar.name}': {path} no longer loads ({exc}); {hint}") from None
    names = set(grammar.primitives) | set(rebuilt.primitives)
    differ = sorted(n for n in names if not _same(grammar.primitives.get(n), rebuilt.primitives.get(n)))
    if differ:
        raise ConfigError(f"grammar '{grammar.name}': primitive(s) {', '.join(differ)} were added or changed in "
                          f"Python, so {backend} workers cannot rebuild them from {path}; {hint}")
    return text


def _same(a: Primitive | None, b: Primitive | None) -> bool:
    if a is None or b is None:
        return False
    fields = ("name", "arity", "cost", "definition", "inline", "aliases", "source")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and (a.source == "sympy" or a.fn is b.fn)


def task_recipe(tasks: list[Task], seeds: Sequence[int], backend: str = "process") -> dict:
    """(names, n_train, n_ood, seed) from which `make_suite` rebuilds exactly these tasks in a worker."""
    names = [t.spec.name for t in tasks]
    n_train, n_ood = {len(t.x_train) for t in tasks}, {len(t.x_ood) for t in tasks}
    if len(n_train) == 1 and len(n_ood) == 1:
        recipe = {"tasks": names, "n_train": n_train.pop(), "n_ood": n_ood.pop()}
        for seed in dict.fromkeys(seeds):
            try:
                rebuilt = make_suite(names, n_train=recipe["n_train"], n_ood=recipe["n_ood"], seed=seed)
            except ConfigError:
                break
            if len(rebuilt) == len(tasks) and all(_same_task(a, b) for a, b in zip(rebuilt, tasks, strict=True)):
                return {**recipe, "task_seed": seed}
    raise ConfigError(f"{backend} workers rebuild tasks with make_suite(names, n_train, n_ood, seed), and these "
                      f"tasks ({', '.join(names)}) are not such a suite for seed(s) {', '.join(map(str, seeds))}")


def _same_task(a: Task, b: Task) -> bool:
    return a.spec.name == b.spec.name and all(
        torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_ood", "y_ood"))


# ---------------------------------------------------------------------------------------------------------
# Local processes


class ProcessBackend(_Distributed):
    """Worker processes on this machine (`multiprocess`, spawn): one per visible GPU, else `workers` (default:
    one per CPU core) on CPU, each with an equal share of the cores' torch threads."""

    name = "process"

    def __init__(self, workers: int = 0, device: str = "auto", chunk_timeout: float = 0.0, task_seed: int = 0):
        super().__init__(workers, device, chunk_timeout, task_seed)
        self.gpus = visible_gpus() if device != "cpu" else []
        self.size = workers or len(self.gpus) or os.cpu_count() or 1

    def describe(self) -> str:
        where = f"GPUs {','.join(self.gpus)}" if self.gpus else "CPU"
        return f"process: {self.size} worker processes on {where}"

    def _memory_device(self) -> str:
        return "cuda" if self.gpus else "cpu"

    def _make_pool(self) -> _Pool:
        envs = [{"CUDA_VISIBLE_DEVICES": self.gpus[i % len(self.gpus)]} for i in range(self.size)] if self.gpus \
            else [{} for _ in range(self.size)]
        threads = 0 if self.gpus else max(1, (os.cpu_count() or 1) // self.size)
        return _ProcessPool(envs, threads)


def visible_gpus() -> list[str]:
    """CUDA device ids this process may use, as CUDA_VISIBLE_DEVICES spells them."""
    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [d.strip() for d in env.split(",") if d.strip()][:torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


class _ProcessPool:
    def __init__(self, envs: list[dict[str, str]], threads: int):
        import multiprocess

        self._mp = multiprocess.get_context("spawn")
        self.size, self._envs, self._threads = len(envs), envs, threads
        self._procs: dict[int, Any] = {}
        self._conns: dict[int, Any] = {}

    def starting(self, slot: int) -> bool:
        return slot in self._procs

    def start(self, slot: int) -> None:
        parent, child = self._mp.Pipe()
        env = {**self._envs[slot], "PYTHONPATH": _pythonpath()}
        proc = self._mp.Process(target=_process_main, args=(child, env, self._threads), daemon=True,
                                name=f"gpact-worker-{slot}")
        proc.start()
        child.close()
        self._procs[slot], self._conns[slot] = proc, parent

    def submit(self, slot: int, args: tuple) -> None:
        try:
            self._conns[slot].send(args)
        except (BrokenPipeError, EOFError, OSError) as exc:
            raise _Lost(f"worker unreachable ({type(exc).__name__})") from None

    def poll(self, timeout: float | None) -> list[tuple[int, str, Any]]:
        from multiprocess.connection import wait

        if not self._procs:
            time.sleep(min(timeout or 0.1, 0.1))
            return []
        by_obj = {}
        for slot, proc in self._procs.items():
            by_obj[self._conns[slot]] = slot
            by_obj[proc.sentinel] = slot
        events, dead = [], set()
        for obj in wait(list(by_obj), timeout):
            slot = by_obj[obj]
            if slot in dead:
                continue
            conn = self._conns[slot]
            try:
                while conn.poll():  # results sent before a death still count
                    kind, payload = conn.recv()
                    events.append((slot, kind, payload))
            except (EOFError, OSError):
                pass
            proc = self._procs[slot]
            if obj is proc.sentinel or not proc.is_alive():
                proc.join(1)
                if not proc.is_alive():
                    dead.add(slot)
                    events.append((slot, "died", _exit_reason(proc.exitcode)))
        return events

    def kill(self, slot: int) -> None:
        proc, conn = self._procs.pop(slot, None), self._conns.pop(slot, None)
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(10)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 5  # idle workers exit at once; busy ones (an interrupted call) are killed
        for slot, proc in list(self._procs.items()):
            proc.join(max(0.0, deadline - time.monotonic()))
            self.kill(slot)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker killed by {name}" + (" (out of memory?)" if code == -signal.SIGKILL else "")
    return f"worker died (exit code {code})"


def _pythonpath() -> str:
    """PYTHONPATH for workers: this tree first, so they import the same gpact as this process."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != ROOT]
    return os.pathsep.join([ROOT, *rest])


# ---------------------------------------------------------------------------------------------------------
# Ray


class RayBackend(_Distributed):
    """Ray actors, one per worker slot (`num_gpus=1` each where the cluster has GPUs). `address` "" starts a
    local Ray with `workers` CPUs; "auto" or "host:port" joins a running cluster (`ray start --head`)."""

    name = "ray"

    def __init__(self, workers: int = 0, address: str = "", device: str = "auto", chunk_timeout: float = 0.0,
                 task_seed: int = 0):
        super().__init__(workers, device, chunk_timeout, task_seed)
        self.address = address
        self._gpus = 0
        self._owns_ray = False
        self.nodes: set[str] = set()  # Ray node ids the actors ran on, for a look at where work went

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
        return f"ray: {self.workers or 'one actor per GPU, else per CPU,'} {'actors ' * bool(self.workers)}on {where}"

    def _memory_device(self) -> str:
        return "cuda" if self._gpus else "cpu"

    def _make_pool(self) -> _Pool:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray backend needs Ray: pip install 'gpact[ray]'") from None
        if not ray.is_initialized():
            runtime_env = {"env_vars": {"PYTHONPATH": _pythonpath()}}
            kw: dict[str, Any] = {"runtime_env": runtime_env, "logging_level": "warning", "log_to_driver": True}
            try:
                if self.address:
                    ray.init(address=self.address, **kw)
                else:
                    ray.init(address="local", num_cpus=self.workers or None, include_dashboard=False, **kw)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BackendError(f"cannot start or join Ray at {self.address or 'local'}: {exc}") from None
            self._owns_ray = True
        res = ray.cluster_resources()
        self._gpus = int(res.get("GPU", 0)) if self.device != "cpu" else 0
        size = self.workers or self._gpus or int(res.get("CPU", 1)) or 1
        return _RayPool(ray, size, self._gpus > 0, self.nodes)

    def close(self) -> None:
        super().close()
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False


class _RayPool:
    def __init__(self, ray, size: int, gpu: bool, nodes: set[str]):
        self.ray, self.size, self.nodes = ray, size, nodes
        opts = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
        self._cls = ray.remote(max_restarts=0, max_task_retries=0, **opts)(_RayWorker)
        self._actors: dict[int, Any] = {}
        self._refs: dict[Any, tuple[int, Any, str]] = {}  # ObjectRef -> (slot, actor, "ready" | "done")

    def starting(self, slot: int) -> bool:
        return slot in self._actors

    def start(self, slot: int) -> None:
        actor = self._cls.remote()
        self._actors[slot] = actor
        self._refs[actor.ready.remote()] = (slot, actor, "ready")

    def submit(self, slot: int, args: tuple) -> None:
        actor = self._actors[slot]
        self._refs[actor.run.remote(*args)] = (slot, actor, "done")

    def poll(self, timeout: float | None) -> list[tuple[int, str, Any]]:
        ray = self.ray
        if not self._refs:
            time.sleep(min(timeout or 0.1, 0.1))
            return []
        refs = list(self._refs)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        events = []
        for ref in ready:
            slot, actor, kind = self._refs.pop(ref)
            if self._actors.get(slot) is not actor:
                continue  # from an actor already replaced
            try:
                value = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # Python raised inside the actor
                events.append((slot, "error", str(exc).strip().splitlines()[-1]))
                continue
            except ray.exceptions.RayError as exc:  # the actor died: killed, out of memory, node lost
                events.append((slot, "died", f"Ray worker lost ({type(exc).__name__})"))
                continue
            if kind == "ready":
                self.nodes.add(value[1])
            events.append((slot, kind, value))
        return events

    def kill(self, slot: int) -> None:
        actor = self._actors.pop(slot, None)
        if actor is not None:
            self.ray.kill(actor, no_restart=True)
        self._refs = {r: v for r, v in self._refs.items() if v[0] != slot}

    def close(self) -> None:
        for slot in list(self._actors):
            self.kill(slot)
