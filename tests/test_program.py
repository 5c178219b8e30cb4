"""Lowering formulas to register programs: values and derivatives match torch autograd on the formula."""

import math

import pytest
import sympy as sp
import torch

from gpact import ops
from gpact.expr.grammar import add_primitive, load_grammar
from gpact.expr.symbolic import X
from gpact.expr.trees import compile_expr, formula_to_sympy
from gpact.train.dual import apply_op
from gpact.train.interpreters import run_programs
from gpact.train.program import MAX_REGS, ProgramError, lower, lower_all

FULL = load_grammar("full")

FORMULAS = [
    "x", "-x", "x + 1", "x*x*x - x", "x**-2 + 1", "sqrt(abs(x) + 1)", "1/sqrt(x*x + 1)",
    "gelu(x) + 0.1*sin(x)", "gelu(x)*(1 + 0.5*sinc(x))", "silu(x)*tanh(x)", "softplus(x) - log(2)",
    "relu(x)**2", "max(x, 0.01*x)", "min(x, sin(x))", "exp(-x*x)", "erf(x) + erfc(x*0.5)", "atan(x)*asinh(x)",
    "sigmoid(x)*cos(x)", "x / (1 + abs(x))", "sinh(x*0.3) + cosh(x*0.2)", "tan(x*0.1)", "abs(x)**0.7",
    "(abs(x) + 1)**(sin(x))", "sign(x)*x", "gelu(gelu(gelu(x)))",
]  # fmt: skip


_NAMES = {"x": X, "max": sp.Max, "min": sp.Min, "abs": sp.Abs, "heaviside": sp.Heaviside,
          **{n: sp.Function(n) for n, p in FULL.primitives.items() if p.source == "torch"}}


def _expr(text: str) -> sp.Expr:
    """Formulas over sympy builtins and the grammar's named primitives (trusted test text)."""
    return sp.sympify(text, locals=_NAMES)


@pytest.mark.parametrize("text", FORMULAS)
def test_program_matches_autograd(text):
    expr = _expr(text)
    prog = lower(expr, FULL)
    assert prog.n_regs <= MAX_REGS
    x = torch.linspace(-4.0, 4.0, 401, dtype=torch.float64)
    x = x[x != 0]  # derivatives of x**-2, sign at 0 are not the point here
    v, d = run_programs([prog], x)
    xr = x.clone().requires_grad_()
    ref = compile_expr(expr, FULL)(xr)
    (grad,) = torch.autograd.grad(ref.sum(), xr, allow_unused=True)
    grad = torch.zeros_like(x) if grad is None else grad
    torch.testing.assert_close(v[0], ref.detach().expand_as(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(d[0], grad, rtol=1e-8, atol=1e-8)


def test_kinks_follow_autograd():
    x = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    for text in ["relu(x)", "abs(x)", "max(x, 0)", "min(x, 0)"]:
        v, d = run_programs([lower(_expr(text), FULL)], x)
        xr = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(compile_expr(_expr(text), FULL)(xr).sum(), xr)
        assert torch.equal(d[0], g), text


def test_programs_run_side_by_side():
    progs = [lower(_expr(t), FULL) for t in FORMULAS]
    x = torch.linspace(-3, 3, 64, dtype=torch.float64)
    v, d = run_programs(progs, x)
    for i, p in enumerate(progs):
        v1, d1 = run_programs([p], x)
        assert torch.equal(v[i], v1[0]) and torch.equal(d[i], d1[0])


def test_every_op_has_a_rule():
    a = torch.linspace(0.1, 2.0, 8, dtype=torch.float64).reshape(1, -1)
    b = torch.full_like(a, 1.5)
    for op, row in enumerate(ops.TABLE):
        if row.name == "nop":
            continue
        v, d = apply_op(op, a, torch.ones_like(a), b, torch.ones_like(b), c=2.0)
        assert v.shape == a.shape and torch.isfinite(v).all(), row.name


def test_shared_subexpressions_are_computed_once():
    prog = lower(_expr("sin(x)*sin(x) + sin(x)"), FULL)  # sympy keeps sin(x)**2 + sin(x)
    assert sum(1 for i in prog.instrs if i.op == ops.opcode("sin")) == 1


def test_register_pressure_falls_back_then_errors():
    deep = X
    for k in range(8):
        deep = deep * sp.sin(deep + k) + sp.cos(deep * (k + 2))
    with pytest.raises(ProgramError):
        lower(deep, FULL, max_regs=2)


def test_import_primitive_without_base_op_is_an_error_and_sympy_ones_lower():
    g = load_grammar("minimal")
    g = add_primitive(g, "wobble", 1, fn=lambda t: t + 0.1 * torch.sin(t), cost=3)
    g = add_primitive(g, "bump", 1, sympy="exp(-a**2)", inline=False)
    out = lower_all([sp.Function("wobble")(X), sp.Function("bump")(X)], g)
    assert isinstance(out[0], ProgramError) and "reference" in str(out[0])
    v, _ = run_programs([out[1]], torch.tensor([0.0, 1.0]))
    assert torch.allclose(v[0], torch.tensor([1.0, math.exp(-1)]))


def test_constant_formula():
    v, d = run_programs([lower(sp.Float(0.5), FULL)], torch.zeros(3))
    assert torch.equal(v[0], torch.full((3,), 0.5)) and torch.equal(d[0], torch.zeros(3))


def test_constant_subexpressions_fold_like_the_reference():
    # div's definition a*b/(b**2 + 1e-6) with a constant b: b**2 must fold, not become an instruction
    expr = formula_to_sympy("div(x, 0.1) + sqrt(2.0)", FULL)
    x = torch.linspace(-3, 3, 7)
    v, _ = run_programs([lower(expr, FULL)], x)
    torch.testing.assert_close(v[0], compile_expr(expr, FULL)(x))


@pytest.mark.parametrize("name", ["full", "grafs", "aquasurf", "swish", "minimal"])
def test_every_primitive_of_the_shipped_grammars_lowers(name):
    """No shipped primitive falls back to the reference path (one network at a time): each lowers, and its
    program's value and slope match autograd on the primitive's own torch callable."""
    g = load_grammar(name)
    x = torch.cat([torch.linspace(-6.0, 6.0, 241, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    for prim_name, prim in g.primitives.items():
        if prim.arity != 1:
            continue
        prog = lower(sp.Function(prim_name)(X), g)
        v, d = run_programs([prog], x)
        xr = x.clone().requires_grad_()
        ref = prim.fn(xr)
        (grad,) = torch.autograd.grad(ref.sum(), xr, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad
        torch.testing.assert_close(v[0], ref.detach().expand_as(x), rtol=1e-9, atol=1e-9, msg=prim_name)
        torch.testing.assert_close(d[0], grad, rtol=1e-7, atol=1e-7, msg=prim_name)
