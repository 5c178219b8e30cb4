"""The Ray backend: Ray actors on a local Ray or on a running cluster, one GPU each where the cluster has GPUs.

Ray is imported only when a pool starts (`pip install 'gpact[ray]'`). The module is not called ray.py, so
that it never shadows the `ray` package.
"""

from __future__ import annotations

import os
import time
from typing import Any

from gpact.backends.base import BackendError
from gpact.backends.scheduler import Distributed, Pool
from gpact.backends.worker import CHUNK_FN, Worker, pythonpath
from gpact.errors import ConfigError


class RayBackend(Distributed):
    """Ray actors, one per worker slot (`num_gpus=1` each where the cluster has GPUs). `address` "" starts a
    local Ray with `workers` CPUs; "auto" or "host:port" joins a running cluster (`ray start --head`)."""

    name = "ray"

    def __init__(self, workers: int = 0, address: str = "", device: str = "auto", chunk_timeout: float = 0.0,
                 task_seed: int = 0, chunk_fn: str = CHUNK_FN):
        super().__init__(workers, device, chunk_timeout, task_seed, chunk_fn)
        self.address = address
        self._gpus = 0
        self._owns_ray = False
        self.nodes: set[str] = set()  # Ray node ids the actors ran on, for a look at where work went

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
        return f"ray: {self.workers or 'one actor per GPU, else per CPU,'} {'actors ' * bool(self.workers)}on {where}"

    def _memory_device(self) -> str:
        return "cuda" if self._gpus else "cpu"

    def _make_pool(self) -> Pool:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray backend needs Ray: pip install 'gpact[ray]'") from None
        if not ray.is_initialized():
            runtime_env = {"env_vars": {"PYTHONPATH": pythonpath()}}
            kw: dict[str, Any] = {"runtime_env": runtime_env, "logging_level": "warning", "log_to_driver": True}
            try:
                if self.address:
                    ray.init(address=self.address, **kw)
                else:
                    ray.init(address="local", num_cpus=self.workers or None, include_dashboard=False, **kw)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BackendError(f"cannot start or join Ray at {self.address or 'local'}: {exc}") from None
            self._owns_ray = True
        res = ray.cluster_resources()
        self._gpus = int(res.get("GPU", 0)) if self.device != "cpu" else 0
        size = self.workers or self._gpus or int(res.get("CPU", 1)) or 1
        return _RayPool(ray, size, self._gpus > 0, self.nodes)

    def close(self) -> None:
        super().close()
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False


class _RayPool:
    def __init__(self, ray, size: int, gpu: bool, nodes: set[str]):
        self.ray, self.size, self.nodes = ray, size, nodes
        opts = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
        self._cls = ray.remote(max_restarts=0, max_task_retries=0, **opts)(_RayWorker)
        self._actors: dict[int, Any] = {}
        self._refs: dict[Any, tuple[int, Any, str]] = {}  # ObjectRef -> (slot, actor, "ready" | "done")

    def starting(self, slot: int) -> bool:
        return slot in self._actors

    def start(self, slot: int) -> None:
        actor = self._cls.remote()
        self._actors[slot] = actor
        self._refs[actor.ready.remote()] = (slot, actor, "ready")

    def submit(self, slot: int, args: tuple) -> None:
        actor = self._actors[slot]
        self._refs[actor.run.remote(*args)] = (slot, actor, "done")

    def poll(self, timeout: float | None) -> list[tuple[int, str, Any]]:
        ray = self.ray
        if not self._refs:
            time.sleep(min(timeout or 0.1, 0.1))
            return []
        refs = list(self._refs)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        events = []
        for ref in ready:
            slot, actor, kind = self._refs.pop(ref)
            if self._actors.get(slot) is not actor:
                continue  # from an actor already replaced
            try:
                value = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # Python raised inside the actor
                events.append((slot, "error", str(exc).strip().splitlines()[-1]))
                continue
            except ray.exceptions.RayError as exc:  # the actor died: killed, out of memory, node lost
                events.append((slot, "died", f"Ray worker lost ({type(exc).__name__})"))
                continue
            if kind == "ready":
                self.nodes.add(value[1])
            events.append((slot, kind, value))
        return events

    def kill(self, slot: int) -> None:
        actor = self._actors.pop(slot, None)
        if actor is not None:
            self.ray.kill(actor, no_restart=True)
        self._refs = {r: v for r, v in self._refs.items() if v[0] != slot}

    def close(self) -> None:
        for slot in list(self._actors):
            self.kill(slot)


class _RayWorker:
    """Body of the Ray actor (wrapped by `ray.remote` in RayBackend, so ray is imported only when used)."""

    def __init__(self) -> None:
        self.worker = Worker()

    def ready(self) -> tuple[int, str]:
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, ctx: dict[str, Any], texts: list[str], seeds: list[int], chunk: int, attempt: int) -> dict:
        return self.worker.run(ctx, texts, seeds, chunk, attempt)
