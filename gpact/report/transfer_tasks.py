"""Transfer beyond tabular data: `gpact transfer FORMULA... --task digits-shift|chars|length`.

Each task trains a real architecture with the activation in every hidden place (a CNN on images, a GPT-2
style language model, a recurrent network) on data that ships with scikit-learn or Python itself, and tests
it under a shift the training data lacks: moved digits, other modules' text, longer inputs. No downloads.
Every formula trains from the same seeded initialisations and batches as GELU and ReLU (always included);
the result has the shape of the tabular `gpact transfer` (`TransferResult`), so one table formats both.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch

from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.report.shift import Progress, ShiftTask
from gpact.report.transfer import TransferResult, TransferRow, _one_thread, contenders
from gpact.report.transfer_chars import CHARS
from gpact.report.transfer_digits import DIGITS_SHIFT
from gpact.report.transfer_length import LENGTH
from gpact.train.baselines import BASELINE_GRAMMAR


def tasks() -> dict[str, ShiftTask]:
    """The shift tasks by name."""
    return {t.name: t for t in (DIGITS_SHIFT, CHARS, LENGTH)}


def task_config(name: str, **overrides: Any) -> Any:
    """Task `name`'s default config with the given fields replaced (None keeps the default)."""
    task = _task(name)
    fields = {f.name for f in dataclasses.fields(task.config)}
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in fields)
    if unknown:
        raise ConfigError(f"task {name!r} has no option {', '.join(unknown)} (it has: {', '.join(sorted(fields))})")
    cfg = dataclasses.replace(task.config, **{k: v for k, v in overrides.items() if v is not None})
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, int | float) and not isinstance(v, bool) and v <= 0:
            raise ConfigError(f"task {name!r}: {f.name} must be > 0, not {v}")
    return cfg


def parse_settings(name: str, settings: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` texts as config fields of task `name`, each value read as its field's type."""
    fields = {f.name: f for f in dataclasses.fields(_task(name).config)}
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
        kind = type(getattr(_task(name).config, key))
        try:
            out[key] = kind(value.strip())
        except ValueError:
            raise ConfigError(f"--set {item!r}: {key} takes a {kind.__name__}") from None
    return out


def pick_device(device: str) -> torch.device:
    """'auto' is CUDA when there is one; asking for CUDA without one is an error, not a silent CPU run."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA device here")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r} (cpu, cuda or auto)")
    return torch.device(device)


def run_task(formulas: Sequence[str], name: str, seeds: int | Sequence[int] = 3, cfg: Any = None,
             grammar: Grammar | str = BASELINE_GRAMMAR, device: str = "cpu",
             progress: Progress | None = None) -> TransferResult:
    """Train every formula (and GELU, ReLU) on shift task `name` over seeds; one row per formula."""
    start = time.perf_counter()
    task = _task(name)
    cfg = task.config if cfg is None else cfg
    dev = pick_device(device)
    seed_list, acts = contenders(formulas, seeds, grammar)
    data = task.prepare(cfg)
    rows, total, done = [], len(acts) * len(seed_list), 0
    with _one_thread() if dev.type == "cpu" else nullcontext():
        for label, text, ref, act in acts:
            results = []
            for s in seed_list:
                t0 = time.perf_counter()
                results.append(task.train_eval(act, data, s, cfg, dev))
                done += 1
                if progress:
                    progress(f"{name}: {done}/{total} {label} seed {s}: OOD {task.metric} {results[-1][0]:.4f} "
                             f"({time.perf_counter() - t0:.1f} s)")
            rows.append(TransferRow(label, text, tuple(r[0] for r in results), tuple(r[1] for r in results), ref))
    return TransferResult(name, "task", task.metric, rows, seed_list, task.sizes(data), cfg,
                          time.perf_counter() - start, note=task.describe(data, cfg) + f"; device {dev.type}")


def _task(name: str) -> ShiftTask:
    known = tasks()
    if name not in known:
        raise ConfigError(f"unknown task '{name}' (known: {', '.join(known)})")
    return known[name]
