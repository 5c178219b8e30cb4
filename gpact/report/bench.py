"""`gpact bench`: trainings per second, reference evaluator against the batched one, same process.

The protocol is docs/design.md §4 "The evaluator": MLP 1->64->64->1, full-batch Adam lr 1e-2, 500 steps, 512 points,
y = sin(3x) + x^2 trained on [-1, 1] and scored on [1, 2]. Both evaluators get the same K candidates, a
fixed mix of known activations and random trees, so their ratio is a like-for-like speed-up.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import sympy as sp
import torch
from deap import gp

from gpact.config import TrainConfig
from gpact.errors import ConfigError, FormulaError
from gpact.expr.grammar import Grammar, load_grammar
from gpact.expr.symbolic import X, trainables
from gpact.expr.trees import analyse, compile_expr, formula_to_sympy, make_pset, tree_to_sympy
from gpact.report.memory import peak_memory
from gpact.train.baselines import BASELINES
from gpact.train.batched import bytes_per_candidate, resolve_device, train_batched
from gpact.train.mlp import BENCH_CONFIG
from gpact.train.partition import draw
from gpact.train.program import ProgramError, lower
from gpact.train.reference import train_reference
from gpact.train.tasks import BENCH_POINTS, BENCH_TASK, Task, make_suite, make_task


def candidate_mix(grammar: Grammar, k: int, seed: int = 0) -> list[tuple[str, sp.Expr]]:
    """K distinct (name, formula): the known activations the grammar expresses, then random trees.

    Random trees are ramped half-and-half draws from a private RNG state, kept if they depend on x,
    lower to a program and are new by simplified form: the mix is a function of (grammar, k, seed).
    """
    out: list[tuple[str, sp.Expr]] = []
    seen: set[str] = set()

    def keep(name: str, expr: sp.Expr) -> None:
        key = sp.srepr(expr)
        if key in seen or X not in expr.free_symbols or trainables(expr):  # the bench times fixed formulas
            return
        try:
            lower(expr, grammar)
        except ProgramError:
            return
        seen.add(key)
        out.append((name, expr))

    for b in BASELINES.values():
        if len(out) >= k:
            return out
        try:
            keep(b.name, analyse(formula_to_sympy(b.formula, grammar), grammar).expr)
        except FormulaError:
            continue
    pset = make_pset(grammar)
    saved = random.getstate()
    random.seed(seed)
    try:
        attempts = 0
        while len(out) < k and attempts < 100 * k:
            attempts += 1
            tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, min_=1, max_=4))
            try:
                expr = analyse(tree_to_sympy(tree, grammar), grammar).expr
            except FormulaError:
                continue
            keep(f"random{len(out)}", expr)
    finally:
        random.setstate(saved)
    return out


SETTINGS = ("protocol", "search")
"""protocol: docs/design.md §4's (one task, one seed, MLP 1-64-64-1, 500 steps, 512 points); search: a search
generation's networks under the default run config before protocols were drawn (8 search tasks x 2 seeds,
width 16, depth 2, 200 steps, 256 points)."""


@dataclass(frozen=True)
class Workload:
    """What one candidate trains in a bench: every (task, seed) network, with `cfg`."""

    tasks: list[Task]
    seeds: list[int]
    cfg: TrainConfig

    @property
    def networks(self) -> int:
        return len(self.tasks) * len(self.seeds)


def workload(setting: str = "protocol", steps: int | None = None) -> Workload:
    """The networks per candidate of a bench setting (SETTINGS); `steps` overrides the setting's."""
    if setting == "protocol":
        w = Workload([make_task(BENCH_TASK, n_train=BENCH_POINTS, n_ood=BENCH_POINTS)], [0], BENCH_CONFIG)
    elif setting == "search":
        w = Workload(make_suite(draw("search:8"), n_train=256, n_ood=256), [0, 1],
                     TrainConfig(width=16, depth=2, steps=200))
    else:
        raise ConfigError(f"unknown bench setting '{setting}' (choose from {', '.join(SETTINGS)})")
    return w if steps is None else replace(w, cfg=replace(w.cfg, steps=steps))


