"""Where gpact's AQuaSurF space differs from the paper's 2,913 distinct functions (issue 16), step by step.

The paper (Bingham and Miikkulainen, NeurIPS 2023; public code cognizant-ai-labs/aquasurf) keys each of the
5,103 names binary(unary(x), unary(x)) by `str(list(outputs))`: the float32 outputs (a Keras layer casts its
input to float32) on `np.random.seed(0); np.clip(np.random.normal(size=1000), -5, 5)`, compared as text,
so nan equals nan, inf equals inf and -0.0 differs from 0.0. Its operators are TensorFlow's, unprotected:
1/x, a/b and a**b give inf or nan. This script re-implements them in torch, independently of gpact, and
walks from the paper's protocol to `gpact enumerate --grammar aquasurf --template unit` one change at a time:

    python benchmarks/aquasurf_space.py            # the steps
    python benchmarks/aquasurf_space.py --names    # plus example names of what each step merges or splits
"""

from __future__ import annotations

import argparse
import collections
import itertools

import numpy as np
import torch

from gpact.expr.fingerprint import equivalence_inputs, function_keys
from gpact.expr.grammar import load_grammar
from gpact.expr.templates import count_distinct

F = torch.nn.functional
SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772

PAPER_UNARY = {
    "zero": torch.zeros_like, "one": torch.ones_like, "identity": lambda a: a, "negative": torch.neg,
    "abs": torch.abs, "reciprocal": torch.reciprocal, "square": torch.square, "exp": torch.exp, "erf": torch.erf,
    "erfc": torch.erfc, "sinh": torch.sinh, "cosh": torch.cosh, "tanh": torch.tanh, "expm1": torch.expm1,
    "sigmoid": torch.sigmoid, "log_sigmoid": F.logsigmoid, "arcsinh": torch.asinh, "arctan": torch.atan,
    "bessel_i0e": torch.special.i0e, "bessel_i1e": torch.special.i1e, "relu": torch.relu, "elu": F.elu,
    "selu": F.selu, "swish": F.silu, "softplus": F.softplus, "softsign": F.softsign,
    "hard_sigmoid": lambda a: torch.clamp(0.2 * a + 0.5, 0, 1),  # Keras 2 (TF 2.8, the paper's version)
}
PAPER_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow,
                "max": torch.maximum, "min": torch.minimum}
# TensorFlow spells two of them differently from torch: tf.nn.swish is x * sigmoid(x), tf.nn.elu uses expm1.
# Bit-exact keys see the difference (rounding twins appear or vanish).
TF_FORMS = {"swish": lambda a: a * torch.sigmoid(a), "elu": lambda a: torch.where(a > 0, a, torch.expm1(a))}
# gpact's names for the paper's unary operators, in the same order
GPACT_UNARY = ["0", "1", "a", "neg", "abs", "reciprocal", "square", "exp", "erf", "erfc", "sinh", "cosh", "tanh",
               "expm1", "sigmoid", "log_sigmoid", "asinh", "atan", "bessel_i0e", "bessel_i1e", "relu", "elu",
               "selu", "swish", "softplus", "softsign", "hard_sigmoid"]
NAMES = [f"{b}({u}(x),{v}(x))" for b, u, v in itertools.product(PAPER_BINARY, PAPER_UNARY, PAPER_UNARY)]


def exact_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, and 0 where b = 0: protected only where the paper's division is undefined."""
    zero = b == 0
    return torch.where(zero, torch.zeros_like(a * b), a / torch.where(zero, torch.ones_like(b), b))


def exact_pow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a|**b, exponent clamped at 20 like gpact's pow, 0**b by the limit (0, 1 or e**20), no 1e-6 shift."""
    m = a.abs()
    log = torch.where(m == 0, torch.full_like(m, -1e300), torch.log(torch.where(m == 0, torch.ones_like(m), m)))
    t = torch.clamp(b * log, max=20)
    return torch.exp(torch.where((m == 0) & (b == 0), torch.zeros_like(t), t))


def paper_inputs(dtype: torch.dtype) -> torch.Tensor:
    """The paper's draw: numpy's legacy global generator seeded with 0 (gpact uses default_rng(0))."""
    return torch.tensor(np.clip(np.random.RandomState(0).normal(size=1000), -5, 5), dtype=dtype)


def gpact_operators() -> tuple[dict, dict]:
    """gpact's aquasurf grammar operators under the paper's names (protected reciprocal, div and pow)."""
    g = load_grammar("aquasurf")
    forms = {"0": torch.zeros_like, "1": torch.ones_like, "a": lambda a: a}
    unary = {p: forms.get(q) or g.primitives[q].fn for p, q in zip(PAPER_UNARY, GPACT_UNARY, strict=True)}
    return unary, {b: g.primitives[b].fn for b in PAPER_BINARY}


def outputs(unary: dict, binary: dict, x: torch.Tensor) -> torch.Tensor:
    """[5,103, len(x)]: every name's outputs, in NAMES order."""
    with torch.no_grad():
        o = {u: f(x).expand(x.shape) for u, f in unary.items()}
        return torch.stack([binary[b](o[u], o[v]).expand(x.shape)
                            for b, u, v in itertools.product(binary, unary, unary)])


