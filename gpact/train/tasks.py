"""Synthetic regression tasks with an out-of-distribution (OOD) split.

Every task trains on an in-distribution (ID) input box and is scored on a disjoint OOD box, so the
score measures extrapolation, the property an activation function is searched for (docs/design.md §5).
Three families, after "Mining Generalizable Activation Functions":

- polynomial: train on [-1, 1], score on 1 <= |x| <= 2. Polynomials grow outside the box; an
  activation that extrapolates like a polynomial wins, a saturating one loses.
- harmonic:   train on [-pi, pi] (at least one period of the slowest term), score on pi <= |x| <= 2pi.
  Only an activation that carries periodicity can continue the wave past the training box.
- feynman:    physics formulas from the AI Feynman dataset, 1 to 3 inputs. Positive quantities are
  sampled from [1, 3] for training and [3, 5] for scoring (the dataset's own [1, 5] range, split so
  that the upper part is never seen); the gaussian I.6.2a, defined for any sign, uses the
  polynomial ranges.

Multi-input tasks draw every coordinate from the same range, so each OOD point lies outside the
training box in every coordinate. With `ood_mirror`, each OOD coordinate gets a random sign, giving
both sides of the training interval (e.g. [1, 2] and [-2, -1]).

Inputs and targets are standardised with TRAINING statistics only; the OOD split reuses the same
shift and scale, so nothing about the OOD inputs leaks into training.

Besides these hand-written tasks and their suites, every function here takes library names
(gpact.train.library; docs/tasks.md): "<family>/<index>" for a seeded draw of one of the generator
families ("rational/17"), "feynman/<id>" for an equation of the shipped AI Feynman table, and
"random:N" / "random:N@SEED" for N such names dealt across families by a seed. `split_tasks` gives the
unit (family, or Feynman group) of each task for the splits of gpact.train.library.splits.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gpact.errors import ConfigError
from gpact.train.library import expand_random, is_library_name, library_spec
from gpact.train.library.spec import TaskSpec, sample_id, sample_ood
from gpact.train.library.splits import split_unit

__all__ = ["TaskSpec", "Task", "TASKS", "SUITES", "get_spec", "draw_raw", "make_task", "resolve_names", "make_suite",
           "split_tasks"]


@dataclass(frozen=True)
class Task:
    """One task's tensors, ready for training: float32, standardised with training statistics."""

    spec: TaskSpec
    x_train: torch.Tensor  # [n_train, d]
    y_train: torch.Tensor  # [n_train, 1]
    x_ood: torch.Tensor  # [n_ood, d]
    y_ood: torch.Tensor  # [n_ood, 1]


# Ranges, named once so the family docstring above stays true.
_POLY_ID, _POLY_OOD = (-1.0, 1.0), (1.0, 2.0)
_HARM_ID, _HARM_OOD = (-math.pi, math.pi), (math.pi, 2 * math.pi)
_PHYS_ID, _PHYS_OOD = (1.0, 3.0), (3.0, 5.0)
_FOUR_PI = 4 * math.pi


def _poly(name: str, n: int, fn: Callable[[np.ndarray], np.ndarray]) -> TaskSpec:
    return TaskSpec(f"poly_{name}", "polynomial", n, fn, _POLY_ID, _POLY_OOD, ood_mirror=True)


def _harm(name: str, n: int, fn: Callable[[np.ndarray], np.ndarray]) -> TaskSpec:
    return TaskSpec(f"harmonic_{name}", "harmonic", n, fn, _HARM_ID, _HARM_OOD, ood_mirror=True)


def _phys(fid: str, n: int, fn: Callable[[np.ndarray], np.ndarray]) -> TaskSpec:
    return TaskSpec(f"feynman_{fid}", "feynman", n, fn, _PHYS_ID, _PHYS_OOD)


