"""`gpact bench` end to end on a tiny protocol, and the fixed candidate mix it times."""

import json

from click.testing import CliRunner
from pytest import approx

from gpact.cli import main
from gpact.expr.grammar import load_grammar
from gpact.expr.symbolic import X
from gpact.report.bench import candidate_mix
from gpact.report.roofline import work
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
    result = CliRunner().invoke(main, ["bench", "--repeat", "0"])
    assert result.exit_code == 2 and "must be >= 1" in result.output


def test_roofline_reports_peaks_work_fraction_ceiling_and_phases():
    result = CliRunner().invoke(main, ["bench", "--device", "cpu", "-k", "3", "--steps", "3", "--roofline", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output.strip().splitlines()[-1])
    assert (r["device"], r["candidates"], r["networks"], r["steps"]) == ("cpu", 3, 3, 3)
    assert r["matmul_gflops"] > 0 and r["bandwidth_gbs"] > 0 and r["gflop_per_training"] > 0
    assert r["batched_trainings_per_s"] > 0 and r["shared_trainings_per_s"] > 0
    assert 0 < r["fraction"] <= 1 and 0 < r["shared_fraction"] <= 1
    assert r["fraction"] == approx(r["batched_trainings_per_s"] / r["limit_trainings_per_s"])
    assert r["distinct_vs_shared"] == approx(r["batched_trainings_per_s"] / r["shared_trainings_per_s"])
    assert set(r["phase_ms"]) == {"matmul", "activation", "loss", "backward", "adam", "other"}
    assert all(v >= 0 for v in r["phase_ms"].values()) and r["phase_ms"]["matmul"] > 0
    assert r["phase_ms"]["activation"] > 0 and sum(r["phase_share"].values()) == approx(1.0)
    text = CliRunner().invoke(main, ["bench", "--device", "cpu", "-k", "2", "--steps", "2", "--roofline"]).output
    assert "of the limit" in text and "activation" in text and "all GELU" in text


def test_roofline_work_counts_the_matmuls_of_a_training():
    # 1-4-4-1, 2 steps on 8 points, then forwards on 8 + 8: forward 2*(4 + 16 + 4) per point, backward
    # twice that less the first layer's input gradient (2*4)
    flops, nbytes = work(d_in=1, n_train=8, n_ood=8, width=4, depth=2, steps=2)
    assert flops == 2 * 8 * (48 + 96 - 8) + 16 * 48
    assert nbytes > 0


def test_search_setting_repeats_and_memory_per_candidate():
    result = CliRunner().invoke(main, ["bench", "--device", "cpu", "-k", "2", "--setting", "search", "--steps", "2",
                                       "--naive-max", "1", "--repeat", "2", "--naive-threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output.strip().splitlines()[-1])
    assert (r["setting"], r["networks_per_candidate"], r["steps"], r["repeat"], r["naive_threads"]) == \
        ("search", 16, 2, 2, 1)
    assert len(r["speedups"]) == 2 and r["speedup"] == approx(sum(r["speedups"]) / 2)
    assert r["batched_trainings_per_s"] == approx(2 * 16 / r["batched_seconds"])
    assert r["estimated_bytes_per_candidate"] > 0
    assert r["peak_bytes_per_candidate"] is None or r["peak_bytes_per_candidate"] >= 0