@dataclass(frozen=True)
class BenchResult:
    device: str
    candidates: int
    steps: int
    naive_candidates: int  # the reference evaluator is timed on this many of them (the first ones)
    naive_seconds: float  # medians over `repeat` runs, as every figure here
    batched_seconds: float
    naive_trainings_per_s: float  # a training is one network: candidates x networks_per_candidate of them
    batched_trainings_per_s: float
    speedup: float
    setting: str = "protocol"
    networks_per_candidate: int = 1
    repeat: int = 1
    speedups: tuple[float, ...] = ()  # one per run, in order: the spread of the median
    peak_bytes_per_candidate: int | None = None  # measured peak memory of the batched run / candidates
    estimated_bytes_per_candidate: int = 0  # what the chunking estimate (batched.bytes_per_candidate) says
    naive_threads: int = 0  # torch threads the reference evaluator ran with

    def to_dict(self) -> dict:
        return asdict(self)


def run_bench(candidates: int = 64, device: str = "auto", steps: int | None = None,
              naive_max: int = 64, grammar: str = "full", kernel: str = "auto",
              echo: Callable[[str], None] = lambda s: None, setting: str = "protocol",
              repeat: int = 1, naive_threads: int | None = None) -> BenchResult:
    """Time both evaluators on a bench setting, `repeat` times in turn; the reference on `naive_max` candidates.

    Figures are medians over the runs; `speedups` keeps every run's ratio. `naive_threads` sets torch's
    threads for the reference runs (None: as they are): on a loaded machine the reference's intra-op
    threads wait on each other at every small op, which inflates the speed-up; 1 shows how much.
    """
    dev = resolve_device(device)
    g = load_grammar(grammar)
    w = workload(setting, steps)
    mix = candidate_mix(g, candidates)
    n_naive = min(naive_max, len(mix))
    echo(f"bench ({setting}): {len(mix)} candidates x {w.networks} networks, {w.cfg.steps} steps, device {dev}; "
         f"reference evaluator on {n_naive} of them, {repeat} run(s)")
    acts = [compile_expr(e, g) for _, e in mix[:n_naive]]
    dev_tasks = [replace(t, x_train=t.x_train.to(dev), y_train=t.y_train.to(dev), x_ood=t.x_ood.to(dev),
                         y_ood=t.y_ood.to(dev)) for t in w.tasks]
    programs = [lower(e, g) for _, e in mix]
    warm = replace(w.cfg, steps=2)  # first calls pay one-time costs (allocator, autograd, thread pools)
    train_reference(acts[0], dev_tasks[0], w.seeds[0], warm)
    train_batched(programs[: min(4, len(programs))], w.tasks, w.seeds, warm, dev, kernel)
    naive, batched, peaks = [], [], []
    threads = torch.get_num_threads()
    ref_threads = naive_threads or threads
    for run in range(repeat):
        _sync(dev)
        torch.set_num_threads(ref_threads)
        t0 = time.perf_counter()
        try:
            for i, act in enumerate(acts):
                for task in dev_tasks:
                    for seed in w.seeds:
                        train_reference(act, task, seed, w.cfg)
                echo(f"  run {run + 1}: reference {i + 1}/{n_naive}")
            _sync(dev)
        finally:
            torch.set_num_threads(threads)
        naive.append(time.perf_counter() - t0)
        with peak_memory(dev) as peak:
            t0 = time.perf_counter()
            train_batched(programs, w.tasks, w.seeds, w.cfg, dev, kernel)
            _sync(dev)
            batched.append(time.perf_counter() - t0)
        peaks.append(peak.bytes)
        echo(f"  run {run + 1}: batched {batched[-1]:.2f} s")
    nets = w.networks
    speedups = tuple((len(mix) / b) / (n_naive / n) for n, b in zip(naive, batched, strict=True))
    naive_s, batched_s = statistics.median(naive), statistics.median(batched)
    known = [p for p in peaks if p is not None]
    return BenchResult(
        str(dev), len(mix), w.cfg.steps, n_naive, naive_s, batched_s, n_naive * nets / naive_s,
        len(mix) * nets / batched_s, statistics.median(speedups), setting, nets, repeat, speedups,
        max(known) // len(mix) if known else None,
        bytes_per_candidate(w.tasks, len(w.seeds), w.cfg, max(p.n_regs for p in programs)), ref_threads)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@dataclass(frozen=True)
