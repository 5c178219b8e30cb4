"""One process per run folder: `runs/<id>/.lock`, held with flock while a run or resume works there.

Two processes appending to the same candidates.jsonl would duplicate rows and fight over the checkpoint,
so a second `gpact run` (or `--resume`) of a folder in use is refused, naming the holder. flock rather
than a pid file: the kernel drops the lock when its process dies, even by kill -9, so a stale lock can
never block a resume. The file holds the holder's pid, host and start time, for the refusal message only.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from gpact.errors import ConfigError

FILE = ".lock"


@dataclass
class RunLock:
    path: Path
    fd: int


def acquire(run_dir: Path) -> RunLock:
    """Lock `run_dir` for this process, or raise a ConfigError naming the process that holds it."""
    path = Path(run_dir) / FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise ConfigError(f"cannot lock run folder {run_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise ConfigError(f"run folder {run_dir} is in use by another gpact process ({holder}); "
                              "wait for it to finish or stop it") from None
        # The holder before us may have unlinked the file between our open and our flock: then we locked
        # a file no one else will see, so start again on the one at `path`.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode(), 0)
    return RunLock(path, fd)


def release(lock: RunLock) -> None:
    """Remove the lock file, then unlock (in that order, so no one locks a file that is going away)."""
    try:
        lock.path.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only folder keeps its lock file; the lock itself goes with the descriptor
    os.close(lock.fd)


def _read(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return "".join(c for c in text if c.isprintable()) or "pid unknown"
