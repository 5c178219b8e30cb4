"""The public Python API (`import gpact`, README "From Python"): each name resolves and works on a small real call."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

import gpact
from gpact.backends.base import SerialBackend
from gpact.config import RunConfig, TrainConfig
from gpact.expr.trees import analyse, compile_expr, formula_to_sympy
from gpact.search.records import score_on_suite
from gpact.train.tasks import make_suite

ROOT = Path(__file__).resolve().parents[1]
TINY = {"generations": 1, "population": 8, "tasks": "smoke", "train_seeds": 1, "train": {"width": 8, "steps": 20},
        "validation": "", "test": ""}


def test_readme_python_api(tmp_path):
    grammar = gpact.add_primitive(gpact.load_grammar("minimal"), "bump", arity=1,
                                  fn=lambda z: z * torch.exp(-z * z), sympy="a*exp(-a**2)", cost=7)
    cfg = RunConfig(grammar="minimal", generations=1, population=8, tasks="smoke", train_seeds=1,
                    train=TrainConfig(width=8, steps=20), validation="", test="", out_dir=str(tmp_path), run_id="api")
    lines = []
    result = gpact.run(cfg, echo=lines.append, grammar=grammar)
    assert result.rows and result.rows[0]["formula"]
    assert (tmp_path / "api" / "pareto.csv").exists()
    assert lines and lines[0].startswith("gpact: run ")
    assert grammar.primitives["bump"].source == "import"
    (rec,) = score_on_suite(["bump(x) + x"], grammar, make_suite("smoke", n_train=32, n_ood=32), cfg, SerialBackend())
    assert rec.formula == "x + bump(x)" and rec.ok and rec.flops == 8


def test_every_public_name_resolves():
    assert gpact.__all__ == ["run", "load_grammar", "add_primitive", "score", "export"]
    for name in gpact.__all__:
        assert callable(getattr(gpact, name)), name
        assert name in dir(gpact)
    from gpact.expr.grammar import add_primitive, load_grammar

    assert gpact.load_grammar is load_grammar and gpact.add_primitive is add_primitive


def test_run_score_export_and_resume(tmp_path):
    result = gpact.run(grammar="minimal", echo=None, out_dir=str(tmp_path), run_id="r", **TINY)
    assert result.run_dir == tmp_path / "r" and result.rows
    assert (tmp_path / "r" / "pareto.csv").exists()

    path = tmp_path / "exported" / "act.py"
    source = gpact.export(result, rank=1, path=path)
    assert path.read_text() == source
    spec = importlib.util.spec_from_file_location("gpact_api_act", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    grammar = gpact.load_grammar("minimal")
    expr = analyse(formula_to_sympy(result.rows[0]["tree"], grammar), grammar).expr
    x = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(module.Activation()(x), compile_expr(expr, grammar)(x))
    assert gpact.export(str(result.run_dir), rank=1, fmt="sympy").strip()

    table = gpact.score("gelu(x) + 0.1*sin(x)", grammar="full", tasks="smoke", seeds=1,
                        cfg=TrainConfig(width=8, steps=20), n_train=32, n_ood=32)
    assert [r.label for r in table.rows] == ["gelu", "gelu(x) + 0.1*sin(x)"]
    row = table.rows[1]
    assert row.formula == "gelu(x) + 0.1*sin(x)" and row.ood_score > 0 and row.vs_ref is not None

    resumed = gpact.run(resume=result.run_dir, generations=2, echo=None)
    assert resumed.run_dir == result.run_dir and resumed.state.generation == result.state.generation + 1


def test_run_is_the_function_whatever_the_import_order():
    """`gpact.run` is also the subpackage's name: importing gpact.run.* must not replace the function."""
    script = """
import inspect
import gpact.run.runner
import gpact.run.runner as runner
import gpact
from gpact import run
from gpact.run import checkpoint
from gpact.errors import ConfigError
assert run is gpact.run and not inspect.ismodule(gpact.run), gpact.run
assert gpact.run.runner is runner and gpact.run.checkpoint is checkpoint
assert list(inspect.signature(gpact.run).parameters)[:2] == ["config", "grammar"]
try:
    gpact.run(population=1)  # reaches RunConfig's check, so the call went to the function
except ConfigError as exc:
    assert "population" in str(exc), exc
else:
    raise SystemExit("gpact.run(population=1) was not refused")
"""
    for first in ("import gpact.run.runner", "import gpact", "from gpact.run import checkpoint"):
        code = first + "\n" + script
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                             env=_env(), timeout=120)
        assert res.returncode == 0, (first, res.stderr)


def test_import_gpact_is_cheap():
    code = "import sys, gpact; print(sorted(m for m in ('torch', 'sympy', 'deap', 'numpy') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=_env(),
                         timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def _env():
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}
