"""The Python API shown in README.md: add a primitive in code and run a search with it."""

import torch

from gpact.config import RunConfig, TrainConfig
from gpact.expr.grammar import add_primitive, load_grammar
from gpact.run.runner import run
from gpact.search.gp import score_formulas
from gpact.train.tasks import make_suite


def test_readme_python_api(tmp_path):
    grammar = add_primitive(load_grammar("minimal"), "bump", arity=1,
                            fn=lambda z: z * torch.exp(-z * z), sympy="a*exp(-a**2)", cost=7)
    cfg = RunConfig(grammar="minimal", generations=1, population=8, tasks="smoke", train_seeds=1,
                    train=TrainConfig(width=8, steps=20), holdout="", out_dir=str(tmp_path), run_id="api")
    lines = []
    result = run(cfg, echo=lines.append, grammar=grammar)
    assert result.rows and result.rows[0]["formula"]
    assert (tmp_path / "api" / "pareto.csv").exists()
    assert grammar.primitives["bump"].source == "import"
    (rec,) = score_formulas(["bump(x) + x"], grammar, make_suite("smoke", n_train=32, n_ood=32), cfg)
    assert rec.formula == "x + bump(x)" and rec.ok and rec.flops == 8
