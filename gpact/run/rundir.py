"""The run folder `runs/<run_id>/`: every file written atomically (temp file + rename), plain text only."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from gpact.config import RunConfig
from gpact.errors import ConfigError

CONFIG = "config.json"
CANDIDATES = "candidates.jsonl"
GENERATIONS = "generations.jsonl"
PARETO = "pareto.csv"
SUMMARY = "summary.json"
GRAMMAR_COPY = "grammar.yaml"


def new_run_dir(cfg: RunConfig, grammar_name: str) -> Path:
    """Create a fresh folder; the id is the config's, else grammar, seed and start time."""
    run_id = cfg.run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{grammar_name}-s{cfg.seed}"
    path = Path(cfg.out_dir) / run_id
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"run folder {path} already exists and is not empty; choose another --run-id")
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_path(run_dir: Path) -> Path:
    """The run folder's config.json; a ConfigError if `run_dir` is not a run folder."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a run folder (no {CONFIG})")
    return path


def write_text(path: Path, text: str) -> None:
    """Atomic write: a reader (or a crash) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a jsonl file; a torn last line (crash mid-append) is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
