"""Design by integration: `gpact integrate GRADIENT` and `gpact run --evolve derivative`, through the CLI and the
public API, checked against the known functions numerically."""

import json
import math

import pytest
import sympy as sp
import torch
from click.testing import CliRunner

from gpact.cli import main
from gpact.errors import FormulaError
from gpact.expr.grammar import load_grammar
from gpact.expr.integrate import IntegrationError, integrate, integrate_formula
from gpact.expr.symbolic import X
from gpact.expr.torchfn import to_torch
from gpact.expr.trees import compile_expr, make_pset, parse_tree, tree_to_sympy
from gpact.train.scoring import formula_analysis

XS = torch.linspace(-6.0, 6.0, 241, dtype=torch.float64) + 0.003  # off the kinks at 0


def xielu(x, a_p=0.8, a_n=0.8, b=0.5, eps=-1e-6):
    """xIELU (Huang 2024) as its reference code writes it, constants at their initial values."""
    return torch.where(x > 0, a_p * x * x + b * x, a_n * (torch.expm1(torch.clamp(x, max=eps)) - x) + b * x)


# the designed gradient, the known function (up to the f(0) = 0 constant)
KNOWN = [
    # xIELU's designed gradient: 2 a_p x + b on the right, a_n (e^x - 1) + b on the left
    ("1.6*max(x, 0) + 0.8*(exp(min(x, 0)) - 1) + 0.5", xielu),
    ("heaviside(x)*(1.6*x + 0.5) + heaviside(-x)*(0.8*(exp(x) - 1) + 0.5)", xielu),
    ("heaviside(x) + heaviside(-x)*exp(min(x, 0))", torch.nn.functional.elu),
    ("sigmoid(x)", lambda x: torch.nn.functional.softplus(x) - math.log(2)),
    ("tanh(x)", lambda x: torch.log(torch.cosh(x))),
    ("heaviside(x)", torch.relu),
    ("sign(x)", torch.abs),
    ("max(min(x, 1), -1)", lambda x: torch.where(x.abs() < 1, x * x / 2, x.abs() - 0.5)),  # hardtanh -> Huber
]