def classes(v: torch.Tensor, rule: str) -> np.ndarray:
    """A class label per name. paper: float32 bits (nan = nan, -0.0 != 0.0); paper+0: the same with -0.0 =
    0.0; gpact: gpact's key (float64 to ~6 significant digits, |v| < 1e-9 is 0)."""
    if rule == "gpact":
        keys = function_keys(v.double()).tolist()
    else:
        a = torch.nan_to_num(v.float(), nan=7.77e7).numpy()
        keys = [r.tobytes() for r in (a + np.float32(0) if rule == "paper+0" else a)]
    ids: dict = {}
    return np.array([ids.setdefault(k, len(ids)) for k in keys])


def changes(before: np.ndarray, after: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
    """Classes of `before` that `after` splits, and classes of `after` that join several of `before`'s."""

    def groups(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
        parts, members = collections.defaultdict(set), collections.defaultdict(list)
        for i, (p, q) in enumerate(zip(a, b, strict=True)):
            parts[p].add(q)
            members[p].append(i)
        return sorted((members[p] for p, s in parts.items() if len(s) > 1), key=len, reverse=True)

    return groups(before, after), groups(after, before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", action="store_true", help="print example names for each step")
    args = ap.parse_args()
    x32, x64 = paper_inputs(torch.float32), paper_inputs(torch.float64)
    gu, gb = gpact_operators()
    paper32 = outputs(PAPER_UNARY, PAPER_BINARY, x32)
    steps = [("the paper's operators and key (float32 bits), torch kernels", classes(paper32, "paper"))]
    tf = outputs({**PAPER_UNARY, **TF_FORMS}, PAPER_BINARY, x32)
    aside = classes(tf, "paper")
    steps.append(("-0.0 and 0.0 equal", classes(paper32, "paper+0")))
    steps.append(("float64 outputs, gpact's 6-digit key", classes(outputs(PAPER_UNARY, PAPER_BINARY, x64), "gpact")))
    unary, binary = dict(PAPER_UNARY), dict(PAPER_BINARY)
    for op in ("reciprocal", "div", "pow"):
        (unary if op in unary else binary)[op] = gu.get(op) or gb[op]
        steps.append((f"gpact's protected {op}", classes(outputs(unary, binary, x64), "gpact")))
    steps.append(("all of gpact's operators (clamped exp, sinh, cosh, expm1)", classes(outputs(gu, gb, x64), "gpact")))
    x_gpact = equivalence_inputs(1000, 0)
    steps.append(("gpact's draw, np.random.default_rng(0)", classes(outputs(gu, gb, x_gpact), "gpact")))

    nonfinite = {c for c, ok in zip(steps[0][1], torch.isfinite(paper32).all(1).tolist(), strict=True) if not ok}
    print("paper: 2,913 distinct of 5,103 names (TensorFlow 2.8). Reproduced here in torch:\n")
    print(f"{'step':62s} {'distinct':>8s} {'change':>7s} {'split':>6s} {'merged':>6s}")
    prev = None
    for label, lab in steps:
        n = len(set(lab.tolist()))
        if prev is None:
            print(f"{label:62s} {n:8,d}")
        else:
            split, merged = changes(prev, lab)
            gained = sum(len(set(lab[g].tolist())) - 1 for g in split)
            lost = sum(len(set(prev[g].tolist())) - 1 for g in merged)
            print(f"{label:62s} {n:8,d} {n - len(set(prev.tolist())):+7d} {gained:6d} {lost:6d}")
            if args.names:
                for how, groups, by in (("split", split, lab), ("merged", merged, prev)):
                    for g in groups[:4]:
                        firsts = list({by[i]: NAMES[i] for i in reversed(g)}.values())[::-1]
                        print(f"      {how}: " + " | ".join(firsts[:4]) + (" | ..." if len(firsts) > 4 else ""))
        prev = lab
    print(f"\naside: TensorFlow's forms of swish (x * sigmoid(x)) and elu (expm1) under the paper's key: "
          f"{len(set(aside.tolist())):,} (the paper's 2,913 lies between; its float32 kernels round differently)")
    exact = outputs({**gu, "reciprocal": lambda a: exact_div(torch.ones_like(a), a)},
                    {**gb, "div": exact_div, "pow": exact_pow}, x64)
    print(f"aside: gpact's operators protected only where the paper's are undefined (a/0 = 0, |a|**b without "
          f"the 1e-6 shift), gpact's key: {len(set(classes(exact, 'gpact').tolist())):,}")
    print(f"gpact's operators under the paper's key (float32 bits): "
          f"{len(set(classes(outputs(gu, gb, x32), 'paper').tolist())):,}")
    print(f"the paper's key gives {len(nonfinite)} classes with an inf or nan output (untrainable)")
    p = paper32.float()
    sign = {min(a.tobytes(), (-a).tobytes()) for a in torch.nan_to_num(p, nan=7.77e7).numpy() + np.float32(0)}
    const = p.isfinite().all(1) & (p == p[:, :1]).all(1)
    merged_const = len(set(classes(p[~const], "paper+0").tolist())) + 1
    print(f"rules the paper does not use: f merged with -f {len(sign):,}; every constant one function "
          f"{merged_const:,} (signed zeros equal in both)")
    enum = count_distinct("unit", load_grammar("aquasurf")).distinct
    print(f"gpact enumerate --grammar aquasurf --template unit: {enum:,}")
    assert enum == len(set(steps[-1][1].tolist())), "the last step should be gpact's own count"


if __name__ == "__main__":
    main()
