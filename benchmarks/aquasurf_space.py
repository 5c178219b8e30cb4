"""Why gpact's AQuaSurF space has more distinct functions than the paper's 2,913 (issue 16).

Re-implements the paper's 27 unary and 7 binary operators in torch (TensorFlow semantics: unprotected
reciprocal, div and pow, unclamped exp, Keras 2 hard_sigmoid) and counts the distinct functions of
binary(unary(x), unary(x)) under two equality rules and with gpact's protected operators:

    python benchmarks/aquasurf_space.py

Compare with `gpact enumerate --grammar aquasurf --template unit` (gpact's own operators and rule).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

F = torch.nn.functional


def operators(protect: bool) -> tuple[dict, dict]:
    exp = (lambda a: torch.exp(torch.clamp(a, max=20))) if protect else torch.exp
    unary = {
        "zero": torch.zeros_like, "one": torch.ones_like, "identity": lambda a: a, "negative": torch.neg,
        "abs": torch.abs, "reciprocal": (lambda a: a / (a * a + 1e-6)) if protect else torch.reciprocal,
        "square": torch.square, "exp": exp, "erf": torch.erf, "erfc": torch.erfc, "sinh": torch.sinh,
        "cosh": torch.cosh, "tanh": torch.tanh, "expm1": torch.expm1, "sigmoid": torch.sigmoid,
        "log_sigmoid": F.logsigmoid, "arcsinh": torch.asinh, "arctan": torch.atan,
        "bessel_i0e": torch.special.i0e, "bessel_i1e": torch.special.i1e, "relu": torch.relu, "elu": F.elu,
        "selu": F.selu, "swish": F.silu, "softplus": F.softplus, "softsign": F.softsign,
        "hard_sigmoid": lambda a: torch.clamp(0.2 * a + 0.5, 0, 1),
    }
    binary = {
        "add": torch.add, "sub": torch.sub, "mul": torch.mul,
        "div": (lambda a, b: a * b / (b * b + 1e-6)) if protect else torch.div,
        "pow": (lambda a, b: torch.exp(torch.clamp(b * torch.log(a.abs() + 1e-6), max=20))) if protect else torch.pow,
        "max": torch.maximum, "min": torch.minimum,
    }
    return unary, binary


def count(dtype: torch.dtype, rule: str, protect: bool) -> tuple[int, int]:
    """(distinct functions, how many of them have a non-finite output)."""
    x = torch.tensor(np.clip(np.random.default_rng(0).normal(size=1000), -5, 5), dtype=dtype)
    unary, binary = operators(protect)
    outs = {k: f(x) for k, f in unary.items()}
    keys: dict = {}
    for b, u1, u2 in itertools.product(binary, unary, unary):
        v = binary[b](outs[u1], outs[u2])
        if rule == "exact":  # the paper: the float32 outputs' text, compared exactly (nan equals nan)
            key = torch.nan_to_num(v, nan=7.77e7).numpy().tobytes()
        else:  # gpact's rule: ~6 significant digits in float64, |v| < 1e-9 counts as 0
            a = v.double().numpy()
            key = ",".join(f"{t:.6g}" for t in np.where(np.abs(a) < 1e-9, 0.0, a))
        keys[key] = bool(torch.isfinite(v).all())
    return len(keys), sum(not ok for ok in keys.values())


if __name__ == "__main__":
    for label, args in [("paper ops, float32 exact (the paper's protocol)", (torch.float32, "exact", False)),
                        ("paper ops, gpact's rule (float64, 6 digits)", (torch.float64, "6g", False)),
                        ("protected ops, gpact's rule", (torch.float64, "6g", True))]:
        n, bad = count(*args)
        print(f"{label:50s} {n:5d} distinct ({bad} with a non-finite output)")
