"""The one place where functions are told apart by their outputs: probe points and keys.

- `fingerprint` is the search's key of a candidate (equal keys: the same function, trained once). It hashes
  float64 outputs on `PROBE`: the grid `PROBE_GRID` (97 points on [-6, 6]) plus 63 N(0, 1) draws clipped to
  [-5, 5]. Keys land in candidates.jsonl and checkpoints, so these points and the hash must not change.
- `is_finite` checks a function on the same grid in float32, as it is trained (LLM children must pass).
- `equivalence_inputs` and `function_keys` count the distinct functions of a template space
  (gpact.expr.templates.count_distinct): AQuaSurF's protocol, N(0, 1) samples clipped to [-5, 5] with a
  chosen count and seed (drawn with numpy's default_rng; the paper's np.random.seed draw moves the aquasurf
  count by one, benchmarks/aquasurf_space.py); keys are 64-bit and vectorised, for millions of rows at once
  (the fingerprint's text hash would be far too slow there). The paper compares float32 outputs bit for bit;
  these keys compare float64 outputs to ~6 digits, so rounding twins of one function are one function.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp
import torch

from gpact.expr.symbolic import start_values, with_values
from gpact.expr.torchfn import to_torch

if TYPE_CHECKING:  # grammar.py checks templates, which count functions with this module
    from gpact.expr.grammar import Grammar

PROBE_GRID = np.linspace(-6.0, 6.0, 97)
PROBE = np.concatenate([PROBE_GRID, np.clip(np.random.default_rng(0).normal(size=63), -5, 5)])
_GRID32 = torch.tensor(PROBE_GRID, dtype=torch.float32)
_ABS_FLOOR = 1e-9  # outputs below this count as 0 when comparing functions


def fingerprint(expr: sp.Expr, grammar: Grammar) -> str:
    """Hash of the function's values on fixed probe points (float64, 6 significant digits)."""
    return key_of(probe_values(expr, grammar))


def probe_values(expr: sp.Expr, grammar: Grammar) -> np.ndarray:
    """The function's float64 outputs on PROBE (a constant expression gives one value per point too); trainable
    constants at their start values."""
    expr = with_values(expr)
    with torch.no_grad():
        out = to_torch(expr, grammar.functions)(torch.tensor(PROBE, dtype=torch.float64))
    return np.broadcast_to(np.asarray(out, dtype=np.float64), PROBE.shape)


TRAINABLE_SHIFT = 0.37  # trainable constants are also probed moved by this, each by (its index + 1) times it


def family_key(expr: sp.Expr, values: np.ndarray, grammar: Grammar) -> str:
    """The key of a formula with trainable constants: its outputs at the start values and at shifted values, so a
    trained family is told apart from the same function with fixed constants and from other parameterisations;
    `t` + 15 characters. A formula without trainable constants has its plain `key_of(values)`."""
    start = start_values(expr)
    if not start:
        return key_of(values)
    moved = with_values(expr, tuple(c + TRAINABLE_SHIFT * (j + 1) for j, c in enumerate(start)))
    both = np.concatenate([values, probe_values(moved, grammar)])
    return "t" + key_of(both)[:15]


def mirror_keys(expr: sp.Expr, values: np.ndarray, grammar: Grammar) -> frozenset[str]:
    """Keys of the function's sign mirrors -f(x), f(-x) and -f(-x), given its `values` on PROBE.

    A network's initial weights and biases are drawn symmetrically about 0 (gpact.train.mlp) and Adam is
    equivariant to flipping a weight's sign, so each mirror trains exactly like f from flipped weights: the
    same function in distribution, though not from the same seed. Training a mirror is a fresh draw of f's
    noise, not a new function. Empty for formulas with trainable constants (their keys are family keys)."""
    if start_values(expr):
        return frozenset()
    with torch.no_grad():
        flipped = to_torch(expr, grammar.functions)(torch.tensor(-PROBE, dtype=torch.float64))
    at_minus_x = np.broadcast_to(np.asarray(flipped, dtype=np.float64), PROBE.shape)
    own = key_of(values)
    return frozenset({key_of(-values), key_of(at_minus_x), key_of(-at_minus_x)} - {own})


def key_of(values: np.ndarray) -> str:
    """The fingerprint of outputs on PROBE."""
    text = ",".join(f"{v:.6g}" for v in values)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def is_constant(values: np.ndarray) -> bool:
    """Whether outputs on PROBE are one number: a function of x only in its syntax (div(x, 0) is 0 when
    the division is protected) is as useless an activation as a literal constant."""
    return bool(np.isfinite(values).all() and np.allclose(values, values[0], rtol=1e-9, atol=_ABS_FLOOR))


def is_finite(expr: sp.Expr, grammar: Grammar) -> bool:
    """Whether the function is finite everywhere on the probe grid [-6, 6] in float32 (as trained)."""
    with torch.no_grad():
        return bool(torch.isfinite(to_torch(with_values(expr), grammar.functions)(_GRID32)).all())


def equivalence_inputs(points: int = 1000, seed: int = 0) -> torch.Tensor:
    """AQuaSurF's equivalence inputs: N(0, 1) samples clipped to [-5, 5], float64."""
    return torch.from_numpy(np.clip(np.random.default_rng(seed).normal(size=points), -5.0, 5.0))


def function_keys(values: torch.Tensor) -> np.ndarray:
    """One 64-bit key per row: outputs to ~6 significant digits (|v| < 1e-9 counts as 0), hashed."""
    a = np.nan_to_num(values.numpy(), nan=1.2345e300, posinf=1e300, neginf=-1e300)
    a = np.where(np.abs(a) < _ABS_FLOOR, 0.0, a)
    m, e = np.frexp(a)
    q = np.round(m * 2.0**20).astype(np.int64)
    carry = np.abs(q) == 2**20  # rounding up to 1.0: renormalise, so equal numbers get equal keys
    q, e = np.where(carry, q // 2, q), np.where(carry, e + 1, e)
    k = (q * 4096 + (e.astype(np.int64) + 2048)).astype(np.uint64)
    k = k + np.arange(k.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):  # splitmix64 per element, then a sum: wraps mod 2**64 on purpose
        k ^= k >> np.uint64(30)
        k *= np.uint64(0xBF58476D1CE4E5B9)
        k ^= k >> np.uint64(27)
        k *= np.uint64(0x94D049BB133111EB)
        k ^= k >> np.uint64(31)
        return k.sum(axis=1, dtype=np.uint64)
