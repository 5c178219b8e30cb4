"""The distributed backends' shared main side: cut formulas into chunks, send them as text to worker slots,
collect plain records back, and handle faults.

Faults: a worker that dies (killed, out of memory) or runs past `chunk_timeout` on a chunk is replaced and
its chunk re-run once, on another worker where there is one; a second failure scores the chunk's candidates
WORST with the reason, so the run always completes. A worker that raises stops the call (the serial backend
would have raised too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import sympy as sp
import torch

from gpact.backends.base import BackendError, chunk_size, worst
from gpact.backends.context import grammar_text, task_recipe
from gpact.backends.worker import CHUNK_FN, ROOT
from gpact.config import ProtocolDist, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.expr.wire import ship
from gpact.train.evaluate import Progress, evaluate_population
from gpact.train.fitness import Fitness
from gpact.train.mlp import DEFAULT_CONFIG
from gpact.train.tasks import Task

STARTUP_TIMEOUT = 600.0  # seconds without any worker ready before giving up (a cluster with no room, say)


class Pool(Protocol):
    """Worker slots. `start` is asynchronous (the slot reports "ready"); `poll` returns events
    (slot, kind, payload) with kind "ready", "done", "error" or "died"."""

    size: int

    def starting(self, slot: int) -> bool: ...

    def start(self, slot: int) -> None: ...

    def submit(self, slot: int, args: tuple) -> None: ...

    def poll(self, timeout: float | None) -> list[tuple[int, str, Any]]: ...

    def kill(self, slot: int) -> None: ...

    def close(self) -> None: ...


class Distributed:
    """What the process and Ray backends share: plain chunks out, plain records back, faults handled."""

    name = "?"

    def __init__(self, workers: int, device: str, chunk_timeout: float, task_seed: int, chunk_fn: str = CHUNK_FN):
        if workers < 0 or chunk_timeout < 0:
            raise ConfigError("workers and chunk_timeout must be >= 0 (0: automatic / no limit)")
        self.workers, self.device, self.chunk_timeout, self.task_seed = workers, device, chunk_timeout, task_seed
        self.chunk_fn = chunk_fn  # "module:function" each worker evaluates its chunks with (worker.CHUNK_FN)
        self.faults: list[str] = []
        self._pool: Pool | None = None
        self._ready: set[int] = set()
        self._grammars: dict[int, tuple[Grammar, str]] = {}  # id -> (grammar kept alive, YAML text)
        self._recipes: dict[tuple[int, ...], tuple[list[Task], dict]] = {}

    # -- hooks for the subclasses
    def _make_pool(self) -> Pool:
        raise NotImplementedError

    def _memory_device(self) -> str:
        return "cpu"

    # -- public
    def check(self, grammar: Grammar) -> None:
        """Refuse, with a message, a grammar that worker processes cannot rebuild from its file."""
        self._grammar_text(grammar)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._pool, self._ready = None, set()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def evaluate(self, exprs: Sequence[sp.Expr], grammar: Grammar, tasks: list[Task], seeds: Sequence[int],
                 cfg: TrainConfig = DEFAULT_CONFIG, evaluator: str = "auto", device: str = "auto",
                 progress: Progress | None = None, protocol: ProtocolDist | None = None) -> list[Fitness]:
        """Cut the formulas into chunks, run them on the workers, and return fitness in input order."""
        n = len(exprs)
        if not n:
            return []
        ctx = self._context(grammar, tasks, cfg, evaluator, device, protocol)
        seeds = list(seeds)
        texts = [ship(e) for e in exprs]
        out: list[Fitness | None] = [None] * n
        shipped = [i for i, t in enumerate(texts) if t is not None]
        with _global_rngs_kept():
            self._run_remote(ctx, texts, shipped, seeds, tasks, cfg, out, progress, protocol)
        local = [i for i, t in enumerate(texts) if t is None]  # rare: a sympy form the wire format can't carry
        if local:
            fits = evaluate_population([exprs[i] for i in local], grammar, tasks, seeds, cfg, evaluator=evaluator,
                                       device=device, protocol=protocol)
            for i, f in zip(local, fits, strict=True):
                out[i] = f
        return out  # type: ignore[return-value]

    def _run_remote(self, ctx: dict, texts: list[str | None], shipped: list[int], seeds: list[int],
                    tasks: list[Task], cfg: TrainConfig, out: list[Fitness | None], progress: Progress | None,
                    protocol: ProtocolDist | None = None) -> None:
        """Chunks of the shipped formulas through the workers; results land in `out` at their input positions."""
        if not shipped:
            return
        if self._pool is None:
            self._pool = self._make_pool()
        size = chunk_size(len(shipped), self._pool.size, tasks, len(seeds), cfg, self._memory_device(), protocol)
        chunks = [shipped[i:i + size] for i in range(0, len(shipped), size)]
        done = 0

        def finished(c: int, fits: list[Fitness]) -> None:
            nonlocal done
            for i, f in zip(chunks[c], fits, strict=True):
                out[i] = f
            done += len(chunks[c])
            if progress:
                progress(done, len(out))

        try:
            self._schedule(ctx, [[texts[i] for i in c] for c in chunks], seeds, tasks, finished)
        except BaseException:  # an error or Ctrl-C mid-call: workers may still hold its chunks, start afresh
            self.close()
            raise

    # -- the scheduling loop and its fault policy
    def _schedule(self, ctx: dict, chunks: list[list[str]], seeds: list[int], tasks: list[Task], finished) -> None:
        pool = self._pool
        queue: deque[tuple[int, int, int]] = deque((c, 0, -1) for c in range(len(chunks)))  # chunk, attempt, avoid
        running: dict[int, tuple[int, int, float]] = {}  # slot -> (chunk, attempt, deadline)
        first_failure: dict[int, str] = {}
        for slot in range(pool.size):
            if slot not in self._ready and not pool.starting(slot):
                pool.start(slot)
        waiting_since, start_failures = time.monotonic(), 0

        def fault(slot: int, chunk: int, attempt: int, reason: str) -> None:
            self.faults.append(reason)
            if attempt == 0:
                first_failure[chunk] = reason
                queue.appendleft((chunk, 1, slot))  # once more, on another slot when there is one
            else:
                first = first_failure.get(chunk, reason)
                why = f"{reason}, twice" if first == reason else f"{first}; on retry: {reason}"
                finished(chunk, [worst(why, tasks, seeds)] * len(chunks[chunk]))

        while queue or running:
            for slot in sorted(self._ready - set(running)):  # a retry avoids its failed slot if another is ready
                item = next((q for q in queue if q[2] != slot or len(self._ready) == 1), None)
                if item is None:
                    continue
                queue.remove(item)
                chunk, attempt, _ = item
                deadline = time.monotonic() + self.chunk_timeout if self.chunk_timeout else math.inf
                running[slot] = (chunk, attempt, deadline)
                try:
                    pool.submit(slot, (ctx, chunks[chunk], seeds, chunk, attempt))
                except WorkerLost as exc:
                    del running[slot]
                    self._restart(slot)
                    fault(slot, chunk, attempt, str(exc))
            if not running and not self._ready and time.monotonic() - waiting_since > STARTUP_TIMEOUT:
                raise BackendError(f"no {self.name} worker became ready within {STARTUP_TIMEOUT:.0f}s")
            now = time.monotonic()
            deadlines = [d for _, _, d in running.values() if d < math.inf]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            if not running:
                timeout = 5.0 if timeout is None else min(timeout, 5.0)
            for slot, kind, payload in pool.poll(timeout):
                if kind == "ready":
                    self._ready.add(slot)
                    start_failures = 0
                elif kind == "done" and running.get(slot, ())[:2] == (payload["chunk"], payload["attempt"]):
                    del running[slot]
                    finished(payload["chunk"], [Fitness(**d) for d in payload["fits"]])
                elif kind == "error":
                    raise BackendError(f"{self.name} worker raised {payload}")
                elif kind == "died":
                    if slot in running:
                        chunk, attempt, _ = running.pop(slot)
                        fault(slot, chunk, attempt, payload)
                    elif slot not in self._ready:
                        start_failures += 1
                        if start_failures > 2 * pool.size + 2:
                            raise BackendError(f"{self.name} workers keep dying before they are ready ({payload}); "
                                               f"can they import gpact (PYTHONPATH={ROOT})?")
                    self._restart(slot)
            now = time.monotonic()
            for slot, (chunk, attempt, deadline) in list(running.items()):
                if now > deadline:
                    del running[slot]
                    self._restart(slot)
                    fault(slot, chunk, attempt, f"chunk timed out after {self.chunk_timeout:g}s")
            if self._ready:
                waiting_since = time.monotonic()

    def _restart(self, slot: int) -> None:
        self._ready.discard(slot)
        self._pool.kill(slot)
        self._pool.start(slot)

    # -- contexts: what a worker needs besides the formulas, as plain data
    def _context(self, grammar: Grammar, tasks: list[Task], cfg: TrainConfig, evaluator: str, device: str,
                 protocol: ProtocolDist | None = None) -> dict:
        ctx = {"grammar": self._grammar_text(grammar), "grammar_path": grammar.path, **self._task_recipe(tasks),
               "train": dataclasses.asdict(cfg), "evaluator": evaluator, "device": device,
               "chunk_fn": self.chunk_fn, "protocol": protocol and dataclasses.asdict(protocol)}
        ctx["key"] = hashlib.sha1(json.dumps(ctx, sort_keys=True).encode()).hexdigest()
        return ctx

    def _grammar_text(self, grammar: Grammar) -> str:
        if id(grammar) not in self._grammars:
            self._grammars[id(grammar)] = (grammar, grammar_text(grammar, self.name))
        return self._grammars[id(grammar)][1]

    def _task_recipe(self, tasks: list[Task]) -> dict:
        key = tuple(map(id, tasks))
        if key not in self._recipes:
            self._recipes[key] = (tasks, task_recipe(tasks, (self.task_seed, 0), self.name))
        return self._recipes[key][1]


@contextmanager
def _global_rngs_kept() -> Iterator[None]:
    """The search draws from the global `random` (DEAP) and a run is reproducible from its seed, but starting
    workers may draw from it too (ray.init does): put the global generators back as they were."""
    state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.random.set_rng_state(state[2])


class WorkerLost(Exception):
    """A worker could not be reached (its pipe broke)."""
