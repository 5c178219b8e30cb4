"""Trainable constants, p(0.8): the spelling, their gradients, and training them in both evaluators."""

import math

import pytest
import torch

from gpact.config import TrainConfig
from gpact.errors import FormulaError, GrammarError
from gpact.expr.grammar import grammar_from_dict, load_grammar
from gpact.expr.symbolic import start_values, trainables
from gpact.expr.torchfn import to_torch_params
from gpact.expr.trees import analyse, compile_expr, formula_to_sympy, make_pset, parse_tree, printed_to_sympy
from gpact.train.batched import evaluate_batched
from gpact.train.fitness import evaluate_reference
from gpact.train.program import lower
from gpact.train.tasks import make_suite
from gpact.train.trainable import run_program

FULL = load_grammar("full")

# 22 formulas with trainable constants over full.yaml: every op kind the lowering has (add, mul, div, pow,
# named primitives, max/min kinks, a constant under softplus as the positivity constraint, shared constants)
FORMULAS = [
    "x*sigmoid(p(1.702)*x)",
    "p(0.3)*x + tanh(p(-0.5)*x)",
    "gelu(x) + p(0.1)*sin(x)",
    "softplus(p(0.5413))*relu(x)**2 + 0.5*x",
    "p(0.8)*x*x + p(-0.2)",
    "max(x, p(0.01)*x)",
    "min(x, p(1.5)) + p(0.2)*x",
    "tanh(p(1.5)*x)*exp(p(-0.2)*x**2) + p(0.1)*x",
    "silu(x) + p(0.25)*cos(p(2.0)*x)",
    "x/(1 + abs(p(0.7)*x))",
    "erf(p(0.9)*x)*x + p(0.05)",
    "p(1.1)*softplus(x) - p(0.6)",
    "relu(x) + p(0.3)*(exp(min(x, 0)) - 1)",
    "sin(p(1.3)*x) + x",
    "x*tanh(softplus(p(1.2)*x))",
    "sigmoid(p(-1.0)*x)*p(2.0)",
    "gelu(p(1.4)*x)/p(1.4)",
    "p(0.5)*x + p(0.5)*abs(x)",
    "x**3*p(0.01) + x",
    "sqrt(x*x + p(0.5)) - sqrt(p(0.5))",
    "cube(p(0.4)*x) + silu(x)",
    "p(0.2)*x + (1 - p(0.2))*x*sigmoid(x)",
]


def _expr(text, grammar=FULL):
    return analyse(formula_to_sympy(text, grammar), grammar).expr


def test_spelling_survives_the_gate_canonical_form_fingerprint_and_printing():
    pset = make_pset(FULL)
    tree = parse_tree("x*sigmoid(p(1.702)*x) + p(-0.5)", FULL, pset)
    assert str(parse_tree(str(tree), FULL, pset)) == str(tree)  # a tree's text reads back as the same tree
    an = analyse(formula_to_sympy(str(tree), FULL), FULL)
    assert start_values(an.expr) == (-0.5, 1.702)
    assert "p(1.702)" in an.formula and "p(-0.5)" in an.formula
    assert printed_to_sympy(an.formula, FULL) == an.expr  # the front's text is the same formula
    fixed = analyse(formula_to_sympy("x*sigmoid(1.702*x) - 0.5", FULL), FULL)
    other = analyse(formula_to_sympy("x*sigmoid(p(1.702)*x) - 0.5", FULL), FULL)
    # equal at the start values, yet three different things to train: three keys
    assert len({an.key, fixed.key, other.key}) == 3
    again = analyse(formula_to_sympy("p(-0.5) + sigmoid(x*p(1.702))*x", FULL), FULL)
    assert again.key == an.key  # the same trainable formula written another way: one evaluation


@pytest.mark.parametrize("text, match", [("p(x)", "takes one number"), ("p()", "takes one number"),
                                         ("p(1, 2, 3)", "takes one number"), ("p(1, 0.5)", "tag")])
def test_bad_spelling_is_a_one_line_error(text, match):
    with pytest.raises(FormulaError, match=match) as exc:
        formula_to_sympy(text, FULL)
    assert "\n" not in str(exc.value)


def test_p_is_reserved_in_grammars_and_ephemeral_trainable_is_checked():
    with pytest.raises(GrammarError, match="reserved"):
        grammar_from_dict({"primitives": {"p": {"arity": 1, "sympy": "a"}}})
    with pytest.raises(GrammarError, match="trainable"):
        grammar_from_dict({"primitives": {"add": {"arity": 2, "sympy": "a + b"}},
                           "terminals": {"ephemeral": {"low": 0, "high": 1, "trainable": "yes"}}})


