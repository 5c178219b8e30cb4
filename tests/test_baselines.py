"""Every baseline formula computes the published function: checked against independent torch code."""

import math

import pytest
import torch
import torch.nn.functional as F

from gpact.errors import FormulaError
from gpact.expr.grammar import load_grammar
from gpact.expr.trees import analyse, compile_expr, formula_to_sympy
from gpact.train.baselines import BASELINE_GRAMMAR, BASELINES, REFERENCE, get, resolve


def _xielu(x, a_p=0.8, a_n=0.8, b=0.5, eps=-1e-6):
    """xIELU as published (Huang 2024), at its initial constants."""
    return torch.where(x > 0, a_p * x * x + b * x, a_n * (torch.expm1(torch.clamp(x, max=eps)) - x) + b * x)


EXPECTED = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "mish": F.mish,
    "softplus": F.softplus,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu2": lambda x: F.relu(x) ** 2,
    "xielu": _xielu,
    "xielu_trainable": _xielu,  # at its start values: the published initial a_p = a_n = 0.8
    "xiprelu": lambda x: torch.where(x > 0, 0.8 * x * x + 0.5 * x, 0.8 * x * x + 0.5 * x),
    "xiprelu_trainable": lambda x: torch.where(x > 0, 0.8 * x * x + 0.5 * x, 0.8 * x * x + 0.5 * x),
    "gelu_sine": lambda x: F.gelu(x) + 0.1 * torch.sin(x),
    "gelu_sinc": lambda x: F.gelu(x) * (1 + 0.5 * torch.sin(math.pi * x) / (math.pi * x)),
    "gmtu": lambda x: torch.tanh(1.5 * x) * torch.exp(-0.2 * x * x) + 0.1 * x,
    "grafs_resnet": lambda x: torch.sigmoid(F.gelu(x)) * F.gelu(x),
    "grafs_vit": lambda x: 0.3994 * F.gelu(0.4413 * x**2 + 0.5587 * F.gelu(x)) + 0.6006 * F.silu(x),
}


def test_every_baseline_has_an_independent_check():
    assert set(EXPECTED) == set(BASELINES)
    assert REFERENCE in BASELINES


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_matches_published_function(name):
    g = load_grammar(BASELINE_GRAMMAR)
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    x = x[x.abs() > 1e-9]  # the reference sinc above is 0/0 at 0
    raw = formula_to_sympy(BASELINES[name].formula, g)
    for expr in (raw, analyse(raw, g).expr):  # as written, and simplified (what the evaluator runs)
        with torch.no_grad():
            got = compile_expr(expr, g)(x)
        torch.testing.assert_close(got, EXPECTED[name](x), rtol=1e-6, atol=2e-6)


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_gradients_are_finite(name):
    g = load_grammar(BASELINE_GRAMMAR)
    x = torch.linspace(-60, 60, 481, dtype=torch.float32).requires_grad_()
    y = compile_expr(analyse(formula_to_sympy(BASELINES[name].formula, g), g).expr, g)(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_lookup():
    assert get("gmtu").formula.startswith("tanh")
    assert resolve("gmtu") == ("gmtu", BASELINES["gmtu"].formula)
    assert resolve(" gelu(x) + x ") == ("gelu(x) + x", "gelu(x) + x")
    with pytest.raises(FormulaError, match="unknown baseline 'nope'.*gelu"):
        get("nope")
