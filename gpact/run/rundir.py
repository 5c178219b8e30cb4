"""The run folder `runs/<run_id>/`: every file written atomically (temp file + rename), plain text only.

Files are read back through `read_json`, which bounds their size and nesting and checks their shape, so a
damaged or hostile run folder is one error line naming the file, never a traceback or a hang.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from gpact.config import RunConfig
from gpact.errors import ConfigError
from gpact.run import lock

CONFIG = "config.json"
CANDIDATES = "candidates.jsonl"
GENERATIONS = "generations.jsonl"
PARETO = "pareto.csv"
SUMMARY = "summary.json"
GRAMMAR_COPY = "grammar.yaml"
CHECKPOINT = "checkpoint.json"
MB = 1 << 20
# Files are created 0666 less the umask (0644 usually), as open() does: mkstemp's 0600 would differ by file.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def run_path(cfg: RunConfig, grammar_name: str) -> Path:
    """Where a new run goes: the id is the config's, else grammar, seed and start time."""
    run_id = cfg.run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{grammar_name}-s{cfg.seed}"
    return Path(cfg.out_dir) / run_id


def new_run_dir(cfg: RunConfig, grammar_name: str, path: Path | None = None) -> Path:
    """Create a fresh folder (`path`, default `run_path`); an existing one must be empty."""
    path = path or run_path(cfg, grammar_name)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"cannot create run folder {path}: a file of that name exists")
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"run folder {path} already exists and is not empty; choose another --run-id")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run folder {path}: {exc.strerror or exc}") from None
    return path


class Claim:
    """The folder one `run` call works in: locked while the call lasts (gpact.run.lock).

    A start that fails before the run's first checkpoint leaves nothing anyone could resume, so the folder
    it was given (absent or empty before) is emptied again, and removed if this call created it. A resumed
    folder is never removed.
    """

    def __init__(self) -> None:
        self.path: Path | None = None
        self.fresh = False  # this call made the folder or found it empty
        self.created = False
        self._lock: lock.RunLock | None = None

    def new(self, cfg: RunConfig, grammar_name: str) -> Path:
        """A fresh run folder (see `new_run_dir`), locked."""
        path = run_path(cfg, grammar_name)
        existed = path.exists()
        new_run_dir(cfg, grammar_name, path)
        self._lock = lock.acquire(path)
        self.path, self.fresh, self.created = path, True, not existed
        if any(p.name != lock.FILE for p in path.iterdir()):  # another run filled it since we looked
            self.fresh = self.created = False
            raise ConfigError(f"run folder {path} already exists and is not empty; choose another --run-id")
        return path

    def resume(self, run_dir: str | Path) -> Path:
        """An existing run folder, locked before anything in it is read."""
        path = Path(run_dir)
        config_path(path)
        self._lock = lock.acquire(path)
        self.path = path
        return path

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._lock is None:
            return
        if exc_type is not None and self.fresh and not (self.path / CHECKPOINT).exists():
            _empty(self.path, remove=self.created)
        lock.release(self._lock)
        self._lock = None


def _empty(path: Path, remove: bool) -> None:
    for p in path.iterdir():
        if p.name == lock.FILE:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if remove:
        shutil.rmtree(path, ignore_errors=True)  # the lock file goes too; its descriptor stays valid


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
        os.fchmod(fd, FILE_MODE)
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


def read_json(path: Path, limit: int = MB, required: dict[str, Any] | None = None,
              optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run-folder JSON object, read so that a damaged or hostile file is a ConfigError naming it.

    The size is bounded before parsing (`limit` bytes) and nesting by the parser's recursion limit;
    `required` and `optional` map top-level keys to the type (or tuple of types) their values must have.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:  # the size is checked before reading, and again while (a growing file)
            raw = f.read(limit + 1) if os.fstat(f.fileno()).st_size <= limit else None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw is None or len(raw) > limit:
        raise ConfigError(f"{path}: larger than {limit // MB or 1} MB, more than gpact ever writes there; "
                          "the file is damaged")
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # bad UTF-8, bad JSON, an integer of more digits than Python converts
        raise ConfigError(f"{path}: not readable JSON ({one_line(exc)})") from None
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply; the file is damaged") from None
    return check_shape(path, data, required, optional)


def check_shape(path: Path, data: Any, required: dict[str, Any] | None = None,
                optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """`data` itself if it is an object whose keys have the given types; else a ConfigError naming `path`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {_kind(data)}")
    for key, kind in {**(optional or {}), **(required or {})}.items():
        if key not in data:
            if key in (required or {}):
                raise ConfigError(f"{path}: '{key}' is missing")
            continue
        if not isinstance(data[key], kind) or (isinstance(data[key], bool) and bool not in _tuple(kind)):
            raise ConfigError(f"{path}: '{key}' is {_kind(data[key])}, expected {_names(kind)}")
    return data


def _tuple(kind: Any) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: Any) -> str:
    return " or ".join(_kind(k) if not isinstance(k, type) else _KINDS.get(k, k.__name__) for k in _tuple(kind))


_KINDS = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
          bool: "a boolean", type(None): "null"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def one_line(value: object) -> str:
    """An exception's message (or any value) as printable text of at most 200 characters, for one-line errors."""
    return "".join(c for c in str(value) if c.isprintable())[:200]


_NUMBER = (int, float)
SUMMARY_SHAPE = {"grammar": str, "status": str, "generations": int, "generations_target": int, "evaluations": int,
                 "cache_hits": int, "elapsed_s": _NUMBER, "references": dict, "reference_flops": dict,
                 "best": (str, type(None)), "best_ood_score": (*_NUMBER, type(None)), "started": str,
                 "finished": str}


def read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json, checked for shape ({} when there is none)."""
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        return {}
    data = read_json(path, optional=SUMMARY_SHAPE)
    for key in ("references", "reference_flops"):
        if not all(isinstance(v, _NUMBER) for v in data.get(key, {}).values()):
            raise ConfigError(f"{path}: '{key}' holds something other than numbers")
    return data


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.json as saved (a ConfigError if `run_dir` is not a run folder or the file is damaged)."""
    return read_json(config_path(run_dir), required={"grammar": str}, optional={"generations": int})


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a jsonl file; a torn last line (crash mid-append) or any line that is not an object is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
