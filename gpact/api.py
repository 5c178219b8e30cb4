"""The public Python API, `import gpact`: run a search, load and extend grammars, score formulas, export.

Each function is what one CLI command does, callable from Python: `run` is `gpact run`, `score` is
`gpact eval`, `export` is `gpact export`. `load_grammar` and `add_primitive` come from gpact.expr.grammar
as they are. The heavy modules (torch, sympy, DEAP) load on first call, so `import gpact` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpact.config import RunConfig
    from gpact.expr.grammar import Grammar
    from gpact.run.runner import RunResult
    from gpact.train.scoring import ScoreTable


def run(config: RunConfig | None = None, *, grammar: Grammar | str | None = None, resume: str | Path | None = None,
        echo: Callable[[str], None] | None = print, live: bool | None = None, **options: Any) -> RunResult:
    """Run a search, write its run folder, and return the result (`.front`, `.rows`, `.run_dir`).

    `config`: a RunConfig (default: RunConfig()); `options` replace its fields by name, e.g.
    `generations=5, population=16, tasks="smoke", train={"steps": 50}` (a dict for `train` or `llm` changes
    only the keys it names). `grammar`: a shipped grammar's name, a file, or a Grammar built in Python (e.g.
    with `add_primitive`). `resume`: a run folder to continue; `options` then change its saved config (only
    limits, device and evaluator may differ, as with `gpact run --resume`). `echo`: where progress lines go
    (None: nowhere). `live`: rich progress bars (default: when stdout is a terminal).
    """
    from gpact.config import RunConfig
    from gpact.expr.grammar import Grammar
    from gpact.run import checkpoint
    from gpact.run.estimate import check_population
    from gpact.run.runner import run as run_search

    grammar_obj = grammar if isinstance(grammar, Grammar) else None
    if grammar is not None and grammar_obj is None:
        options["grammar"] = str(grammar)
    if resume is not None and config is None:
        cfg = checkpoint.resume_config(Path(resume), _flat(options)) if options else None
    else:
        data = (config or RunConfig()).to_dict()
        for key, value in options.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        cfg = RunConfig.from_dict(data)
        check_population(cfg.mu)  # refused at once, not after hours of building (gpact.run.estimate)
    return run_search(cfg, echo=echo or _quiet, grammar=grammar_obj, resume=resume, live=live)


def score(formulas: str | Sequence[str | tuple[str, str]], grammar: Grammar | str = "full",
          tasks: str | Sequence[str] = "default", seeds: int | Sequence[int] = 3, **options: Any) -> ScoreTable:
    """Score formulas (text like "gelu(x) + 0.1*sin(x)", baseline names like "mish", or (label, text) pairs)
    against GELU on `tasks` x `seeds`, as `gpact eval` does; returns a ScoreTable (`.rows`, one per formula).

    `options` go to gpact.train.scoring.score_formulas: `cfg` (a TrainConfig: width, depth, steps, lr),
    `evaluator`, `device`, `n_train`, `n_ood`, `reference`, `jobs`, `progress`.
    """
    from gpact.train.scoring import score_formulas

    items = [formulas] if isinstance(formulas, str) else list(formulas)
    return score_formulas(items, grammar, tasks, seeds, **options)


def export(run_dir: str | Path | RunResult, rank: int = 1, fmt: str = "torch", path: str | Path | None = None,
           trainable: bool = False) -> str:
    """Front member `rank` (1: best OOD score) of a run (`run_dir`: its folder, or a RunResult) as text, as
    `gpact export` does: `fmt` "torch" or "python" (a module with an nn.Module that imports only torch), "sympy"
    or "latex".
    `path`: also write the text there. `trainable`: constants as nn.Parameters (torch).
    """
    from gpact.report.export import export as export_member
    from gpact.report.export import front_member

    text = export_member(front_member(Path(getattr(run_dir, "run_dir", run_dir)), rank), fmt, trainable=trainable)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return text


def _flat(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 50}} -> {"train.steps": 50}: the override keys of checkpoint.resume_config."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def _quiet(line: str) -> None:
    pass
