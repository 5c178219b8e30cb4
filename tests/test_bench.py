"""`gpact bench` end to end on a tiny protocol, and the fixed candidate mix it times."""

import json

from click.testing import CliRunner

from gpact.cli import main
from gpact.expr.grammar import load_grammar
from gpact.expr.symbolic import X
from gpact.report.bench import candidate_mix
from gpact.train.baselines import BASELINES
from gpact.train.program import lower


def test_candidate_mix_is_fixed_distinct_and_lowerable():
    g = load_grammar("full")
    a, b = candidate_mix(g, 30, seed=5), candidate_mix(g, 30, seed=5)
    assert [str(e) for _, e in a] == [str(e) for _, e in b]
    assert len({str(e) for _, e in a}) == 30
    assert [n for n, _ in a[:3]] == [n for n in BASELINES if n in dict(a)][:3]  # known activations first
    assert any(n.startswith("random") for n, _ in a)
    for _, e in a:
        assert X in e.free_symbols
        lower(e, g)


def test_bench_json_reports_both_evaluators():
    result = CliRunner().invoke(main, ["bench", "--device", "cpu", "-k", "3", "--steps", "3", "--naive-max", "2",
                                       "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    for key in ("device", "candidates", "steps", "naive_trainings_per_s", "batched_trainings_per_s", "speedup"):
        assert key in data
    assert (data["device"], data["candidates"], data["steps"], data["naive_candidates"]) == ("cpu", 3, 3, 2)
    assert abs(data["speedup"] - data["batched_trainings_per_s"] / data["naive_trainings_per_s"]) < 1e-9


def test_bench_text_says_when_the_reference_was_timed_on_a_subset():
    result = CliRunner().invoke(main, ["bench", "--device", "cpu", "-k", "2", "--steps", "2", "--naive-max", "1"])
    assert result.exit_code == 0, result.output
    assert "timed on 1 of 2" in result.output and "speed-up" in result.output


def test_bench_bad_input_is_one_line_error():
    result = CliRunner().invoke(main, ["bench", "-k", "0"])
    assert result.exit_code == 2 and "must be >= 1" in result.output
