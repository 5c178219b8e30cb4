"""Seeded generators of task families: one small frozen dataclass per family.

`draw(rng)` reads every parameter (inputs, coefficients, ID box, shift kind) from the numpy Generator
it is given and returns a `Drawn` task; `gpact.train.library` feeds it the generator of one library
name ("rational/17" -> np.random.default_rng([key("rational"), 17])) and redraws from the same
generator while the guard refuses the draw, so a name always rebuilds the same task.

Every family draws its region with `_region`: the family's ID box on every coordinate; an OOD
interval of width r * (box width), r in [0.25, 0.5], beyond one side ("right", "left"), both sides
("both"), or the box scaled by s in [1.5, 2] about its centre ("scaled"); and for d > 1 "one"
coordinate out or "all" of them (see `spec.py`). Families whose target needs a positive argument
(logsqrt, powers) draw only the shifts that keep it positive. Parameter ranges keep targets finite on
the whole OOD region: denominators are >= 1 or of positive inputs, log/sqrt arguments stay > 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from gpact.train.library.spec import SHIFTS, Box

Fn = Callable[[np.ndarray], np.ndarray]
WIDTH = (0.25, 0.5)  # OOD interval width, as a fraction of the ID box width
SCALE = (1.5, 2.0)  # "scaled": factor on the ID box about its centre


@dataclass(frozen=True)
class Drawn:
    """One drawn task, before it gets a name: target, number of inputs, and its ID/OOD regions."""

    fn: Fn
    n_inputs: int
    id_box: Box
    ood_box: Box
    shift: str
    coords: str


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _signed(rng: np.random.Generator, lo: float, hi: float, size=None) -> np.ndarray:
    """Magnitude uniform in [lo, hi], random sign."""
    return rng.uniform(lo, hi, size) * rng.choice([-1.0, 1.0], size)


def _n_inputs(rng: np.random.Generator, most: int) -> int:
    """1, 2 or 3 inputs (at most `most`) with weights 5 : 3 : 2."""
    weights = np.array([0.5, 0.3, 0.2][:most])
    return int(rng.choice(np.arange(1, most + 1), p=weights / weights.sum()))


def _region(
    rng: np.random.Generator, fn: Fn, d: int, box: tuple[float, float], shifts: tuple[str, ...] = SHIFTS
) -> Drawn:
    lo, hi = box
    shift = _pick(rng, shifts)
    coords = "all" if d == 1 or shift == "scaled" else _pick(rng, ("all", "one"))
    if shift == "scaled":
        c, h = (lo + hi) / 2, (hi - lo) / 2 * rng.uniform(*SCALE)
        ood = (c - h, c + h)
    else:
        w = (hi - lo) * rng.uniform(*WIDTH)
        ood = (lo - w, lo) if shift == "left" else (hi, hi + w)
    return Drawn(fn, d, ((lo, hi),) * d, (ood,) * d, shift, coords)


def _logistic(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form of 1 / (1 + exp(-z))


def _erf(z: np.ndarray) -> np.ndarray:
    return torch.erf(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float64))).numpy()


_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class Polynomial:
    """Sum of monomials of total degree <= D (1..5) in 1-3 inputs, random normal coefficients."""

    name: ClassVar[str] = "polynomial"
    box: tuple[float, float] = (-1.0, 1.0)
    max_degree: int = 5

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 3)
        degree = int(rng.integers(1, self.max_degree + 1))
        powers = np.array([p for p in itertools.product(range(degree + 1), repeat=d) if sum(p) <= degree])
        coef = rng.normal(size=len(powers)) * (rng.random(len(powers)) < 0.5)
        top = np.flatnonzero(powers.sum(1) == degree)
        coef[_pick(rng, top)] = _signed(rng, 0.5, 1.5)  # the degree is D: one top term is surely there

        def fn(x: np.ndarray) -> np.ndarray:
            return (x[:, None, :] ** powers[None]).prod(-1) @ coef

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class Rational:
    """p(u) / (1 + u^2) of an affine map u = w.x + b: "bounded" (deg p = 2, tends to a constant) or
    "decaying" (deg p <= 1, falls off like 1/u). The denominator is >= 1, so there is no pole."""

    name: ClassVar[str] = "rational"
    box: tuple[float, float] = (-2.0, 2.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 2)
        w, b = _signed(rng, 0.5, 2.0, d), rng.uniform(-1.0, 1.0)
        kind = _pick(rng, ("bounded", "decaying"))
        p = rng.normal(size=3)
        if kind == "decaying":
            p[2] = 0.0
            p[1] = _signed(rng, 0.5, 1.5)
        else:
            p[2] = _signed(rng, 0.5, 1.5)

        def fn(x: np.ndarray) -> np.ndarray:
            u = x @ w + b
            return (p[0] + p[1] * u + p[2] * u**2) / (1.0 + u**2)

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class Damped:
    """exp(-g u) sin(k u + phi) of u = w.x, w > 0: an oscillation that decays to the right (and grows
    to the left, which the "left", "both" and "scaled" shifts probe)."""

    name: ClassVar[str] = "damped"
    box: tuple[float, float] = (0.0, 3.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 2)
        w = rng.uniform(0.5, 1.0, d) / d
        g, k, phi = rng.uniform(0.2, 0.8), rng.uniform(1.5, 4.0), rng.uniform(0, 2 * math.pi)

        def fn(x: np.ndarray) -> np.ndarray:
            u = x @ w
            return np.exp(-g * u) * np.sin(k * u + phi)

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class Harmonic:
    """Sum of 1-3 sines with random frequencies (at least one period in the box), amplitudes, phases."""

    name: ClassVar[str] = "harmonic"
    box: tuple[float, float] = (-math.pi, math.pi)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 2)
        terms = int(rng.integers(1, 4))
        freq = _signed(rng, 1.0, 4.0, (terms, d)) if d == 1 else _signed(rng, 0.5, 3.0, (terms, d))
        amp, phase = _signed(rng, 0.3, 1.0, terms), rng.uniform(0, 2 * math.pi, terms)

        def fn(x: np.ndarray) -> np.ndarray:
            return np.sin(x @ freq.T + phase) @ amp

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class Saturating:
    """a * sigma(w.x + b), sigma one of tanh, erf, logistic: flat far outside the box."""

    name: ClassVar[str] = "saturating"
    box: tuple[float, float] = (-2.0, 2.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 3)
        w, b, a = _signed(rng, 0.5, 2.0, d), rng.uniform(-1.0, 1.0), _signed(rng, 0.5, 2.0)
        sigma = _pick(rng, ("tanh", "erf", "logistic"))
        act = {"tanh": np.tanh, "erf": lambda z: _erf(z / _SQRT2), "logistic": _logistic}[sigma]

        def fn(x: np.ndarray) -> np.ndarray:
            return a * act(x @ w + b)

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class Exponential:
    """a * exp(k u) + c * u of u = w.x with |k| in [0.5, 1.5]: growth (k > 0) or decay (k < 0)."""

    name: ClassVar[str] = "exponential"
    box: tuple[float, float] = (-1.0, 1.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 3)
        w = _signed(rng, 0.5, 1.0, d) / math.sqrt(d)
        k, a, c = _signed(rng, 0.5, 1.5), _signed(rng, 0.5, 1.5), rng.normal(scale=0.3)

        def fn(x: np.ndarray) -> np.ndarray:
            u = x @ w
            return a * np.exp(k * u) + c * u

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class LogSqrt:
    """a * log(c + w.x) or a * sqrt(c + w.x), w > 0, c > 0, on a box of positive inputs; shifted to the
    right only, so the argument stays >= c > 0: slow growth."""

    name: ClassVar[str] = "logsqrt"
    box: tuple[float, float] = (0.0, 2.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 3)
        w, c, a = rng.uniform(0.5, 2.0, d), rng.uniform(0.1, 1.0), _signed(rng, 0.5, 2.0)
        g = _pick(rng, (np.log, np.sqrt))

        def fn(x: np.ndarray) -> np.ndarray:
            return a * g(c + x @ w)

        return _region(rng, fn, d, self.box, shifts=("right",))


@dataclass(frozen=True)
class Kink:
    """Piecewise linear with kinks inside the box: a sum of 1-3 ramps max(0, w.x + b), a * |w.x + b|
    plus a slope, or the max of 2-3 affine maps."""

    name: ClassVar[str] = "kink"
    box: tuple[float, float] = (-2.0, 2.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 2)
        kind = _pick(rng, ("ramps", "abs", "max"))
        k = {"ramps": int(rng.integers(1, 4)), "abs": 1, "max": int(rng.integers(2, 4))}[kind]
        w, b = _signed(rng, 0.5, 2.0, (k, d)), rng.uniform(-1.0, 1.0, k)  # kink at |b / w| <= 2: inside
        a, slope = _signed(rng, 0.5, 1.5, k), rng.normal(scale=0.3, size=d)

        def fn(x: np.ndarray) -> np.ndarray:
            z = x @ w.T + b
            if kind == "ramps":
                return np.maximum(z, 0.0) @ a
            if kind == "abs":
                return a[0] * np.abs(z[:, 0]) + x @ slope
            return z.max(axis=1)

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class Bump:
    """Sum of 1-3 gaussian bumps centred inside the box: the target returns to 0 outside it."""

    name: ClassVar[str] = "bump"
    box: tuple[float, float] = (-2.0, 2.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 2)
        k = int(rng.integers(1, 4))
        lo, hi = self.box
        mu = rng.uniform(0.8 * lo, 0.8 * hi, (k, d))
        width, a = rng.uniform(0.3, 1.0, k), _signed(rng, 0.5, 1.5, k)

        def fn(x: np.ndarray) -> np.ndarray:
            r2 = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
            return np.exp(-r2 / (2 * width**2)) @ a

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class Powers:
    """a * prod x_j^p_j with p_j in {-2, -1, -1/2, 1/2, 1, 2, 3}: products and quotients of powers, on a
    box of positive inputs whose every shift stays >= 1 (the box is [2, 4])."""

    name: ClassVar[str] = "powers"
    box: tuple[float, float] = (2.0, 4.0)
    exponents: tuple[float, ...] = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 3)
        p = np.array([_pick(rng, self.exponents) for _ in range(d)])
        a = _signed(rng, 0.5, 2.0)

        def fn(x: np.ndarray) -> np.ndarray:
            return a * (x**p).prod(axis=1)

        return _region(rng, fn, d, self.box)


@dataclass(frozen=True)
class Composition:
    """outer(alpha * inner(x) + beta): inner one of a quadratic, a sine or a tanh of an affine map,
    outer one of sin, tanh, a gaussian exp(-z^2), z^2, exp(z / 2)."""

    name: ClassVar[str] = "composition"
    box: tuple[float, float] = (-2.0, 2.0)

    def draw(self, rng: np.random.Generator) -> Drawn:
        d = _n_inputs(rng, 2)
        inner_kind = _pick(rng, ("quadratic", "sin", "tanh"))
        outer_kind = _pick(rng, ("sin", "tanh", "gauss", "square", "exp"))
        w, q = _signed(rng, 0.5, 1.5, d), rng.normal(scale=0.5, size=d)
        b, alpha, beta = rng.uniform(-1.0, 1.0), _signed(rng, 0.5, 1.5), rng.uniform(-0.5, 0.5)
        outer = {"sin": np.sin, "tanh": np.tanh, "gauss": lambda z: np.exp(-(z**2)), "square": np.square,
                 "exp": lambda z: np.exp(z / 2)}[outer_kind]

        def inner(x: np.ndarray) -> np.ndarray:
            u = x @ w + b
            if inner_kind == "quadratic":
                return u + (x**2) @ q
            return np.sin(u) if inner_kind == "sin" else np.tanh(u)

        def fn(x: np.ndarray) -> np.ndarray:
            return outer(alpha * inner(x) + beta)

        return _region(rng, fn, d, self.box)


GENERATORS = (Polynomial(), Rational(), Damped(), Harmonic(), Saturating(), Exponential(), LogSqrt(), Kink(), Bump(),
              Powers(), Composition())
