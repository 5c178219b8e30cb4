"""A whole run: load the grammar and tasks, search generation by generation, write the run folder.

`run` is what `gpact run` calls; it is usable from Python as it is. Files land in `runs/<id>/` as the
run goes (candidates and per-generation log appended, the front and a checkpoint rewritten atomically after
every generation), so a run that dies still leaves what it found, and `run(..., resume=folder)` continues
it with the same result as if it had never stopped (docs/runs.md).
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gpact.backends import make_backend
from gpact.backends.base import Backend
from gpact.config import RunConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar, load_grammar, with_trainable_constants
from gpact.expr.templates import run_templates
from gpact.expr.trees import make_pset
from gpact.run import checkpoint, rundir
from gpact.run.front import front_rows, table, to_csv
from gpact.run.plots import write_plots
from gpact.run.progress import Display
from gpact.run.stopping import Abandoned, Stopper
from gpact.run.verdict import GELU, Verdict, judge, proxy_line, reference_scores, yardstick
from gpact.search.accept import Acceptance
from gpact.search.llm import LLMOperator
from gpact.search.operators import make_operators
from gpact.search.records import Record, State, pareto_front
from gpact.search.strategy import Strategy, strategy_class
from gpact.train.objective import Objective
from gpact.train.partition import PARTS, ROLES, Partition, partition
from gpact.train.tasks import make_suite

LLM_LOG = "llm_calls.jsonl"
LLM_CACHE = ".llm_cache"  # under the runs folder, shared by its runs


@dataclass
class RunResult:
    run_dir: Path
    front: list[Record]
    rows: list[dict]
    references: dict[str, Record]
    state: State
    stopped_by: str = "generations"  # or "time limit", "max evals", "SIGINT", "SIGTERM"
    exit_code: int = 0  # 130 after SIGINT, 143 after SIGTERM (the checkpoint and front are written)


def run(cfg: RunConfig | None, echo: Callable[[str], None] = print, grammar: Grammar | None = None,
        resume: str | Path | None = None, live: bool | None = None) -> RunResult:
    """Run a search; `grammar` overrides `cfg.grammar` (e.g. one extended with `add_primitive`).

    `resume`: a run folder to continue from its checkpoint (`cfg` None: its saved config; otherwise `cfg` may
    differ only in checkpoint.RESUMABLE keys). `live`: rich progress bars (default: when stdout is a terminal).
    SIGINT/SIGTERM stop the run at a checkpoint (see gpact.run.stopping); the result's exit_code says so.
    The run folder is locked while the call lasts; a new one is removed if the start fails (rundir.Claim).
    """
    with rundir.Claim() as claim:
        return _run(cfg, echo, grammar, resume, live, claim)


def _run(cfg: RunConfig | None, echo: Callable[[str], None], grammar: Grammar | None, resume: str | Path | None,
         live: bool | None, claim: rundir.Claim) -> RunResult:
    ckpt = None
    if resume is not None:
        out = claim.resume(resume)
        saved = checkpoint.saved_config(out)
        cfg = checkpoint.resume_config(out, {} if cfg is None else _overrides(cfg))
        checkpoint.check_compatible(saved, cfg, out)
        ckpt = checkpoint.load(out)
        grammar = grammar or checkpoint.run_grammar(out, cfg.grammar, ckpt.grammar_name if ckpt else None)
    elif cfg is None:
        raise ConfigError("run needs a RunConfig, or a run folder to resume")
    grammar = grammar or load_grammar(cfg.grammar)
    if cfg.trainable_constants and not (grammar.ephemeral and grammar.ephemeral.trainable):
        grammar = with_trainable_constants(grammar)
    strategy_cls = strategy_class(cfg.strategy)
    if hasattr(strategy_cls, "check"):  # a strategy's own requirements of the grammar, before any folder or work
        strategy_cls.check(grammar)
    backend = make_backend(cfg.backend, cfg.workers, cfg.ray_address, cfg.chunk_timeout, cfg.device, cfg.seed)
    backend.check(grammar)  # process/ray refuse a grammar their workers cannot rebuild, before any folder exists
    plan = partition(cfg.tasks, cfg.validation, cfg.test, cfg.seed)
    tasks = make_suite(plan.tasks["search"], n_train=cfg.n_train, n_ood=cfg.n_ood, seed=cfg.seed)
    if resume is None:
        out = claim.new(cfg, grammar.name)
        if Path(grammar.path).is_file():
            shutil.copyfile(grammar.path, out / rundir.GRAMMAR_COPY)
    rundir.write_json(out / rundir.CONFIG, cfg.to_dict())
    checkpoint.truncate_logs(out, ckpt.generation if ckpt else 0)  # rows of a generation lost in a crash
    started = ckpt.started if ckpt else time.strftime("%Y-%m-%dT%H:%M:%S")
    display = Display(cfg, echo, live)
    echo = display.echo
    stopper = Stopper(cfg)
    stopper.install()  # from here on, the finally below stops the backend's workers (started on first use)
    state, refs = State(), {}
    try:
        echo(f"gpact: run {out}  grammar {grammar.name} ({len(grammar.primitives)} primitives)  "
             f"tasks {len(tasks)} x {cfg.train_seeds} seeds  population {cfg.mu}  generations {cfg.generations}  "
             f"device {_device_name(cfg.device)}")
        for part in PARTS:
            echo(f"  {part:<10} {plan.describe(part)}: {ROLES[part]}")
        if cfg.backend != "serial":
            echo(f"backend {backend.describe()}")
        pset, accept = make_pset(grammar), Acceptance(grammar, run_templates(grammar))
        if accept.templates:
            echo(f"templates: {', '.join(t.name for t in accept.templates)} (every candidate stays inside)")
        llm = None
        if cfg.llm.enabled:  # its own random stream; answers cached across runs, so a re-run replays them
            llm = LLMOperator(cfg.llm, grammar, pset, out / LLM_LOG, random.Random(cfg.seed),
                              cache_dir=Path(cfg.out_dir) / LLM_CACHE, accept=accept)
            echo(f"llm: {cfg.llm.model} at {cfg.llm.base_url}  crossover rate {cfg.llm.rate}  "
                 f"mutation rate {cfg.llm.mutation_rate}  max calls {cfg.llm.max_calls}")
        if ckpt is not None:
            refs, objective = ckpt.references, checkpoint.objective(ckpt, cfg)
        else:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)
            torch.manual_seed(cfg.seed)
            objective, refs = _references(cfg, tasks, backend)
        search: Strategy = strategy_cls(cfg, grammar, tasks, backend,
                                        make_operators(grammar, pset, accept.templates, llm), accept, pset,
                                        objective=objective)
        if hasattr(search, "run_dir"):  # strategies that keep files of their own (the surrogate's features)
            search.run_dir = out
        if hasattr(search, "race"):
            echo(f"racing: {search.race.plan.describe()}")
        echo(f"training: {_protocol(cfg)}")
        if ckpt is not None:
            state, rng = ckpt.state, ckpt.rng
            pop = checkpoint.restore_population(search, ckpt)
            checkpoint.restore_llm(llm, ckpt)
            display.resumed(state)
            echo(f"resumed at generation {state.generation} ({state.evaluations} functions trained so far; "
                 f"checkpoint of {ckpt.written})")
        else:
            pop = search.start(state)
            rng = checkpoint.rng_state()
        echo(f"references on the search tasks ({_unit(cfg)}): "
             + "  ".join(f"{k} {v.ood_score:.4g}" for k, v in refs.items()))

        while not (stopped_by := stopper.reason(state)):
            checkpoint.set_rng_state(rng)  # see gpact.run.checkpoint: nothing between generations shifts them
            display.generation_started(state.generation)
            seen = set(state.records)
            pop, stats = search.step(pop, state, progress=display.evaluated)
            rng = checkpoint.rng_state()
            with stopper.critical():  # logs first, the checkpoint last: it is the commit point
                new = [r for k, r in state.records.items() if k not in seen]
                rundir.append_jsonl(out / rundir.CANDIDATES, [dataclasses.asdict(r) for r in new])
                rundir.append_jsonl(out / rundir.GENERATIONS, [dataclasses.asdict(stats)])
                front = pareto_front(state.records.values())
                rundir.write_text(out / rundir.PARETO, to_csv(front_rows(front, _scale(cfg, refs))))
                checkpoint.save(out, cfg, grammar.name, state, pop, refs, rng, llm, started, objective)
            display.generation_done(stats, state, llm.progress() if llm is not None else "")
        display.close()
        if stopper.signum is not None:
            return _interrupted(out, cfg, grammar, state, refs, started, stopper, echo)
        stopper.reporting()  # a signal from here on lets the report finish (or, sent twice, abandons it)
        return dataclasses.replace(_finish(out, cfg, grammar, plan, llm, state, refs, started, stopped_by, echo,
                                                       backend),
                                   exit_code=stopper.exit_code)
    except Abandoned:
        display.close()
        ckpt = checkpoint.load(out)  # the last complete generation; the abandoned one left only log rows
        state, refs = (ckpt.state, ckpt.references) if ckpt is not None else (State(), refs)
        return _interrupted(out, cfg, grammar, state, refs, started, stopper, echo)
    finally:
        display.close()
        stopper.uninstall()
        backend.close()


def _finish(out: Path, cfg: RunConfig, grammar: Grammar, plan: Partition, llm: LLMOperator | None, state: State,
            refs: dict[str, Record], started: str, stopped_by: str, echo: Callable[[str], None], backend: Backend
            ) -> RunResult:
    """The end of a run that stopped by its own criteria: validation pick, test report, front, summary, plots."""
    front = pareto_front(state.records.values())
    if llm is not None:
        llm.close()
        echo(f"{llm.progress(total=True)}  (all generations; log {out / LLM_LOG})")
    verdict = judge(cfg, grammar, plan, front, list(state.records.values()), backend, echo=echo,
                    gelu=refs.get(GELU))
    if backend.faults:
        echo(f"backend: {len(backend.faults)} chunk attempts failed (each chunk re-run once, then scored worst); "
             f"first: {backend.faults[0]}")
    rows = front_rows(front, _scale(cfg, refs), verdict)
    rundir.write_text(out / rundir.PARETO, to_csv(rows))
    status = "complete" if stopped_by == "generations" else f"stopped: {stopped_by}"
    _summary(out, cfg, grammar, state, refs, rows, started, status, plan, verdict)
    plot_paths = _plots(out, grammar, echo)
    echo(_legend(cfg, plan))
    echo(table(rows))
    for line in _closing(cfg, _known(state, refs), verdict):
        echo(line)
    if stopped_by != "generations":
        echo(f"stopped by {stopped_by} after generation {state.generation - 1}/{cfg.generations}; "
             f"continue with: gpact run --resume {out}")
    echo(f"written: {out}/{rundir.PARETO}, {rundir.CANDIDATES}, {rundir.CONFIG}, {checkpoint.FILE}"
         + "".join(f", {p.name}" for p in plot_paths))
    return RunResult(out, front, rows, refs, state, stopped_by)


def _interrupted(out: Path, cfg: RunConfig, grammar: Grammar, state: State, refs: dict[str, Record], started: str,
                 stopper: Stopper, echo: Callable[[str], None]) -> RunResult:
    """A signal stopped the run: the checkpoint and front on disk are the last complete generation's."""
    name = signal.Signals(stopper.signum).name
    front = pareto_front(state.records.values())
    rows = front_rows(front, _scale(cfg, refs))
    if state.generation:
        rundir.write_text(out / rundir.PARETO, to_csv(rows))
    _summary(out, cfg, grammar, state, refs, rows, started, f"interrupted: {name}")
    done = f"after generation {state.generation - 1}/{cfg.generations}" if state.generation else "in generation 0"
    echo(f"gpact: stopped by {name} {done}; checkpoint {out / checkpoint.FILE}, front {out / rundir.PARETO}"
         if state.generation else f"gpact: stopped by {name} {done}; no checkpoint yet (the run will start over)")
    echo(f"continue with: gpact run --resume {out}")
    return RunResult(out, front, rows, refs, state, name, stopper.exit_code)


