"""A whole run: load the grammar and tasks, search generation by generation, write the run folder.

`run` is what `gpact run` calls; it is usable from Python as it is. Files land in `runs/<id>/` as the
run goes (candidates and per-generation log appended, the front rewritten atomically), so a run that
dies still leaves what it found.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gpact import rundir
from gpact.backends import Backend, make_backend
from gpact.config import RunConfig
from gpact.grammar import Grammar, load_grammar
from gpact.llm import LLMOperator
from gpact.report import front_rows, table, to_csv
from gpact.search import Record, Search, State, pareto_front, score_formulas
from gpact.tasks import make_suite

REFERENCES = ("gelu(x)", "relu(x)")
REFERENCE_GRAMMAR = "full"  # the shipped grammar that expresses every reference activation
LLM_LOG = "llm_calls.jsonl"
LLM_CACHE = ".llm_cache"  # under the runs folder, shared by its runs


@dataclass
class RunResult:
    run_dir: Path
    front: list[Record]
    rows: list[dict]
    references: dict[str, Record]
    state: State


def run(cfg: RunConfig, echo: Callable[[str], None] = print, grammar: Grammar | None = None) -> RunResult:
    """Run a search; `grammar` overrides `cfg.grammar` (e.g. one extended with `add_primitive`)."""
    backend = make_backend(cfg.backend, cfg.workers, cfg.ray_address, cfg.chunk_timeout, cfg.device, cfg.seed)
    try:  # workers (processes, Ray actors) are started on first use and always stopped
        return _run(cfg, echo, grammar, backend)
    finally:
        backend.close()


def _run(cfg: RunConfig, echo: Callable[[str], None], grammar: Grammar | None, backend: Backend) -> RunResult:
    grammar = grammar or load_grammar(cfg.grammar)
    backend.check(grammar)  # process/ray refuse a grammar their workers cannot rebuild, before any folder exists
    tasks = make_suite(cfg.tasks, n_train=cfg.n_train, n_ood=cfg.n_ood, seed=cfg.seed)
    out = rundir.new_run_dir(cfg, grammar.name)
    rundir.write_json(out / rundir.CONFIG, cfg.to_dict())
    if Path(grammar.path).is_file():
        shutil.copyfile(grammar.path, out / rundir.GRAMMAR_COPY)
    echo(f"gpact: run {out}  grammar {grammar.name} ({len(grammar.primitives)} primitives)  "
         f"tasks {len(tasks)} x {cfg.train_seeds} seeds  population {cfg.mu}  generations {cfg.generations}  "
         f"device {_device_name(cfg.device)}")
    if cfg.backend != "serial":
        echo(f"backend {backend.describe()}")

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    search = Search(cfg, grammar, tasks, backend=backend)
    if cfg.llm.enabled:  # its own random stream; answers cached across runs, so a re-run replays them
        search.llm = LLMOperator(cfg.llm, grammar, search.pset, out / LLM_LOG, random.Random(cfg.seed),
                                 cache_dir=Path(cfg.out_dir) / LLM_CACHE)
        echo(f"llm: {cfg.llm.model} at {cfg.llm.base_url}  crossover rate {cfg.llm.rate}  "
             f"mutation rate {cfg.llm.mutation_rate}  max calls {cfg.llm.max_calls}")
    state = State()
    pop = search.start(state)
    refs = {r.tree: r for r in score_formulas(list(REFERENCES), load_grammar(REFERENCE_GRAMMAR), tasks, cfg,
                                              backend)}
    gelu = refs.get("gelu(x)")
    echo("references: " + "  ".join(f"{k} {v.ood_score:.4g}" for k, v in refs.items()))

    for _ in range(cfg.generations + 1):  # generation 0 is the initial population
        seen = set(state.records)
        pop, stats = search.step(pop, state)
        new = [r for k, r in state.records.items() if k not in seen]
        rundir.append_jsonl(out / rundir.CANDIDATES, [dataclasses.asdict(r) for r in new])
        rundir.append_jsonl(out / rundir.GENERATIONS, [dataclasses.asdict(stats)])
        front = pareto_front(state.records.values())
        rundir.write_text(out / rundir.PARETO, to_csv(front_rows(front, gelu)))
        echo(f"gen {stats.generation:>3}/{cfg.generations}  evals {stats.evaluated:>4} "
             f"(total {state.evaluations})  cache hits {stats.cache_hits:>3}  rejected {stats.rejected:>3}  "
             f"best {stats.best:.4g}  front {stats.front_size:>2}  elapsed {stats.elapsed:.1f}s"
             + (f"  {search.llm.progress()}" if search.llm is not None else ""))

    front = pareto_front(state.records.values())
    if search.llm is not None:
        search.llm.close()
        echo(f"{search.llm.progress(total=True)}  (all generations; log {out / LLM_LOG})")
    holdout, holdout_gelu = _holdout(cfg, grammar, front, backend)
    rows = front_rows(front, gelu, holdout, holdout_gelu)
    rundir.write_text(out / rundir.PARETO, to_csv(rows))
    rundir.write_json(out / rundir.SUMMARY, {
        "grammar": grammar.name, "generations": state.generation - 1, "evaluations": state.evaluations,
        "cache_hits": state.cache_hits, "elapsed_s": round(state.elapsed, 2),
        "references": {k: v.ood_score for k, v in refs.items()},
        "best": rows[0]["formula"] if rows else None, "best_ood_score": rows[0]["ood_score"] if rows else None,
    })
    if backend.faults:
        echo(f"backend: {len(backend.faults)} chunk attempts failed (each chunk re-run once, then scored worst); "
             f"first: {backend.faults[0]}")
    echo(table(rows))
    echo(f"written: {out}/{rundir.PARETO}, {rundir.CANDIDATES}, {rundir.CONFIG}")
    return RunResult(out, front, rows, refs, state)


def _holdout(cfg: RunConfig, grammar: Grammar, front: list[Record], backend: Backend | None = None
             ) -> tuple[dict[str, float], float | None]:
    """Score the final front on tasks never used for selection (DESIGN §5), with GELU for scale."""
    if not cfg.holdout or not front:
        return {}, None
    tasks = make_suite(cfg.holdout, n_train=cfg.n_train, n_ood=cfg.n_ood, seed=cfg.seed)
    recs = score_formulas([r.tree for r in front], grammar, tasks, cfg, backend)
    (gelu,) = score_formulas(["gelu(x)"], load_grammar(REFERENCE_GRAMMAR), tasks, cfg, backend)
    return {r.key: h.ood_score for r, h in zip(front, recs, strict=True)}, gelu.ood_score


def _device_name(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
