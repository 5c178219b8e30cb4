import pytest
import sympy as sp
import torch

from gpact.errors import FormulaError
from gpact.expr.grammar import load_grammar
from gpact.expr.symbolic import ARGS, X
from gpact.expr.torchfn import to_torch
from gpact.expr.trees import compile_expr

FULL = load_grammar("full")


@pytest.mark.parametrize("name", sorted(FULL.primitives))
def test_gradcheck_every_primitive(name):
    """Gradients through each primitive, as the search uses it, match finite differences (float64)."""
    prim = FULL.primitives[name]
    gen = torch.Generator().manual_seed(0)
    inputs = []
    for _ in range(prim.arity):
        v = torch.rand(12, generator=gen, dtype=torch.float64) * 4 - 2
        v = torch.where(v.abs() < 0.05, v + 0.2, v)  # keep away from kinks (relu, abs, max) at 0
        inputs.append(v.requires_grad_())
    expr = prim.apply(*[sp.Symbol(f"v{i}", real=True) for i in range(prim.arity)])
    fn = to_torch(expr, FULL.functions, variables=tuple(sp.Symbol(f"v{i}", real=True) for i in range(prim.arity)))
    if name in ("max", "min"):  # ties between the arguments are kinks too
        inputs[1] = (inputs[1].detach() + 0.37).requires_grad_()
    assert torch.autograd.gradcheck(fn, tuple(inputs), eps=1e-6, atol=1e-5)


def test_formula_values():
    fn = to_torch(sp.sin(X) + X**2 - sp.Rational(1, 10))
    z = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(fn(z), torch.sin(z) + z * z - 0.1)


def test_constant_expression_broadcasts():
    z = torch.zeros(5)
    assert torch.equal(to_torch(sp.Integer(3))(z), torch.full((5,), 3.0))


def test_multi_argument_definitions():
    a, b = ARGS[:2]
    fn = to_torch(sp.Max(a, b) * a, variables=(a, b))
    torch.testing.assert_close(fn(torch.tensor([1.0, -2.0]), torch.tensor([3.0, -5.0])), torch.tensor([3.0, 4.0]))


def test_unknown_names_are_errors():
    with pytest.raises(FormulaError, match="no torch implementation"):
        to_torch(sp.Function("mystery")(X))
    with pytest.raises(FormulaError, match="unknown variable"):
        to_torch(sp.Symbol("y") + X)


def test_sympy_sinc_is_unnormalised():
    torch.testing.assert_close(to_torch(sp.sinc(X))(torch.tensor([2.0])), torch.sin(torch.tensor([2.0])) / 2)


def test_deep_expressions_compile():
    e = X
    for _ in range(200):  # DEAP's compile fails past ~90 levels; closures don't
        e = sp.sin(e)
    assert torch.isfinite(compile_expr(e, FULL)(torch.ones(3))).all()