_SPECS = [
    _poly("cubic", 1, lambda x: x[:, 0] ** 3 - x[:, 0]),
    _poly("quartic", 1, lambda x: x[:, 0] ** 4 - 2 * x[:, 0] ** 2 + 0.5 * x[:, 0]),
    _poly("2d", 2, lambda x: x[:, 0] ** 2 - x[:, 0] * x[:, 1] + 0.5 * x[:, 1]),
    _harm("2", 1, lambda x: np.sin(2 * x[:, 0]) + 0.5 * np.sin(5 * x[:, 0])),
    # partial Fourier sum of a square wave
    _harm("3", 1, lambda x: np.sin(x[:, 0]) + np.sin(3 * x[:, 0]) / 3 + np.sin(5 * x[:, 0]) / 5),
    _harm("2d", 2, lambda x: np.sin(2 * x[:, 0]) + 0.5 * np.cos(3 * x[:, 1])),
    # I.6.2a: standard normal density f = exp(-theta^2 / 2) / sqrt(2 pi); even, so mirrored OOD
    TaskSpec(
        "feynman_I.6.2a", "feynman", 1,
        lambda x: np.exp(-(x[:, 0] ** 2) / 2) / math.sqrt(2 * math.pi),
        _POLY_ID, _POLY_OOD, ood_mirror=True,
    ),
    # I.6.2: normal density with width sigma; inputs (theta, sigma)
    _phys("I.6.2", 2, lambda x: np.exp(-((x[:, 0] / x[:, 1]) ** 2) / 2) / (math.sqrt(2 * math.pi) * x[:, 1])),
    # I.12.4: Coulomb field E = q1 / (4 pi eps r^2); inputs (q1, eps, r)
    _phys("I.12.4", 3, lambda x: x[:, 0] / (_FOUR_PI * x[:, 1] * x[:, 2] ** 2)),
    # I.14.3: potential energy U = m g z; inputs (m, g, z)
    _phys("I.14.3", 3, lambda x: x[:, 0] * x[:, 1] * x[:, 2]),
    # I.14.4: spring energy U = k x^2 / 2; inputs (k, x)
    _phys("I.14.4", 2, lambda x: 0.5 * x[:, 0] * x[:, 1] ** 2),
    # I.18.12: torque tau = r F sin(theta); inputs (r, F, theta)
    _phys("I.18.12", 3, lambda x: x[:, 0] * x[:, 1] * np.sin(x[:, 2])),
    # I.29.4: wave number k = omega / c; inputs (omega, c)
    _phys("I.29.4", 2, lambda x: x[:, 0] / x[:, 1]),
    # I.37.4: interference I = I1 + I2 + 2 sqrt(I1 I2) cos(delta); inputs (I1, I2, delta)
    _phys("I.37.4", 3, lambda x: x[:, 0] + x[:, 1] + 2 * np.sqrt(x[:, 0] * x[:, 1]) * np.cos(x[:, 2])),
    # I.39.10: ideal-gas energy E = 3/2 pF V; inputs (pF, V)
    _phys("I.39.10", 2, lambda x: 1.5 * x[:, 0] * x[:, 1]),
    # II.3.24: radiation flux h = P / (4 pi r^2); inputs (P, r)
    _phys("II.3.24", 2, lambda x: x[:, 0] / (_FOUR_PI * x[:, 1] ** 2)),
    # The reference protocol of `gpact bench` (docs/design.md §4 "The evaluator"): one side only, x in [1, 2].
    TaskSpec(
        "bench_sin3x_x2", "harmonic", 1,
        lambda x: np.sin(3 * x[:, 0]) + x[:, 0] ** 2, (-1.0, 1.0), (1.0, 2.0),
    ),
]

TASKS: dict[str, TaskSpec] = {s.name: s for s in _SPECS}

BENCH_TASK = "bench_sin3x_x2"
BENCH_POINTS = 512  # `gpact bench` uses make_task(BENCH_TASK, n_train=BENCH_POINTS, n_ood=BENCH_POINTS)

SUITES: dict[str, tuple[str, ...]] = {
    # the search suite: what selection sees
    "default": (
        "poly_cubic", "poly_2d", "harmonic_2", "harmonic_3",
        "feynman_I.6.2a", "feynman_I.12.4", "feynman_I.14.3", "feynman_I.39.10",
    ),
    "smoke": ("poly_cubic", "harmonic_2"),
    # never used for selection: the final report of a run is scored here
    "holdout": (
        "poly_quartic", "harmonic_2d", "feynman_I.6.2", "feynman_I.14.4",
        "feynman_I.18.12", "feynman_I.29.4", "feynman_I.37.4", "feynman_II.3.24",
    ),
    "bench": (BENCH_TASK,),
    "all": tuple(TASKS),
}