@pytest.mark.parametrize("text", FORMULAS)
def test_derivatives_with_respect_to_each_constant_match_autograd_in_float64(text):
    expr = _expr(text)
    prog, fn = lower(expr, FULL), to_torch_params(expr, FULL.functions)
    assert prog.params == fn.init and len(prog.params) >= 1
    x = torch.linspace(-4, 4, 101, dtype=torch.float64).reshape(1, -1)
    params = [torch.tensor(c + 0.1 * j, dtype=torch.float64, requires_grad=True) for j, c in enumerate(fn.init)]
    xs = x.clone().requires_grad_()
    want = fn.fn(xs, *params)
    grads = torch.autograd.grad(want.sum(), [xs, *params])
    value, tangents = run_program(prog, x, torch.stack([p.detach() for p in params]).reshape(-1, 1, 1))
    torch.testing.assert_close(value, want.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tangents[0], grads[0], rtol=1e-10, atol=1e-10)  # d/dx
    for j, g in enumerate(grads[1:]):  # d/dp_j, summed over the points as autograd's grad of the sum
        got = torch.zeros(()) if tangents[1 + j] is None else tangents[1 + j].sum()
        torch.testing.assert_close(got.to(torch.float64), g, rtol=1e-10, atol=1e-10)


SUITE = make_suite("default", n_train=32, n_ood=32)[:1]
CFG64 = TrainConfig(width=4, depth=2, steps=8, lr=2e-2, dtype="float64")
# Stated tolerance, float64: the same start, the same Adam arithmetic on the same gradients, summed in another
# order (bmm and a hand-written backward against autograd): OOD scores and learned constants agree to 1e-9.
RTOL64 = 1e-9


def test_batched_trains_constants_as_the_reference_does_on_22_formulas():
    exprs = [_expr(t) for t in FORMULAS]
    batched = evaluate_batched(exprs, FULL, SUITE, [0], CFG64, device="cpu")
    moved = 0
    for text, expr, got in zip(FORMULAS, exprs, batched, strict=True):
        want = evaluate_reference(compile_expr(expr, FULL), SUITE, [0], CFG64)
        assert math.isclose(got.ood_score, want.ood_score, rel_tol=RTOL64), text
        assert got.constants.keys() == want.constants.keys(), text
        for key, layers in want.constants.items():
            assert len(layers) == CFG64.depth
            for a, b in zip(layers, got.constants[key], strict=True):
                assert all(math.isclose(u, v, rel_tol=RTOL64, abs_tol=1e-12) for u, v in zip(a, b, strict=True))
            moved += any(u != c for layer in layers for u, c in zip(layer, start_values(expr), strict=True))
    assert moved == len(FORMULAS)  # every formula's constants were trained


@pytest.mark.parametrize("evaluator", ["reference", "batched"])
def test_a_constant_with_zero_rate_scores_as_the_fixed_constant_bit_for_bit(evaluator):
    cfg = TrainConfig(width=8, depth=2, steps=20, const_lr=0.0)
    pairs = [("x*sigmoid(p(1.702)*x)", "x*sigmoid(1.702*x)"), ("p(0.3)*x + tanh(p(-0.5)*x)", "0.3*x + tanh(-0.5*x)")]
    for trained, fixed in pairs:
        e_t, e_f = _expr(trained), _expr(fixed)
        assert trainables(e_t) and not trainables(e_f)
        if evaluator == "reference":
            got = evaluate_reference(compile_expr(e_t, FULL), SUITE, [0, 1], cfg)
            want = evaluate_reference(compile_expr(e_f, FULL), SUITE, [0, 1], cfg)
        else:
            got, want = evaluate_batched([e_t, e_f], FULL, SUITE, [0, 1], cfg, device="cpu")
        assert got.per_run == want.per_run and got.ood_score == want.ood_score and got.id_loss == want.id_loss
        start = [torch.tensor(start_values(e_t), dtype=torch.float32).double().tolist()] * cfg.depth
        assert got.constants and all(layers == start for layers in got.constants.values())  # nothing moved


