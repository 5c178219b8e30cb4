"""Export: the generated module imports only torch and computes what the evaluator computes."""

import ast
import importlib.util
import shutil
from pathlib import Path

import pytest
import sympy as sp
import torch
from click.testing import CliRunner

from gpact.cli import main
from gpact.expr.grammar import add_primitive, load_grammar, resolve_path
from gpact.expr.symbolic import X
from gpact.expr.trees import analyse, compile_expr, formula_to_sympy
from gpact.report.export import ExportError, Member, expand_primitives, export, front_member
from gpact.run import rundir
from gpact.run.front import front_rows, to_csv
from gpact.search.records import Record

FULL = load_grammar("full")
# Every kind of node the printer handles: named primitives with a torch path, inline ones, protected
# division, clamps, powers, sinc, negative and fractional constants.
FORMULAS = [
    "gelu(x) + 0.1*sin(x)",
    "relu(x) - 0.37*x",
    "sigmoid(x)*x + softplus(-x)",
    "max(x, 0.25) + min(x, -1.5)",
    "max(x, sin(x))",
    "cube(x) - square(x)/7",
    "div(x, cos(x)) + sqrt(x)",
    "exp(x)*0.01 + log(x)",
    "sinc(x) + tanh(erf(2*x))",
    "silu(0.5) * x",
    "abs(x) - gelu(-1.3*x)",
]
X_TEST = torch.linspace(-6, 6, 301, dtype=torch.float64)


def _member(formula, grammar=FULL):
    expr = analyse(formula_to_sympy(formula, grammar), grammar).expr
    return Member(1, formula, expr, 0.5, 7.0, 0.9, grammar, Path("runs/test"))


def _load(source: str, tmp_path: Path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("i, formula", list(enumerate(FORMULAS)))
def test_exported_module_matches_the_evaluator(tmp_path, i, formula):
    member = _member(formula)
    module, path = _load(export(member, "torch"), tmp_path, f"act{i}")
    assert _imports(path) == {"torch"}
    want = compile_expr(member.expr, FULL)
    for dtype in (torch.float64, torch.float32):
        x = X_TEST.to(dtype)
        expected = want(x)
        for got in (module.Activation()(x), module.activation(x)):
            assert got.dtype == dtype
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert export(member, "python") == export(member, "torch")


def test_trainable_constants_are_parameters_that_learn(tmp_path):
    member = _member("gelu(-1.3*x) + 0.1*sin(x) - 0.37")
    module, path = _load(export(member, "torch", trainable=True), tmp_path, "trainable")
    assert _imports(path) == {"torch"} and not hasattr(module, "activation")
    act = module.Activation()
    values = sorted(p.item() for p in act.parameters())
    assert values == pytest.approx(sorted([-1.3, 0.1, -0.37]))
    torch.testing.assert_close(act(X_TEST.float()), compile_expr(member.expr, FULL)(X_TEST.float()))
    act(X_TEST.float()).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().item() > 0 for p in act.parameters())


def test_sympy_and_latex_exports(tmp_path):
    member = _member("gelu(x) + 0.1*sin(x)")
    text = export(member, "sympy")
    parsed = sp.sympify(text.strip(), locals={"x": X})
    assert not parsed.atoms(sp.core.function.AppliedUndef)  # gelu expanded into its definition
    f = sp.lambdify(X, parsed, "math")
    expected = compile_expr(member.expr, FULL)(torch.tensor([-2.0, 0.3, 4.0], dtype=torch.float64))
    assert [f(v) for v in (-2.0, 0.3, 4.0)] == pytest.approx(expected.tolist(), rel=1e-12)
    latex = export(member, "latex")
    assert r"\operatorname{gelu}" in latex and r"\sin" in latex and "0.1" in latex
    with pytest.raises(ExportError, match="unknown export format"):
        export(member, "onnx")


def test_a_primitive_without_sympy_form_cannot_be_exported():
    grammar = add_primitive(FULL, "bump", arity=1, fn=lambda z: z * torch.exp(-z * z), cost=7)
    member = _member("bump(x) + x", grammar)
    with pytest.raises(ExportError, match="'bump' is an imported Python function without a sympy definition"):
        export(member, "torch")
    with pytest.raises(ExportError, match="no sympy definition"):
        expand_primitives(member.expr, grammar)


@pytest.fixture
def run_dir(tmp_path):
    """A finished run's folder, written by hand: front of two members over the minimal grammar."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copyfile(resolve_path("minimal"), out / rundir.GRAMMAR_COPY)
    rundir.write_json(out / rundir.CONFIG, {"grammar": "minimal"})
    recs = [Record(key="a", formula="gelu(x) + 0.1*sin(x)", tree="add(gelu(x), mul(0.1, sin(x)))", flops=14.0,
                   ood_score=0.5, id_loss=0.1, generation=1),
            Record(key="b", formula="relu(x)", tree="relu(x)", flops=1.0, ood_score=0.9, id_loss=0.1, generation=0)]
    rundir.write_text(out / rundir.PARETO, to_csv(front_rows(recs, None)))
    return out


def test_export_command_writes_an_importable_file(run_dir, tmp_path):
    res = CliRunner().invoke(main, ["export", str(run_dir), "--rank", "1"])
    assert res.exit_code == 0, res.output
    path = run_dir / "export" / "rank1.py"
    assert f"wrote {path}" in res.output
    module, _ = _load(path.read_text(), tmp_path, "rank1")
    member = front_member(run_dir, 1)
    grammar = load_grammar("minimal")
    torch.testing.assert_close(module.Activation()(X_TEST), compile_expr(member.expr, grammar)(X_TEST))
    res = CliRunner().invoke(main, ["export", str(run_dir), "--rank", "2", "--format", "sympy"])
    assert res.exit_code == 0 and res.output.strip() == "Max(0, x)"
    res = CliRunner().invoke(main, ["export", str(run_dir), "--rank", "3"])
    assert res.exit_code == 2 and "no rank 3 on the front (ranks 1 to 2)" in res.output

