"""Scale-out: the search hands a generation's candidates to a backend and gets one Fitness per candidate back.

- `serial` (default): `evaluate_population` in this process. The reference every other backend must match.
- `process`: local worker processes (`multiprocess`, spawn start method: CUDA can't fork), one per visible
  GPU, or N on CPU.
- `ray`: Ray actors on a local Ray or on a running cluster, one GPU each where the cluster has GPUs.

Work travels as text, never as pickled DEAP or sympy objects: each candidate as an exact formula string
(gpact.expr.wire), the grammar as its YAML text, the tasks as (names, sizes, seed), the training config as a
dict; results come back as plain dicts. Workers rebuild grammar and tasks once per context and keep them, so
they stay warm across generations. The evaluator trains every candidate on its own, so a candidate's fitness
does not depend on which chunk it lands in: every backend gives the serial backend's numbers.

Modules: base (the Backend protocol, the serial backend), scheduler (chunks and the fault policy of the
distributed backends), context (grammar and tasks as plain data), worker (the worker side), process, ray_pool.
"""

from __future__ import annotations

from gpact.backends.base import Backend, SerialBackend
from gpact.backends.process import ProcessBackend
from gpact.backends.ray_pool import RayBackend
from gpact.backends.worker import CHUNK_FN
from gpact.config import BACKENDS
from gpact.errors import ConfigError


def make_backend(name: str = "serial", workers: int = 0, ray_address: str = "", chunk_timeout: float = 0.0,
                 device: str = "auto", task_seed: int = 0, chunk_fn: str = CHUNK_FN) -> Backend:
    """The backend called `name`; `task_seed` is the seed the run's task suites were built with; `chunk_fn`
    the "module:function" workers evaluate chunks with (a seam for tests)."""
    if name == "serial":
        return SerialBackend()
    if name == "process":
        return ProcessBackend(workers, device, chunk_timeout, task_seed, chunk_fn)
    if name == "ray":
        return RayBackend(workers, ray_address, device, chunk_timeout, task_seed, chunk_fn)
    raise ConfigError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")