def _summary(out: Path, cfg: RunConfig, grammar: Grammar, state: State, refs: dict[str, Record], rows: list[dict],
             started: str, status: str, plan: Partition | None = None, verdict: Verdict | None = None) -> None:
    extra = {}
    if plan is not None:
        extra["parts"] = {p: {"tasks": plan.tasks[p], "families": plan.families(p), "role": ROLES[p]} for p in PARTS}
    if verdict is not None:
        extra.update(verdict.to_dict(_known(state, refs)))
    rundir.write_json(out / rundir.SUMMARY, {
        "grammar": grammar.name, "generations": state.generation - 1, "evaluations": state.evaluations,
        "cache_hits": state.cache_hits, "elapsed_s": round(state.elapsed, 2),
        "references": {k: v.ood_score for k, v in refs.items()},
        "reference_flops": {k: v.flops for k, v in refs.items()},
        "best": rows[0]["formula"] if rows else None, "best_ood_score": rows[0]["ood_score"] if rows else None,
        "status": status, "generations_target": cfg.generations, "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "objective": cfg.objective, "evolve": cfg.evolve,
        "rejections": dict(sorted(state.rejections.items())), **extra,
    })


def _references(cfg: RunConfig, tasks: list, backend: Backend) -> tuple[Objective, dict[str, Record]]:
    """The run's objective on its search tasks, and GELU and ReLU scored by it, trained once per run."""
    objective, gelu = yardstick(cfg, tasks, backend)
    return objective, reference_scores(cfg, tasks, backend, objective, gelu)


