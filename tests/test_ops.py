"""The op registry is the one table: a row added there works in every view derived from it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sympy as sp
import torch

from gpact import ops
from gpact.config import TrainConfig
from gpact.expr.flops import count_flops
from gpact.expr.formula import parse
from gpact.expr.grammar import grammar_from_dict, load_grammar
from gpact.expr.llm_parse import rewrite
from gpact.expr.symbolic import X, node_to_sympy
from gpact.expr.torchfn import to_torch
from gpact.report.export import Member, torch_source
from gpact.train.batched import evaluate_batched
from gpact.train.fitness import evaluate_reference
from gpact.train.interpreters import Interpreter, LoopInterpreter, run_programs
from gpact.train.program import lower
from gpact.train.tasks import make_suite


class ndtr(sp.Function):  # noqa: N801 - the name formulas use
    """An opaque sympy function for the throwaway op: nothing in gpact knows it but the new row."""


NDTR = ops.Op("ndtr", 1, torch.special.ndtr, lambda da, a, v: da * torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi),
              cost=3, sympy=ndtr, formula=True, spellings=("normal_cdf",), definition="0.5*(1 + erf(a/sqrt(2)))")


@pytest.fixture
def with_ndtr(monkeypatch):
    monkeypatch.setattr(ops, "TABLE", ops.TABLE + (NDTR,))
    return NDTR


def _formula(text: str) -> sp.Expr:
    return node_to_sympy(parse(text), {"x": X})


def test_a_new_row_works_in_every_view(with_ndtr, tmp_path):
    expr = _formula("normal_cdf(2*x) + Abs(x)")  # parsing: the name and its other spelling
    assert expr == ndtr(2 * X) + sp.Abs(X)
    assert count_flops(expr) == 3 + 1 + 1 + 1  # ndtr, abs, the sum, the product

    z = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    want = torch.special.ndtr(2 * z) + z.abs()
    assert torch.allclose(to_torch(expr)(z), want)  # torch

    prog = lower(expr)  # lowering: the new opcode appears in the program
    assert ops.opcode("ndtr") in {i.op for i in prog.instrs}
    (slope,) = torch.autograd.grad(want.sum(), z)
    zs = z.detach()
    for interp in (Interpreter, LoopInterpreter):  # interpreters: value and derivative
        v, d = interp([prog], dtype=torch.float64)(zs.reshape(1, -1))
        assert torch.allclose(v[0], want.detach()) and torch.allclose(d[0], slope)

    # a grammar may define a primitive with it, and the batched evaluator trains it as the reference does
    grammar = grammar_from_dict({"primitives": {"ss": {"arity": 1, "sympy": "ndtr(a)"},
                                                "add": {"arity": 2, "sympy": "a + b"}}})
    tasks, cfg = make_suite("smoke", 64, 64), TrainConfig(width=8, depth=1, steps=20, dtype="float64")
    batched = evaluate_batched([expr], grammar, tasks, [0], cfg, device="cpu")[0]
    reference = evaluate_reference(to_torch(expr), tasks, [0], cfg)
    assert math.isclose(batched.ood_score, reference.ood_score, rel_tol=1e-6)

    source = torch_source(Member(1, "ndtr(2*x) + abs(x)", expr, None, None, None, grammar, tmp_path))
    assert "torch.special.ndtr" in source  # export
    namespace: dict = {}
    exec(compile(source, str(tmp_path / "act.py"), "exec"), namespace)  # noqa: S102 - our own generated file
    assert torch.allclose(namespace["activation"](zs), want.detach())

    assert rewrite("ndtr") == "0.5*(1 + erf(a/sqrt(2)))"  # the LLM vocabulary


def test_a_removed_row_is_gone_everywhere(monkeypatch):
    monkeypatch.setattr(ops, "TABLE", tuple(op for op in ops.TABLE if op.name != "erfc"))
    with pytest.raises(Exception, match="unknown function 'erfc'"):
        _formula("erfc(x)")


def test_heaviside_runs_in_every_view(tmp_path):
    """sympy writes Heaviside(a) as Heaviside(a, 1/2); every view reads it through the registry."""
    expr = _formula("heaviside(x - 1) + x")
    z = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    want = torch.tensor([-1.0, 0.0, 1.5, 3.0], dtype=torch.float64)
    assert torch.equal(to_torch(expr)(z), want)
    v, d = run_programs([lower(expr)], z)
    assert torch.equal(v[0], want) and torch.equal(d[0], torch.ones(4, dtype=torch.float64))
    source = torch_source(Member(1, "heaviside(x - 1) + x", expr, None, None, None, load_grammar("full"), tmp_path))
    namespace: dict = {}
    exec(compile(source, str(tmp_path / "act.py"), "exec"), namespace)  # noqa: S102 - our own generated file
    assert torch.equal(namespace["activation"](z), want)


def test_sympy_sinc_is_the_normalised_op_at_a_over_pi():
    expr = sp.sinc(X)  # sympy's sin(x)/x
    z = torch.linspace(-5, 5, 41, dtype=torch.float64)
    want = torch.where(z == 0, 1.0, torch.sin(z) / z)
    assert torch.allclose(to_torch(expr)(z), want)
    assert torch.allclose(run_programs([lower(expr)], z)[0][0], want)


def test_every_row_is_consistent():
    names = [op.name for op in ops.TABLE]
    assert len(names) == len(set(names))
    for op in ops.TABLE:
        if op.formula:
            assert ops.for_formula(op.key) is op and op.sympy is not None, op.name
        if op.torch is not None and op.arity == 1:
            assert ops.for_torch(op.torch) is op, op.name
            ops.torch_source(op)  # every op can be written by export
    assert set(ops.costs()) >= {"+", "-", "*", "/", "**", "neg", "**2", "**3", "exp", "Abs", "Max"}


def test_no_op_table_outside_the_registry():
    """The op set is not restated: modules name ops through gpact.ops, not tables of their own."""
    root = Path(ops.__file__).parent
    for path in root.rglob("*.py"):
        if path.name == "ops.py":
            continue
        text = path.read_text()
        assert "sp.Heaviside" not in text and "torch.erfc" not in text, path
