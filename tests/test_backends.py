"""Backends: the wire format, the process backend against serial, and faults (a worker killed or hung mid-chunk)."""

import random
from pathlib import Path

import pytest
import sympy as sp
from click.testing import CliRunner
from deap import gp
from faults import use_faults

from gpact.backends import make_backend
from gpact.backends.base import SerialBackend
from gpact.backends.context import grammar_text, task_recipe
from gpact.backends.process import ProcessBackend
from gpact.backends.worker import CHUNK_FN
from gpact.cli import main
from gpact.config import RunConfig, TrainConfig
from gpact.errors import ConfigError, FormulaError
from gpact.expr.grammar import add_primitive, grammar_from_dict, load_grammar
from gpact.expr.symbolic import X
from gpact.expr.trees import analyse, formula_to_sympy, make_pset, tree_to_sympy
from gpact.expr.wire import expr_to_text, text_to_expr
from gpact.run.runner import run
from gpact.train.evaluate import evaluate_population
from gpact.train.fitness import WORST
from gpact.train.tasks import make_suite

CFG = TrainConfig(width=4, steps=5)
FORMULAS = ["gelu(x)", "x*tanh(x)", "sin(x) + x", "relu(x)", "0.3*x", "tanh(x)"]
# Generations 0..1 of 8, smoke tasks, tiny MLPs; validation, test and references also go through the backend.
TINY = ["run", "--grammar", "minimal", "--generations", "1", "--population", "8", "--seed", "3", "--tasks", "smoke",
        "--train-seeds", "1", "--steps", "5", "--width", "4", "--validation", "validation:2", "--test", "test:2"]


@pytest.fixture(scope="module")
def setup():
    g = load_grammar("minimal")
    tasks = make_suite("smoke", n_train=32, n_ood=32, seed=0)
    exprs = [analyse(formula_to_sympy(f, g), g).expr for f in FORMULAS]
    return g, tasks, exprs, SerialBackend().evaluate(exprs, g, tasks, [0], CFG)


def test_formula_text_rebuilds_the_same_expression():
    g = load_grammar("full")
    pset = make_pset(g)
    random.seed(5)
    exprs = [analyse(tree_to_sympy(gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 4)), g), g).expr for _ in range(60)]
    exprs += [sp.Float(0.1) * X + sp.pi, sp.Rational(-3, 7) * sp.Function("sinc")(X), sp.Max(X, 0) - 2,
              sp.Float("1.5", 30) * sp.exp(-X**2)]
    for e in exprs:
        text = expr_to_text(e)
        assert text_to_expr(text) == e, text
    assert expr_to_text(sp.Rational(1, 10) * sp.sin(X) + sp.Function("gelu")(X)) == \
        "Add(Mul(Rational(1, 10), sin(x)), gelu(x))"
    assert expr_to_text(sp.Function("sinc")(X)) == "Function('sinc')(x)"  # a primitive named like sympy's sinc
    for bad in ("__import__('os').system('true')", "x.__class__", "Add(x, y=1)", "1.5", "lambda: 0"):
        with pytest.raises(FormulaError):
            text_to_expr(bad)


def test_fitness_does_not_depend_on_chunk_composition(setup):
    g, tasks, exprs, serial = setup
    alone = [evaluate_population([e], g, tasks, [0], CFG)[0] for e in exprs]
    assert alone == serial
    assert evaluate_population(exprs[::-1], g, tasks, [0], CFG) == serial[::-1]


def test_process_backend_matches_serial_and_stays_warm(setup):
    g, tasks, exprs, serial = setup
    done = []
    with ProcessBackend(workers=2) as b:
        assert b.evaluate(exprs, g, tasks, [0], CFG, progress=lambda d, n: done.append((d, n))) == serial
        pids = {slot: p.pid for slot, p in b._pool._procs.items()}
        assert b.evaluate(exprs[:3], g, tasks, [0], CFG) == serial[:3]
        assert {slot: p.pid for slot, p in b._pool._procs.items()} == pids  # same workers, no restart
    assert done[-1] == (6, 6) and len(done) == 2  # one report per chunk of 3
    assert b._pool is None


def test_process_worker_killed_or_hung_mid_chunk(setup, monkeypatch):
    """Chunk 0's worker dies on every attempt: WORST with the reason. Chunk 1's hangs once: timed out, re-run."""
    g, tasks, exprs, serial = setup
    chunk_fn = use_faults(monkeypatch, "kill_chunk_0_hang_chunk_1")
    with ProcessBackend(workers=2, chunk_timeout=10, chunk_fn=chunk_fn) as b:
        fits = b.evaluate(exprs, g, tasks, [0], CFG)
        assert fits[3:] == serial[3:]
        for f in fits[:3]:
            assert f.ood_score == WORST and f.diverged == len(tasks)
            assert f.reason == "worker died (exit code 3), twice"
        b.chunk_fn = CHUNK_FN  # no more faults: the name travels with the next call's work
        assert b.evaluate(exprs, g, tasks, [0], CFG) == serial  # replaced workers carry on


def test_run_on_processes_with_a_killed_worker_matches_serial_byte_for_byte(tmp_path, monkeypatch):
    runner = CliRunner()
    res = runner.invoke(main, [*TINY, "--out", str(tmp_path), "--run-id", "serial"])
    assert res.exit_code == 0, res.output
    use_faults(monkeypatch, "kill_chunk_0_once")  # every call's first chunk dies once, the retry succeeds
    res = runner.invoke(main, [*TINY, "--out", str(tmp_path), "--run-id", "proc", "--backend", "process",
                               "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "backend process: 2 worker processes" in res.output
    assert "chunk attempts failed" in res.output and "worker died (exit code 3)" in res.output
    for name in ("pareto.csv", "candidates.jsonl"):
        assert (tmp_path / "proc" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name


def test_grammars_workers_cannot_rebuild_are_refused(tmp_path):
    g = load_grammar("minimal")
    b = make_backend("process", workers=1)
    b.check(g)
    bumped = add_primitive(g, "bump", 1, fn=lambda z: z * 0.5, cost=1)
    with pytest.raises(ConfigError, match="primitive\\(s\\) bump were added or changed in Python"):
        b.check(bumped)
    with pytest.raises(ConfigError, match="built in Python"):
        b.check(grammar_from_dict({"primitives": {"add": {"arity": 2, "sympy": "a + b"}}}))
    assert grammar_text(g) == Path(g.path).read_text()
    with pytest.raises(ConfigError, match="bump"):  # refused before the run folder is made
        run(RunConfig(grammar="minimal", backend="process", out_dir=str(tmp_path), run_id="r"), grammar=bumped)
    assert not (tmp_path / "r").exists()
    res = CliRunner().invoke(main, [*TINY, "--backend", "ray", "--workers", "-1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "workers and chunk_timeout must be >= 0" in res.output
    assert b._pool is None  # nothing was started


def test_task_recipe_finds_the_seed_or_refuses():
    tasks = make_suite("smoke", n_train=16, n_ood=8, seed=4)
    assert task_recipe(tasks, (0, 4)) == {"tasks": ["poly_cubic", "harmonic_2"], "n_train": 16, "n_ood": 8,
                                          "task_seed": 4}
    with pytest.raises(ConfigError, match="rebuild tasks"):
        task_recipe(tasks, (0,))