def _protocol(cfg: RunConfig) -> str:
    """The training protocol networks draw from, one field per value set (pinned fields show one value)."""
    t, p = cfg.train, cfg.protocol
    fields = (("width", p.widths, t.width), ("depth", p.depths, t.depth), ("steps", p.steps, t.steps),
              ("lr", p.lrs, t.lr))
    drawn = " ".join(f"{name} {'/'.join(f'{v:g}' for v in (vals or (base,)))}" for name, vals, base in fields)
    return f"{drawn} (drawn per network)" if not p.is_fixed else f"{drawn} (every network)"


def _scale(cfg: RunConfig, refs: dict[str, Record]) -> Record | float | None:
    """What a search score is divided by to read as a ratio to GELU: nothing when it is one already."""
    return 1.0 if cfg.objective == "tail" else refs.get("gelu(x)")


def _unit(cfg: RunConfig) -> str:
    return "ratio to GELU" if cfg.objective == "tail" else "geometric mean OOD loss"


def _legend(cfg: RunConfig, plan: Partition) -> str:
    """What each score column was selected on and tested on."""
    what = ("scores: ratios to GELU on each part's own tasks, exp(mean + CVaR of the worst quarter of tasks) of "
            "log(OOD loss / GELU's yardstick), over the same of GELU's own networks (same seeds: GELU = 1, lower is "
            "better)" if cfg.objective == "tail"
            else "search score: geometric mean OOD loss; vs GELU: divided by GELU's")
    lines = [what] + [f"  {p:<10} {plan.describe(p)}: {ROLES[p]}" for p in PARTS]
    return "\n".join(lines)


