"""Reading run folders back: `gpact show` (one run) and `gpact list` (all runs under a folder).

Everything comes from the files a run writes (config.json, summary.json, pareto.csv, the checkpoint), so
these work on finished, interrupted and crashed runs alike, and on runs still going.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpact.errors import ConfigError
from gpact.run import checkpoint, rundir
from gpact.run.front import fmt, grid, read_front, recommended, table
from gpact.run.plots import write_plots


@dataclass
class RunInfo:
    """What a run folder says about its run."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)  # empty when stale or missing
    status: str = "incomplete"
    generations_done: int = -1  # index of the last finished generation; -1: none
    evaluations: int = 0
    cache_hits: int = 0
    started: str = ""
    best: float | None = None
    references: dict[str, float] = field(default_factory=dict)  # OOD scores of gelu and relu on the run's tasks

    @property
    def grammar(self) -> str:
        return self.summary.get("grammar") or Path(str(self.config.get("grammar", "?"))).stem

    @property
    def generations_target(self) -> int:
        return int(self.config.get("generations", 0))


def load_run(run_dir: Path) -> RunInfo:
    """A run's state from its files; the summary counts only if it is newer than the checkpoint."""
    run_dir = Path(run_dir)
    cfg_path = rundir.config_path(run_dir)
    info = RunInfo(run_dir, rundir.read_config(run_dir))
    summary_path, ckpt_path = run_dir / rundir.SUMMARY, run_dir / checkpoint.FILE
    current = summary_path.exists() and (not ckpt_path.exists()
                                         or summary_path.stat().st_mtime >= ckpt_path.stat().st_mtime)
    if current:
        s = rundir.read_summary(run_dir)
        info.summary = s
        info.status = s.get("status", "complete")
        info.generations_done = int(s.get("generations", -1))
        info.evaluations, info.cache_hits = int(s.get("evaluations", 0)), int(s.get("cache_hits", 0))
        info.started = s.get("started", "")
        info.best = s.get("best_ood_score")
        info.references = s.get("references", {})
    else:  # running, or died: the checkpoint is the truth
        ckpt = checkpoint.load(run_dir)
        if ckpt is not None:
            info.generations_done = ckpt.generation - 1
            info.evaluations, info.cache_hits = ckpt.state.evaluations, ckpt.state.cache_hits
            info.started = ckpt.started
            info.references = {k: r.ood_score for k, r in ckpt.references.items()}
        front = read_front(run_dir)
        info.best = front[0]["ood_score"] if front else None
    if not info.started:
        info.started = _mtime(cfg_path)
    return info


def list_runs(root: Path) -> list[RunInfo]:
    """Every run folder directly under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder")
    runs = [load_run(p) for p in sorted(root.iterdir()) if (p / rundir.CONFIG).is_file()]
    return sorted(runs, key=lambda r: (r.started, r.path.name))


def format_list(runs: list[RunInfo]) -> str:
    """One line per run: id, date, grammar, generations, evaluations, best search score, the recommended
    function with its test score (finished runs), status."""
    head = ["run", "started", "grammar", "generations", "evals", "best search", "recommended", "test", "status"]
    body = []
    for r in runs:
        pick = r.summary.get("recommended") if isinstance(r.summary.get("recommended"), dict) else {}
        formula = str(pick.get("formula") or "-")
        test = pick.get("test")
        body.append([r.path.name, r.started.replace("T", " "), r.grammar,
                     f"{r.generations_done}/{r.generations_target}", str(r.evaluations), fmt(r.best),
                     formula if len(formula) <= 40 else formula[:37] + "...",
                     fmt(test, 3) if isinstance(test, int | float) else "-", r.status])
    return "\n".join(grid(head, body)) if body else "no runs"


def show_run(run_dir: Path, plots: bool = True) -> str:
    """Run summary, the front table, and the plots' paths (drawn now if missing)."""
    info = load_run(run_dir)
    c, s = info.config, info.summary
    lines = [
        f"run         {info.path}",
        f"status      {info.status} (generation {info.generations_done}/{info.generations_target})",
        f"grammar     {info.grammar}  tasks {c.get('tasks')} x {c.get('train_seeds')} seeds  "
        f"population {c.get('population')}  seed {c.get('seed')}",
        f"evaluated   {info.evaluations} functions  (cache hits {info.cache_hits})"
        + (f"  search time {s['elapsed_s']:.1f}s" if "elapsed_s" in s else ""),
        f"started     {info.started.replace('T', ' ')}"
        + (f"  finished {s['finished'].replace('T', ' ')}" if s.get("finished") else ""),
    ]
    if info.references:
        lines.append("references  " + "  ".join(f"{k} {fmt(v)}" for k, v in info.references.items()))
    rows = read_front(info.path)
    lines += ["", table(rows) if rows else "no front yet (no generation finished)"]
    if plots and rows:
        try:
            paths = write_plots(info.path, only_missing=True)
            lines += ["", "plots: " + ", ".join(str(p) for p in paths)]
        except OSError as exc:  # a read-only or full folder: the rest is worth showing
            lines += ["", f"plots: not written ({exc.strerror or exc})"]
    pick = recommended(rows)
    chosen = s.get("recommended") if isinstance(s.get("recommended"), dict) else {}
    if chosen.get("fallback") is True:
        best = s.get("best_front_member") if isinstance(s.get("best_front_member"), dict) else {}
        pick = {"formula": chosen.get("formula")}
        lines += ["", f"recommended: {chosen.get('formula')}  (GELU itself: no front member beat it on validation; "
                      f"the best, {best.get('formula', '?')}, scored {fmt(best.get('validation'), 3)})"]
    elif pick is not None:
        on = chosen.get("picked_on", "validation")
        lines += ["", f"recommended: {pick['formula']}  (rank {pick['rank']}, best {on} score on the front)"]
    lines += ["", f"export: gpact export {info.path} --format torch"
              + ("  (the recommended function; --rank K for another)" if pick else "  (rank 1; --rank K for another)")]
    if info.status != "complete":
        lines.append(f"resume: gpact run --resume {info.path}")
    return "\n".join(lines)


def _mtime(path: Path) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(path.stat().st_mtime))
