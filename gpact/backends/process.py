"""The process backend: worker processes on this machine (`multiprocess`, spawn start method: CUDA can't fork),
one per visible GPU, or N on CPU.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import torch

from gpact.backends.scheduler import Distributed, Pool, WorkerLost
from gpact.backends.worker import CHUNK_FN, Worker, pythonpath


class ProcessBackend(Distributed):
    """Worker processes on this machine (`multiprocess`, spawn): one per visible GPU, else `workers` (default:
    one per CPU core) on CPU, each with an equal share of the cores' torch threads."""

    name = "process"

    def __init__(self, workers: int = 0, device: str = "auto", chunk_timeout: float = 0.0, task_seed: int = 0,
                 chunk_fn: str = CHUNK_FN):
        super().__init__(workers, device, chunk_timeout, task_seed, chunk_fn)
        self.gpus = visible_gpus() if device != "cpu" else []
        self.size = workers or len(self.gpus) or os.cpu_count() or 1

    def describe(self) -> str:
        where = f"GPUs {','.join(self.gpus)}" if self.gpus else "CPU"
        return f"process: {self.size} worker processes on {where}"

    def _memory_device(self) -> str:
        return "cuda" if self.gpus else "cpu"

    def _make_pool(self) -> Pool:
        envs = [{"CUDA_VISIBLE_DEVICES": self.gpus[i % len(self.gpus)]} for i in range(self.size)] if self.gpus \
            else [{} for _ in range(self.size)]
        threads = 0 if self.gpus else max(1, (os.cpu_count() or 1) // self.size)
        return _ProcessPool(envs, threads)


def visible_gpus() -> list[str]:
    """CUDA device ids this process may use, as CUDA_VISIBLE_DEVICES spells them."""
    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [d.strip() for d in env.split(",") if d.strip()][:torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


class _ProcessPool:
    def __init__(self, envs: list[dict[str, str]], threads: int):
        import multiprocess

        self._mp = multiprocess.get_context("spawn")
        self.size, self._envs, self._threads = len(envs), envs, threads
        self._procs: dict[int, Any] = {}
        self._conns: dict[int, Any] = {}

    def starting(self, slot: int) -> bool:
        return slot in self._procs

    def start(self, slot: int) -> None:
        parent, child = self._mp.Pipe()
        env = {**self._envs[slot], "PYTHONPATH": pythonpath()}
        proc = self._mp.Process(target=_process_main, args=(child, env, self._threads), daemon=True,
                                name=f"gpact-worker-{slot}")
        proc.start()
        child.close()
        self._procs[slot], self._conns[slot] = proc, parent

    def submit(self, slot: int, args: tuple) -> None:
        try:
            self._conns[slot].send(args)
        except (BrokenPipeError, EOFError, OSError) as exc:
            raise WorkerLost(f"worker unreachable ({type(exc).__name__})") from None

    def poll(self, timeout: float | None) -> list[tuple[int, str, Any]]:
        from multiprocess.connection import wait

        if not self._procs:
            time.sleep(min(timeout or 0.1, 0.1))
            return []
        by_obj = {}
        for slot, proc in self._procs.items():
            by_obj[self._conns[slot]] = slot
            by_obj[proc.sentinel] = slot
        events, dead = [], set()
        for obj in wait(list(by_obj), timeout):
            slot = by_obj[obj]
            if slot in dead:
                continue
            conn = self._conns[slot]
            try:
                while conn.poll():  # results sent before a death still count
                    kind, payload = conn.recv()
                    events.append((slot, kind, payload))
            except (EOFError, OSError):
                pass
            proc = self._procs[slot]
            if obj is proc.sentinel or not proc.is_alive():
                proc.join(1)
                if not proc.is_alive():
                    dead.add(slot)
                    events.append((slot, "died", _exit_reason(proc.exitcode)))
        return events

    def kill(self, slot: int) -> None:
        proc, conn = self._procs.pop(slot, None), self._conns.pop(slot, None)
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(10)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 5  # idle workers exit at once; busy ones (an interrupted call) are killed
        for slot, proc in list(self._procs.items()):
            proc.join(max(0.0, deadline - time.monotonic()))
            self.kill(slot)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker killed by {name}" + (" (out of memory?)" if code == -signal.SIGKILL else "")
    return f"worker died (exit code {code})"


def _process_main(conn, env: dict[str, str], threads: int) -> None:
    """A local worker process: report ready, then answer chunks until told to stop or the pipe closes."""
    os.environ.update(env)  # before anything touches CUDA: CUDA_VISIBLE_DEVICES pins this worker's GPU
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process, which finishes the generation
    worker = Worker(threads)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        try:
            conn.send(("done", worker.run(*msg)))
        except Exception as exc:  # the serial backend would raise this; the main process does
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