def _known(state: State, refs: dict[str, Record]) -> dict[str, Record]:
    """The run's records by key, and its references' (GELU's is the pick when nothing beat it on validation). A
    reference's record wins: it has every network, where racing may have stopped the same function early."""
    return {**state.records, **{r.key: r for r in refs.values()}}


def _closing(cfg: RunConfig, records: dict[str, Record], verdict: Verdict) -> list[str]:
    """The recommended function with its scores, and the proxy check."""
    rec = records.get(verdict.recommended) if verdict.recommended else None
    if rec is None:
        return ["no function was trained successfully: nothing to recommend"]
    parts = [f"search {rec.ood_score:.3g}"]
    for name, scores in (("validation", verdict.validation), ("test", verdict.test)):
        if rec.key in scores:
            parts.append(f"{name} {scores[rec.key]:.3g}")
    refs = "  ".join(f"{k} {v:.3g}" for k, v in verdict.reference_test.items())
    how = ("GELU itself, no front member beat it on validation" if verdict.fallback
           else f"best {verdict.picked_on} score on the front")
    lines = [f"recommended ({how}): {rec.formula}  [{', '.join(parts)}; {_unit(cfg)}; {rec.flops:g} FLOPs]"]
    if verdict.fallback:
        best = records[verdict.best_member]
        test = verdict.test.get(best.key)
        lines.append(f"WARNING: no front member beat GELU on the validation families (best {best.formula}: validation "
                     f"{verdict.validation[best.key]:.3g}" + (f", test {test:.3g}" if test is not None else "")
                     + "): what won the search does not hold up elsewhere, so the run recommends GELU")
    if refs:
        lines.append(f"references on the test tasks: {refs}")
    if proxy := proxy_line(verdict):
        lines.append(proxy)
    return lines


def _plots(out: Path, grammar: Grammar, echo: Callable[[str], None]) -> list[Path]:
    """Plots are a convenience: a failure to draw them is reported, never fatal to a finished run."""
    try:
        return write_plots(out, grammar=grammar)
    except Exception as exc:  # matplotlib or an exotic primitive; the run's data is already written
        echo(f"plots: not written ({type(exc).__name__}: {exc})")
        return []


def _overrides(cfg: RunConfig) -> dict:
    """A full config as dotted overrides, for `resume_config` (so `check_compatible` sees every key)."""
    return checkpoint.flat(json.loads(json.dumps(cfg.to_dict())))


def _device_name(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