def get_spec(name: str) -> TaskSpec:
    """The spec called `name`: a registered task or a library name ("rational/17", "feynman/I.12.4");
    ConfigError listing the known names otherwise."""
    if name in TASKS:
        return TASKS[name]
    if is_library_name(name):
        return library_spec(name)
    raise ConfigError(f"unknown task '{name}'; known: {', '.join(TASKS)}, or library names such as "
                      f"'rational/17', 'feynman/I.12.4'")


def draw_raw(
    spec: TaskSpec, n_train: int, n_ood: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unstandardised float64 samples (x_train [n, d], y_train [n], x_ood, y_ood).

    Train and OOD use separate streams keyed by (seed, crc32(name)), so the OOD points do not
    change with n_train, two tasks with the same seed get different points, and no global RNG
    state is touched. The OOD region is the spec's shift kind (gpact.train.library.spec).
    """
    key = zlib.crc32(spec.name.encode())
    rng_train = np.random.default_rng([seed, key, 0])
    rng_ood = np.random.default_rng([seed, key, 1])
    x_train = sample_id(spec, rng_train, n_train)
    x_ood = sample_ood(spec, rng_ood, n_ood)
    return x_train, spec.fn(x_train), x_ood, spec.fn(x_ood)


def _standardiser(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = a.mean(axis=0), a.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)  # a constant column is shifted, not blown up


def make_task(name: str, n_train: int = 256, n_ood: int = 256, seed: int = 0) -> Task:
    """Build task `name` deterministically from (name, n_train, n_ood, seed)."""
    spec = get_spec(name)
    if n_train < 2 or n_ood < 1:
        raise ConfigError(f"task '{name}' needs n_train >= 2 and n_ood >= 1, got {n_train}, {n_ood}")
    if seed < 0:
        raise ConfigError(f"task seed must be >= 0, got {seed}")
    x_tr, y_tr, x_ood, y_ood = draw_raw(spec, n_train, n_ood, seed)
    if not (np.isfinite(y_tr).all() and np.isfinite(y_ood).all()):
        raise ConfigError(f"task '{name}' gave non-finite targets for seed {seed}")
    y_tr, y_ood = y_tr[:, None], y_ood[:, None]
    x_mean, x_std = _standardiser(x_tr)
    y_mean, y_std = _standardiser(y_tr)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return Task(
        spec=spec,
        x_train=t((x_tr - x_mean) / x_std),
        y_train=t((y_tr - y_mean) / y_std),
        x_ood=t((x_ood - x_mean) / x_std),
        y_ood=t((y_ood - y_mean) / y_std),
    )


def resolve_names(names: str | Sequence[str]) -> list[str]:
    """Task names for a suite name, a task name, a library name ("rational/17", "feynman/I.12.4"), a
    seeded draw "random:N" / "random:N@SEED", a comma-separated string of these, or a list."""
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item in SUITES:
            out.extend(SUITES[item])
        elif item in TASKS:
            out.append(item)
        elif is_library_name(item):
            out.append(get_spec(item).name)  # checks that the name exists (a Feynman id, a drawable index)
        elif (drawn := expand_random(item)) is not None:
            out.extend(drawn)
        else:
            raise ConfigError(
                f"unknown task or suite '{item}'; suites: {', '.join(SUITES)}; tasks: {', '.join(TASKS)}; "
                f"library names such as 'rational/17', 'feynman/I.12.4'; seeded draws 'random:N[@SEED]'"
            )
    return list(dict.fromkeys(out))  # drop repeats, keep order


def make_suite(
    names: str | Sequence[str] = "default", n_train: int = 256, n_ood: int = 256, seed: int = 0
) -> list[Task]:
    """The tasks of a suite (or of explicit task names), each built by make_task with the same seed."""
    tasks = resolve_names(names)
    if not tasks:
        raise ConfigError("empty task suite")
    return [make_task(n, n_train, n_ood, seed) for n in tasks]


def split_tasks(names: str | Sequence[str]) -> dict[str, str]:
    """The split unit (family; Feynman equations by group) of each task named, for `family_split`."""
    return {n: split_unit(get_spec(n)) for n in resolve_names(names)}
