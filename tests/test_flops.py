import pytest
import sympy as sp

from gpact.errors import FormulaError
from gpact.expr.flops import count_flops
from gpact.expr.symbolic import X


@pytest.mark.parametrize("expr, flops", [
    (X, 0), (X + 1, 1), (X - sp.sin(X), 5), (-X, 1), (X**2, 1), (X**3, 2), (X**5, 4), (1 / X, 1),
    (sp.sqrt(X), 2), (sp.Max(X, 0), 1), (sp.Max(X, 0, sp.sin(X)), 6), (sp.exp(-X**2), 6),
    (2 * X + sp.Rational(1, 10) * sp.sin(X), 7),
])
def test_default_costs(expr, flops):
    assert count_flops(expr) == flops


def test_grammar_costs_override_defaults():
    assert count_flops(sp.sin(X) + X, {"sin": 10, "+": 1}) == 11
    assert count_flops(sp.Function("gelu")(X), {"gelu": 9}) == 9


def test_unknown_operation_is_an_error():
    with pytest.raises(FormulaError, match="no FLOP cost"):
        count_flops(sp.Function("mystery")(X))
