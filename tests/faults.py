"""Fault injection for the backend tests, through gpact's chunk-function seam (gpact.backends.worker).

A backend given `chunk_fn="faults:<name>"` has its workers evaluate chunks with one of the functions below,
which kill or hang the worker on a chosen chunk and otherwise evaluate it as gpact does. Workers are
spawned processes or Ray actors: they import this module by name, so `use_faults` puts tests/ on the
PYTHONPATH that workers are given.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

from gpact.backends import make_backend
from gpact.backends.worker import evaluate_chunk

TESTS = str(Path(__file__).resolve().parent)


def kill_chunk_0_once(exprs, grammar, tasks, seeds, cfg, evaluator, device, chunk, attempt, protocol=None):
    """Every call's first chunk: its worker dies on the first attempt; the retry runs."""
    if chunk == 0 and attempt == 0:
        os._exit(3)
    return evaluate_chunk(exprs, grammar, tasks, seeds, cfg, evaluator, device, chunk, attempt, protocol)


def kill_chunk_0_hang_chunk_1(exprs, grammar, tasks, seeds, cfg, evaluator, device, chunk, attempt, protocol=None):
    """Chunk 0's worker dies on every attempt; chunk 1's hangs on the first (for the chunk timeout)."""
    if chunk == 0:
        os._exit(3)
    if chunk == 1 and attempt == 0:
        time.sleep(3600)
    return evaluate_chunk(exprs, grammar, tasks, seeds, cfg, evaluator, device, chunk, attempt, protocol)


def use_faults(monkeypatch, name: str | None = None) -> str:
    """Let workers import this module; with `name`, runs (gpact.run.runner) use the chunk function `name` too.
    Returns its "module:function" name."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])))
    chunk_fn = f"{__name__}:{name}" if name else ""
    if name:
        from gpact.run import runner

        monkeypatch.setattr(runner, "make_backend", functools.partial(make_backend, chunk_fn=chunk_fn))
    return chunk_fn
