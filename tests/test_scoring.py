"""Per-seed scoring against GELU: same numbers as the search's fitness, paired ratios, shared evaluations."""

import math

import pytest
import sympy as sp

from gpact.config import TrainConfig
from gpact.errors import ConfigError, FormulaError
from gpact.expr.grammar import load_grammar
from gpact.expr.trees import Analysis, analyse, formula_to_sympy
from gpact.report.scores import format_per_task, format_table, to_csv
from gpact.train.evaluate import evaluate_population
from gpact.train.fitness import WORST, Fitness
from gpact.train.scoring import _row, score_formulas
from gpact.train.tasks import make_suite

CFG = TrainConfig(width=8, steps=30)


@pytest.fixture(scope="module")
def table():
    return score_formulas(["relu", "gelu(x) + 0.1*sin(x)", "x*sigmoid(x)", "silu"], tasks="smoke", seeds=3, cfg=CFG)


def test_reference_row_first_and_rows_in_order(table):
    assert [r.label for r in table.rows] == ["gelu", "relu", "gelu(x) + 0.1*sin(x)", "x*sigmoid(x)", "silu"]
    ref = table.rows[0]
    assert ref.is_reference and ref.vs_ref == 1.0 and ref.wins == 0
    assert table.tasks == ["poly_cubic", "harmonic_2"] and table.seeds == [0, 1, 2]


def test_ood_score_is_the_search_fitness(table):
    """Scoring per seed and aggregating gives exactly what one call with all seeds gives."""
    g = load_grammar("full")
    expr = analyse(formula_to_sympy("gelu(x) + 0.1*sin(x)", g), g).expr
    fit = evaluate_population([expr], g, make_suite("smoke"), [0, 1, 2], CFG)[0]
    row = table.rows[2]
    assert row.ood_score == pytest.approx(fit.ood_score, rel=1e-12)
    assert row.per_task == pytest.approx(fit.per_task, rel=1e-12)


def test_ratios_are_paired_per_seed(table):
    ref, row = table.rows[0], table.rows[1]
    ratios = sorted(a / b for a, b in zip(row.seed_scores, ref.seed_scores, strict=True))
    assert row.vs_ref == pytest.approx(ratios[1]) and row.vs_ref_lo == ratios[0] and row.vs_ref_hi == ratios[2]
    assert row.wins == sum(a < b for a, b in zip(row.seed_scores, ref.seed_scores, strict=True))
    assert len({*ref.seed_scores}) == 3  # seeds really differ


def test_equal_functions_share_one_evaluation(table):
    assert table.rows[3].seed_scores == table.rows[4].seed_scores  # x*sigmoid(x) is silu


def test_outputs(table):
    text = format_table(table, sort=True)
    assert "gelu (ref)" in text and "vs gelu" in text and "3 seeds" in text
    assert text.splitlines()[2].startswith(min(table.rows, key=lambda r: r.vs_ref).label)
    md = format_table(table, markdown=True)
    assert md.startswith("| name | FLOPs |") and "|---|" in md
    csv = to_csv(table).splitlines()
    assert csv[0].split(",")[-2:] == ["poly_cubic", "harmonic_2"] and len(csv) == 1 + len(table.rows)
    assert "harmonic_2" in format_per_task(table)


def test_bad_formula_names_it():
    with pytest.raises(FormulaError, match="formula 'foo\\(x\\) \\+ 1'.*'foo' is not a primitive"):
        score_formulas(["foo(x) + 1"], tasks="smoke", seeds=1, cfg=CFG)
    with pytest.raises(FormulaError, match="formula 'gmtuu'.*baselines: relu"):
        score_formulas(["gmtuu"], tasks="smoke", seeds=1, cfg=CFG)
    with pytest.raises(ConfigError):
        score_formulas(["relu"], tasks="smoke", seeds=0, cfg=CFG)


def test_failed_seeds():
    """A failed seed is +inf inside the per-task median; any failed seed removes the ratio to GELU."""
    an = Analysis("f(x)", sp.Symbol("x"), "k", 1.0)

    def fit(a, b):
        bad = int(a >= WORST) + int(b >= WORST)
        return Fitness(ood_score=math.sqrt(a * b) if not bad else WORST, id_loss=0.1, per_task={"t1": a, "t2": b},
                       diverged=bad, reason="nonfinite" if bad else "")

    ref = [fit(1.0, 1.0)] * 3
    one_bad = _row("f", an, [fit(2.0, 2.0), fit(WORST, 2.0), fit(4.0, 2.0)], ref, False)
    assert one_bad.per_task == {"t1": 4.0, "t2": 2.0} and one_bad.ood_score == pytest.approx(math.sqrt(8))
    assert one_bad.vs_ref is None and one_bad.diverged == 1 and one_bad.reason == "nonfinite"
    assert one_bad.wins == 0
    two_bad = _row("f", an, [fit(2.0, 2.0), fit(WORST, 2.0), fit(WORST, 2.0)], ref, False)
    assert two_bad.ood_score == WORST and two_bad.per_task["t1"] == WORST
    even = _row("f", an, [fit(2.0, 2.0), fit(WORST, 2.0)], ref[:2], False)
    assert even.per_task["t1"] == WORST  # (2 + inf) / 2, as fitness.aggregate does


def test_grammar_without_gelu_scores_reference_in_full():
    t = score_formulas(["tanh", "add(x, tanh(x))"], grammar="aquasurf", tasks="poly_cubic", seeds=1, cfg=CFG)
    assert t.rows[0].label == "gelu" and t.rows[0].is_reference
    assert t.rows[1].formula == "tanh(x)"


def test_worker_processes_give_the_same_numbers():
    items = ["relu", "gmtu"]
    serial = score_formulas(items, tasks="poly_cubic", seeds=2, cfg=CFG)
    parallel = score_formulas(items, tasks="poly_cubic", seeds=2, cfg=CFG, jobs=2)
    assert [r.seed_scores for r in serial.rows] == [r.seed_scores for r in parallel.rows]