@pytest.mark.parametrize("gradient,known", KNOWN, ids=[k[0] for k in KNOWN])
def test_known_derivatives_integrate_to_the_known_functions(gradient, known):
    result = integrate_formula(gradient, load_grammar("full"), seconds=120)
    f = to_torch(result.activation)
    assert float(f(torch.zeros(1, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)  # f(0) = 0
    assert torch.allclose(f(XS), known(XS), rtol=1e-6, atol=1e-5)


def test_xielu_through_the_cli_prints_flops_and_the_formula_gpact_eval_scores():
    runner = CliRunner()
    res = runner.invoke(main, ["integrate", "1.6*max(x, 0) + 0.8*(exp(min(x, 0)) - 1) + 0.5", "--seconds", "120"])
    assert res.exit_code == 0, res.output
    lines = dict(line.split(None, 1) for line in res.output.splitlines() if not line.startswith("score"))
    formula, flops = lines["activation"].strip(), float(lines["FLOPs"])
    g = load_grammar("full")
    _, an = formula_analysis(formula, g)
    assert flops == an.flops > 0
    assert torch.allclose(compile_expr(an.expr, g)(XS), xielu(XS), atol=1e-5)
    assert f'gpact eval "{formula}"' in res.output
    res = runner.invoke(main, ["integrate", "sinh(x)", "--seconds", "120"])
    assert res.exit_code == 0, res.output
    cosh = res.output.split("activation")[1].split("\n")[0].strip()
    assert cosh == "cosh(x) - 1", res.output  # cosh: not a primitive of grammar full
    res = runner.invoke(main, ["eval", formula, cosh, "--tasks", "poly_cubic", "--seeds", "1", "--width", "4",
                               "--steps", "3"])
    assert res.exit_code == 0, res.output
    names = [line.split("  ")[0] for line in res.output.splitlines()]
    assert formula in names and cosh in names  # each scored as a row of its own, beside GELU


@pytest.mark.parametrize("gradient,needle", [
    ("exp(", "cannot parse"),
    ("y*x", "unknown name 'y'"),
    ("__import__('os')", "only numbers are allowed"),
    ("nope(x)", "unknown function 'nope'"),
    ("exp(x**2)", "no closed form over gpact's ops"),  # erfi: not a gpact op
    ("sin(sin(x))", "no closed form"),  # sympy leaves the integral
])
def test_bad_gradients_are_one_line_errors(gradient, needle):
    res = CliRunner().invoke(main, ["integrate", gradient, "--seconds", "120"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpact: ") and needle in lines[0], res.output
    assert "Traceback" not in res.output


def test_the_time_box_and_a_wrong_sympy_integral_are_refused_with_their_reason():
    full = load_grammar("full")
    with pytest.raises(IntegrationError) as exc:
        integrate_formula("gelu(x)*sin(x)", full, seconds=0.05)
    assert exc.value.reason == "integral_timeout"
    # sympy solves max(sin(x), 0) over one period only: its answer's slope is checked and refused
    with pytest.raises(IntegrationError) as exc:
        integrate(sp.Max(sp.sin(X), 0), seconds=120)
    assert exc.value.reason == "integral_mismatch"
    with pytest.raises(FormulaError):
        integrate_formula("x" * 5000, full)  # the text gate bounds the text before any work


def test_a_tree_of_a_grammar_integrates_through_its_definitions():
    minimal = load_grammar("minimal")
    pset = make_pset(minimal)
    tree = parse_tree("add(relu(relu(x)), mul(0.1, tanh(x)))", minimal, pset)  # relu: a named primitive
    f = to_torch(integrate(tree_to_sympy(tree, minimal), minimal, seconds=120))
    want = torch.relu(XS) ** 2 / 2 + 0.1 * torch.log(torch.cosh(XS))
    assert torch.allclose(f(XS), want, atol=1e-6)
    constant = tree_to_sympy(parse_tree("relu(relu(0.1))", minimal, pset), minimal)  # a slope that is a number
    assert torch.allclose(to_torch(integrate(constant, minimal))(XS), 0.1 * XS)


# ---------------------------------------------------------------------------------------------------------
# the search mode

RUN = ["run", "--grammar", "minimal", "--population", "4", "--seed", "2", "--tasks", "smoke", "--train-seeds",
       "1", "--steps", "10", "--width", "4", "--protocol", "fixed", "--validation", "", "--test", "",
       "--evolve", "derivative", "--integrate-seconds", "120"]  # a generous time box: a loaded machine
# must not change which trees integrate (the whole and the resumed run have to meet the same ones)


def _front(run_dir):
    import csv

    return list(csv.DictReader((run_dir / "pareto.csv").open()))


def test_evolve_derivative_scores_integrals_counts_rejections_and_resumes(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, [*RUN, "--generations", "1", "--out", str(tmp_path), "--run-id", "whole"])
    assert res.exit_code == 0, res.output
    whole = tmp_path / "whole"
    rows = _front(whole)
    assert "plots: not written" not in res.output  # curves.png draws the integrals
    header = next(line for line in res.output.splitlines() if line.startswith("rank"))
    assert rows and header.split()[-2:] == ["formula", "derivative"]  # the front table shows both
    minimal = g = load_grammar("minimal")
    for row in rows:  # each front member is the integral of its tree, shown beside the derivative
        tree = parse_tree(row["tree"], minimal, make_pset(minimal))
        f = to_torch(integrate(tree_to_sympy(tree, minimal), minimal, seconds=120))
        _, an = formula_analysis(row["formula"], minimal)
        assert torch.allclose(f(XS), compile_expr(an.expr, g)(XS), rtol=1e-3, atol=1e-3)
        assert row["derivative"]
    summary = json.loads((whole / "summary.json").read_text())
    generations = [json.loads(line) for line in (whole / "generations.jsonl").read_text().splitlines()]
    counted: dict[str, int] = {}
    for g in generations:
        for reason, n in g["rejections"].items():
            counted[reason] = counted.get(reason, 0) + n
        assert sum(g["rejections"].values()) == g["rejected"]
    assert summary["evolve"] == "derivative" and summary["rejections"] == counted
    # export and gpact.nn take the integral the run trained, not the derivative tree
    res = runner.invoke(main, ["export", str(whole), "--rank", "1", "--format", "sympy"])
    assert res.exit_code == 0, res.output
    from gpact.nn import Activation

    best = rows[0]
    _, an = formula_analysis(best["formula"], minimal)
    want = compile_expr(an.expr, minimal)(XS.float()).double()
    assert torch.allclose(Activation.from_run(whole, rank=1)(XS.float()).double(), want, rtol=1e-4, atol=1e-4)

    res = runner.invoke(main, [*RUN, "--generations", "0", "--out", str(tmp_path), "--run-id", "part"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["run", "--resume", str(tmp_path / "part"), "--generations", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "part" / "pareto.csv").read_bytes() == (whole / "pareto.csv").read_bytes()
    assert json.loads((tmp_path / "part" / "summary.json").read_text())["rejections"] == counted
    res = runner.invoke(main, ["run", "--resume", str(whole), "--evolve", "activation"])
    assert res.exit_code == 2 and "evolve" in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_evolve_derivative_refuses_the_llm_operator_in_one_line(tmp_path):
    res = CliRunner().invoke(main, [*RUN, "--llm-rate", "0.5", "--llm-base-url", "http://127.0.0.1:9/v1",
                                    "--llm-model", "m", "--out", str(tmp_path)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "LLM" in res.output, res.output
    assert not list(tmp_path.iterdir())  # refused before a run folder exists


def test_validation_and_test_scoring_of_a_derivative_run_trains_the_integral():
    """What the end of a run (gpact.run.verdict) scores for a front member: the integral of its tree."""
    from gpact.backends import make_backend
    from gpact.config import RunConfig, TrainConfig
    from gpact.search.records import score_on_suite
    from gpact.train.tasks import make_suite

    minimal = load_grammar("minimal")
    cfg = RunConfig(evolve="derivative", train_seeds=1, train=TrainConfig(width=4, steps=5), n_train=64, n_ood=64)
    tasks = make_suite(["poly_cubic"], n_train=64, n_ood=64)
    backend = make_backend("serial", device="cpu")
    try:
        (as_derivative,) = score_on_suite(["relu(x)"], minimal, tasks, cfg, backend, evolve=cfg.evolve)
        (as_activation,) = score_on_suite(["relu(x)"], minimal, tasks, cfg, backend)
    finally:
        backend.close()
    assert as_derivative.formula == "0.5*Max(0, x)**2" and as_derivative.derivative == "relu(x)"
    assert as_derivative.key != as_activation.key and as_derivative.per_run != as_activation.per_run