class GradientBench:
    """One restart of the gradient strategy against ordinary trainings of the same networks, timed in turns."""

    device: str
    tasks: int
    restarts: int  # supernets per stacked search (the cost per restart is its time / restarts)
    warm_steps: int
    search_steps: int
    width: int
    depth: int
    steps: int  # of an ordinary training
    search_seconds: list[float]  # per repeat: the whole stacked search (wall)
    training_seconds: list[float]  # per repeat: one ordinary training (gelu) of the same networks, one per task
    search_cpu: list[float]  # the same in this process's CPU time, which other load on the machine barely moves
    training_cpu: list[float]
    ratios: list[float]  # per repeat: (search / restarts) / training, in CPU time

    @property
    def median_ratio(self) -> float:
        return sorted(self.ratios)[len(self.ratios) // 2]

    def to_dict(self) -> dict:
        return {**asdict(self), "median_ratio": self.median_ratio}


def run_gradient_bench(restarts: int = 1, repeats: int = 3, device: str = "auto", grammar: str = "grafs",
                       echo: Callable[[str], None] = lambda s: None) -> GradientBench:
    """`gpact bench --gradient`: the default run's search tasks and training, the default GradientConfig.

    An ordinary training is one function trained on every search task once (one seed), with the run's network
    (width, depth, steps fixed at the defaults) by the normal evaluator: the networks a restart trains, with
    a plain activation. Search and training alternate, and the ratio is taken in this process's CPU time, so
    other load on the machine moves it little (wall times are reported too).
    """
    from gpact.config import GradientConfig, ProtocolDist, RunConfig
    from gpact.expr.templates import run_templates
    from gpact.train.evaluate import evaluate_population
    from gpact.train.oneshot import search_cells
    from gpact.train.partition import partition
    from gpact.train.tasks import make_suite

    dev = resolve_device(device)
    cfg = RunConfig()
    g = load_grammar(grammar)
    template = run_templates(g)[0]
    tasks = make_suite(partition(cfg.tasks, cfg.validation, cfg.test, cfg.seed).tasks["search"],
                       n_train=cfg.n_train, n_ood=cfg.n_ood, seed=cfg.seed)
    gc = replace(GradientConfig(), restarts=restarts)
    gelu = analyse(formula_to_sympy("gelu(x)", g), g).expr

    def timed(fn) -> tuple[float, float]:
        _sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(dev)
        return time.perf_counter() - t0, time.process_time() - c0

    def ordinary() -> None:
        evaluate_population([gelu], g, tasks, [0], cfg.train, device=str(dev), protocol=ProtocolDist.fixed())

    echo(f"bench --gradient: {len(tasks)} tasks, {restarts} restart(s), warm {gc.warm_steps} + search "
         f"{gc.search_steps} steps, network width {cfg.train.width} depth {cfg.train.depth}, device {dev}")
    ordinary()  # warm-up
    searches, trainings = [], []
    for i in range(repeats):
        seeds = list(range(i * restarts, (i + 1) * restarts))
        trainings.append(timed(ordinary))
        searches.append(timed(lambda seeds=seeds: search_cells(template, g, tasks, gc, cfg.train, seeds, dev)))
        echo(f"  repeat {i + 1}/{repeats}: search {searches[-1][0]:.1f} s ({searches[-1][1]:.1f} s CPU), ordinary "
             f"training {trainings[-1][0]:.2f} s ({trainings[-1][1]:.2f} s CPU)")
    ratios = [s[1] / restarts / t[1] for s, t in zip(searches, trainings, strict=True)]
    return GradientBench(str(dev), len(tasks), restarts, gc.warm_steps, gc.search_steps, cfg.train.width,
                         cfg.train.depth, cfg.train.steps, [s[0] for s in searches], [t[0] for t in trainings],
                         [s[1] for s in searches], [t[1] for t in trainings], ratios)
