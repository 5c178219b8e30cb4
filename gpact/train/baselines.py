"""Known activation functions, each a formula over the primitives of `grammars/full.yaml`.

The library that `gpact baselines` scores and that `gpact eval` accepts by name (`gpact eval gmtu`).
Every entry is checked in tests against an independent torch implementation where one exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpact.errors import FormulaError
from gpact.expr.symbolic import trainable_text

BASELINE_GRAMMAR = "full"
REFERENCE = "gelu"  # every table reports scores relative to this entry


@dataclass(frozen=True)
class Baseline:
    name: str
    formula: str  # over the primitives of grammars/full.yaml
    source: str  # where it comes from
    note: str = ""


_SELU_SCALE, _SELU_ALPHA = 1.0507009873554805, 1.6732632423543772
_P08, _N03 = math.log(math.expm1(0.8)), math.log(math.expm1(0.3))  # softplus(_P08) = 0.8, 0.5 + softplus(_N03) = 0.8

BASELINES: dict[str, Baseline] = {b.name: b for b in [
    Baseline("relu", "relu(x)", "Nair & Hinton 2010"),
    Baseline("leaky_relu", "max(x, 0.01*x)", "Maas et al. 2013", "slope 0.01, torch's default"),
    Baseline("elu", "relu(x) + exp(min(x, 0)) - 1", "Clevert et al. 2016", "alpha 1"),
    Baseline("selu", f"{_SELU_SCALE}*(relu(x) + {_SELU_ALPHA}*(exp(min(x, 0)) - 1))", "Klambauer et al. 2017"),
    Baseline("gelu", "gelu(x)", "Hendrycks & Gimpel 2016", "exact (erf) form"),
    Baseline("silu", "silu(x)", "Ramachandran et al. 2017 (Swish, beta 1); Elfwing et al. 2018 (SiLU)"),
    Baseline("mish", "x*tanh(softplus(x))", "Misra 2019"),
    Baseline("softplus", "softplus(x)", "Dugas et al. 2001"),
    Baseline("tanh", "tanh(x)", "classic"),
    Baseline("sigmoid", "sigmoid(x)", "classic"),
    Baseline("relu2", "relu(x)**2", "So et al. 2021 (Primer)"),
    # a_p = softplus(p) and a_n = b + softplus(n) both start at 0.8, b = 0.5, eps = -1e-6. Clamping the
    # negative branch's correction at eps too keeps it exactly 0 for x > 0; it differs from the published
    # form only inside (-1e-6, 0], by less than 1e-6.
    Baseline("xielu", "0.8*relu(x)**2 + 0.5*x + 0.8*(exp(min(x, -1e-6)) - 1 - min(x, -1e-6))",
             "Huang 2024 (xIELU)", "initial constants a_p = a_n = 0.8, b = 0.5, eps = -1e-6, fixed"),
    # The published parameterisation: a_p = softplus(p), a_n = b + softplus(n), p and n trained per layer, started
    # where a_p = a_n = 0.8 (p = log(e^0.8 - 1), n = log(e^0.3 - 1)); the softplus keeps both positive.
    Baseline("xielu_trainable", f"softplus(p({_P08!r}))*relu(x)**2 + 0.5*x + (0.5 + softplus(p({_N03!r})))"
             "*(exp(min(x, -1e-6)) - 1 - min(x, -1e-6))",
             "Huang 2024 (xIELU)", "a_p = softplus(p), a_n = 0.5 + softplus(n) trained per layer, from 0.8"),
    # xIPReLU: the integral of an affine PReLU-like gradient; a_p = softplus(p), a_n = softplus(n), both from 0.8
    Baseline("xiprelu", "0.8*relu(x)**2 + 0.8*min(x, 0)**2 + 0.5*x", "Huang 2024 (xIPReLU)",
             "initial constants a_p = a_n = 0.8, b = 0.5, fixed"),
    Baseline("xiprelu_trainable", f"softplus(p({_P08!r}))*relu(x)**2 + softplus(p({_P08!r}, 1))*min(x, 0)**2 + 0.5*x",
             "Huang 2024 (xIPReLU)", "a_p = softplus(p), a_n = softplus(n) trained per layer, from 0.8 (tag 1: n)"),
    Baseline("gelu_sine", "gelu(x) + 0.1*sin(x)", "Vitvitskyi et al. 2026 (GELUSine)"),
    Baseline("gelu_sinc", "gelu(x)*(1 + 0.5*sinc(x))", "Vitvitskyi et al. 2026 (GELU-Sinc-Perturbation)",
             "normalised sinc, sin(pi x)/(pi x)"),
    Baseline("gmtu", "tanh(1.5*x)*exp(-0.2*x**2) + 0.1*x", "Vitvitskyi et al. 2026 (GMTU)"),
    Baseline("grafs_resnet", "sigmoid(gelu(x))*gelu(x)", "Strack et al. 2024 (GrafS, ResNet find)"),
    Baseline("grafs_vit", "0.3994*gelu(0.4413*x**2 + 0.5587*gelu(x)) + 0.6006*silu(x)",
             "Strack et al. 2024 (GrafS, ViT find)"),
]}


def get(name: str) -> Baseline:
    """The baseline called `name`; FormulaError listing the known names otherwise."""
    try:
        return BASELINES[name]
    except KeyError:
        raise FormulaError(f"unknown baseline '{name}' (known: {', '.join(BASELINES)})") from None


def trainable_name(name: str) -> str | None:
    """The baseline with trainable constants that `name` is the fixed form of (xielu -> xielu_trainable), if any."""
    return f"{name}_trainable" if f"{name}_trainable" in BASELINES else None


def with_trainable(text: str) -> list[str | tuple[str, str]]:
    """`text` and its form with trainable constants, for `gpact eval --trainable-constants`: a baseline's own trainable
    form (xielu -> xielu_trainable), else the formula with every number but an exponent written p(number)."""
    key = text.strip()
    if key in BASELINES:
        twin = trainable_name(key)
        return [key] if twin is None or key.endswith("_trainable") else [key, twin]
    trained = trainable_text(key)
    return [key] if trained == key else [key, (f"{key} [trained]", trained)]


def resolve(text: str) -> tuple[str, str]:
    """(label, formula) for a command-line argument: a baseline name, or a formula as written."""
    key = text.strip()
    if key in BASELINES:
        return key, BASELINES[key].formula
    return key, key