def test_eval_trainable_constants_reports_trained_against_fixed_xielu():
    from click.testing import CliRunner

    from gpact.cli import main

    res = CliRunner().invoke(main, ["eval", "xielu", "x*sigmoid(1.702*x)", "--trainable-constants", "--tasks",
                                    "smoke", "--seeds", "3", "--steps", "15", "--width", "6", "--evaluator",
                                    "batched", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("name")) + 2
    names = [line.split()[0] for line in lines[start: start + 5]]
    assert names == ["gelu", "xielu", "xielu_trainable", "x*sigmoid(1.702*x)", "x*sigmoid(1.702*x)"]
    assert "x*sigmoid(x*p(1.702))" in res.output
    # xIELU's two constants start where a_p = a_n = 0.8 (p = log(e^0.8 - 1), n = log(e^0.3 - 1)), learned per layer
    assert "xielu_trainable: constant 0 starts -1.05, learned layer 1" in res.output
    assert "xielu_trainable: constant 1 starts 0.2034, learned layer 1" in res.output and "layer 2" in res.output


def test_baselines_show_fixed_against_trainable():
    from gpact.train.baselines import BASELINES, with_trainable

    for name in ("xielu", "xiprelu"):
        assert with_trainable(name) == [name, f"{name}_trainable"]
        assert trainables(_expr(BASELINES[f"{name}_trainable"].formula))
        assert not trainables(_expr(BASELINES[name].formula))
    assert len(trainables(_expr(BASELINES["xiprelu_trainable"].formula))) == 2  # equal starts, told apart by a tag
    assert with_trainable("x**2 + 0.5*x") == ["x**2 + 0.5*x", ("x**2 + 0.5*x [trained]", "((x ** 2.0) + (p(0.5) * x))")]


RUN = ["run", "--grammar", "minimal", "--population", "4", "--seed", "3", "--tasks", "smoke", "--train-seeds", "1",
       "--race-eta", "1", "--steps", "5", "--width", "4", "--validation", "", "--test", "", "--trainable-constants",
       "--evaluator", "batched", "--device", "cpu"]


def test_run_with_trainable_constants_records_learned_values_and_resumes_to_the_same_front(tmp_path):
    import json

    from click.testing import CliRunner

    from gpact.cli import main

    straight = CliRunner().invoke(main, [*RUN, "--generations", "2", "--out", str(tmp_path), "--run-id", "a"])
    assert straight.exit_code == 0, straight.output
    first = CliRunner().invoke(main, [*RUN, "--generations", "1", "--out", str(tmp_path), "--run-id", "b"])
    assert first.exit_code == 0, first.output
    resumed = CliRunner().invoke(main, ["run", "--resume", str(tmp_path / "b"), "--generations", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "a" / "pareto.csv").read_text() == (tmp_path / "b" / "pareto.csv").read_text()

    records = [json.loads(line) for line in (tmp_path / "a" / "candidates.jsonl").read_text().splitlines()]
    trained = [r for r in records if "p(" in r["tree"] and r["constants"]]
    assert trained, "the search drew trainable constants"
    for r in trained:
        for c in r["constants"]:  # per constant: start, pooled median, per layer median and spread over networks
            assert c["layers"] and all(x["lo"] <= x["median"] <= x["hi"] and x["networks"] >= 1 for x in c["layers"])
        assert r["learned"] and "p(" not in r["learned"]  # the formula at its learned medians
    assert all("p(" not in r["tree"] or r["constants"] or r["ood_score"] >= 1e6 for r in records)
    front = (tmp_path / "a" / "pareto.csv").read_text().splitlines()[1:]
    assert any("p(" in line for line in front) and "learned constants (median)" in straight.output
    _check_export(tmp_path / "a", {r["key"]: r for r in records})


def _check_export(run_dir, records):
    """`gpact export` and Activation.from_run: trainable constants are nn.Parameters per module instance, starting at
    the learned medians or at the formula's values, as the user chooses."""
    import importlib.util

    from click.testing import CliRunner

    from gpact.cli import main
    from gpact.nn import Activation
    from gpact.run.front import read_front

    row = next(r for r in read_front(run_dir) if "p(" in r["tree"])
    medians = [c["median"] for c in records[row["key"]]["constants"]]
    starts = list(start_values(_expr(row["tree"], load_grammar("minimal"))))
    for choice, want in (("learned", medians), ("formula", starts)):
        path = run_dir / f"{choice}.py"
        res = CliRunner().invoke(main, ["export", str(run_dir), "--rank", str(row["rank"]), "--constants", choice,
                                        "--out", str(path)])
        assert res.exit_code == 0, res.output
        spec = importlib.util.spec_from_file_location(f"exported_{choice}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        one, two = module.Activation(), module.Activation()
        got = [getattr(one, f"p{j}").item() for j in range(len(want))]
        assert got == pytest.approx(want, rel=1e-6)
        with torch.no_grad():
            one.p0.add_(1.0)  # each module instance (each layer) has its own copy
        assert two.p0.item() == pytest.approx(want[0], rel=1e-6)
        act = Activation.from_run(run_dir, rank=row["rank"], start=choice)
        assert [getattr(act, f"p{j}").item() for j in range(len(want))] == pytest.approx(want, rel=1e-6)
        x = torch.linspace(-3, 3, 13)
        torch.testing.assert_close(act(x), two(x))


def test_nn_activation_makes_trainable_constants_parameters():
    from gpact.nn import Activation

    act, fixed = Activation("x*sigmoid(p(1.702)*x)"), Activation("x*sigmoid(1.702*x)")
    assert [n for n, _ in act.named_parameters()] == ["p0"] and not list(fixed.parameters())
    x = torch.linspace(-4, 4, 33)
    torch.testing.assert_close(act(x), fixed(x))  # at its start value it is the fixed function
    act(x).sum().backward()
    assert act.p0.grad is not None and act.p0.grad.item() != 0.0
    xielu = Activation("xielu_trainable")  # the published parameterisation, at a_p = a_n = 0.8
    torch.testing.assert_close(xielu(x), Activation("xielu")(x), rtol=1e-6, atol=1e-6)


def test_trainable_constants_ship_to_workers_and_const_lr_is_checked():
    from gpact.config import TrainConfig as TC
    from gpact.errors import ConfigError
    from gpact.expr.wire import ship, text_to_expr

    expr = _expr("softplus(p(0.2034))*relu(x)**2 + softplus(p(0.2034, 1))*min(x, 0)**2 + 0.5*x")
    text = ship(expr)
    assert text is not None and text_to_expr(text) == expr  # workers rebuild the very same trainable formula
    with pytest.raises(ConfigError, match="const_lr"):
        TC(const_lr=-1.0)
