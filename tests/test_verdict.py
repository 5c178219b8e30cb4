"""A finished run picks one function on validation families and reports on test families, through `gpact run`,
and nothing from the test part reaches selection or the pick."""

import csv
import json

from click.testing import CliRunner

from gpact.cli import main
from gpact.nn import Activation
from gpact.run.verdict import proxy_sample
from gpact.search.records import Record
from gpact.train.tasks import split_tasks

RUN = ["run", "--grammar", "minimal", "--generations", "2", "--population", "8", "--seed", "2", "--tasks", "search:3",
       "--train-seeds", "1", "--steps", "30", "--width", "8", "--validation", "validation:2"]


def _run(tmp_path, run_id, *extra):
    res = CliRunner().invoke(main, [*RUN, *extra, "--out", str(tmp_path), "--run-id", run_id])
    assert res.exit_code == 0, res.output
    return tmp_path / run_id, res.output


def test_the_run_recommends_the_best_validation_score_and_reports_test(tmp_path):
    out, printed = _run(tmp_path, "a", "--test", "test:2")
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    picked = [r for r in rows if r["recommended"] == "yes"]
    assert len(picked) == 1
    best = min(rows, key=lambda r: (float(r["validation_vs_gelu"]), float(r["flops"]), r["formula"]))
    assert picked[0]["formula"] == best["formula"]
    assert all(r["test_vs_gelu"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recommended"]["formula"] == best["formula"]
    assert summary["recommended"]["picked_on"] == "validation"
    assert summary["proxy"]["n"] >= len(rows)
    # every ratio is to GELU trained from the same initial weights: GELU's own networks score exactly 1,
    # on the search tasks (what selection compares with) as on the test tasks, and ReLU does not
    for scores in (summary["references"], summary["reference_test"]):
        assert scores["gelu(x)"] == 1.0 and scores["relu(x)"] != 1.0
    parts = summary["parts"]
    families = {p: set(parts[p]["families"]) for p in parts}
    assert not families["search"] & families["validation"] and not families["test"] & (
        families["search"] | families["validation"])
    assert float(best["validation_vs_gelu"]) <= 1  # the premise (the next test covers a front that loses)
    assert "WARNING: no front member beat GELU" not in printed
    assert "reported only, never selected on" in printed and f"recommended (best validation score on the front): " \
        f"{best['formula']}" in printed and "proxy check: Spearman" in printed
    # what selection saw: only search tasks, none of a validation or test family
    seen = {t for line in (out / "candidates.jsonl").read_text().splitlines() for t in json.loads(line)["per_task"]}
    assert seen == set(parts["search"]["tasks"])
    assert not set(split_tasks(sorted(seen)).values()) & (families["test"] | families["validation"])
    # show and list name it; export takes it when no rank is named
    shown = CliRunner().invoke(main, ["show", str(out), "--no-plots"])
    assert f"recommended: {best['formula']}  (rank {best['rank']}, best validation score" in shown.output
    listed = CliRunner().invoke(main, ["list", str(tmp_path)])
    assert best["formula"] in listed.output
    res = CliRunner().invoke(main, ["export", str(out), "--format", "torch"])
    assert res.exit_code == 0 and f"(rank {best['rank']}: {best['formula']})" in res.output, res.output


def test_the_test_part_changes_nothing_that_is_selected_or_picked(tmp_path):
    """Same run with and without a test part: the same candidates, front and pick (test only reports)."""
    with_test, _ = _run(tmp_path, "t", "--test", "test:2")
    without, _ = _run(tmp_path, "n", "--test", "")
    assert (with_test / "candidates.jsonl").read_bytes() == (without / "candidates.jsonl").read_bytes()
    cols = ("rank", "formula", "ood_score", "validation_vs_gelu", "recommended")
    a, b = ([{c: r[c] for c in cols} for r in csv.DictReader((d / "pareto.csv").open())] for d in (with_test, without))
    assert a == b


def test_without_validation_the_pick_is_the_best_search_score(tmp_path):
    out, printed = _run(tmp_path, "v", "--validation", "", "--test", "")
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert [r["recommended"] for r in rows][0] == "yes" and sum(r["recommended"] == "yes" for r in rows) == 1
    assert "best search score on the front" in printed
    assert json.loads((out / "summary.json").read_text())["recommended"]["picked_on"] == "search"


def _rec(key, score):
    return Record(key=key, formula=key, tree=key, flops=1.0, ood_score=score, id_loss=0.1, generation=0)


def test_proxy_sample_is_front_plus_a_seeded_sample_of_the_rest():
    front = [_rec("f1", 0.5), _rec("f2", 0.7)]
    others = [_rec(f"o{i}", 1.0 + i) for i in range(40)] + [_rec("bad", 1e6)]
    sample = proxy_sample(front, front + others, 30, seed=3)
    assert len(sample) == 30 and sample[:2] == front and len({r.key for r in sample}) == 30
    assert "bad" not in {r.key for r in sample}  # failures have no score to rank
    assert proxy_sample(front, front + others, 30, seed=3) == sample
    assert len(proxy_sample(front, front + others[:5], 30, seed=3)) == 7


POWERS = """name: powers
description: even powers only, which blow up outside the training box.
primitives:
  square: {arity: 1, sympy: "a**2", cost: 1}
  mul: {arity: 2, sympy: "a * b", cost: 1}
terminals:
  constants: []
limits: {max_height: 2, max_size: 5, max_flops: 10, init_min_height: 1, init_max_height: 2}
"""


def test_when_no_front_member_beats_gelu_on_validation_the_run_recommends_gelu(tmp_path):
    grammar = tmp_path / "powers.yaml"
    grammar.write_text(POWERS)
    res = CliRunner().invoke(main, ["run", "--grammar", str(grammar), "--generations", "0", "--population", "4",
                                    "--seed", "2", "--tasks", "search:3", "--train-seeds", "1", "--steps", "150",
                                    "--width", "8", "--validation", "validation:2", "--test", "test:2",
                                    "--out", str(tmp_path), "--run-id", "p"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "p"
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert min(float(r["validation_vs_gelu"]) for r in rows) > 1  # the premise: the front loses to GELU
    assert not any(r["recommended"] for r in rows)  # GELU is not a front member: no row is marked
    summary = json.loads((out / "summary.json").read_text())
    pick, best = summary["recommended"], summary["best_front_member"]
    assert pick["formula"] == "gelu(x)" and pick["fallback"] is True
    assert pick["validation"] == 1.0 and pick["test"] == 1.0 and pick["search"] == 1.0
    assert best["formula"] in {r["formula"] for r in rows} and best["validation"] > 1
    assert "recommended (GELU itself, no front member beat it on validation): gelu(x)" in res.output
    assert f"WARNING: no front member beat GELU on the validation families (best {best['formula']}" in res.output
    shown = CliRunner().invoke(main, ["show", str(out), "--no-plots"])
    assert "recommended: gelu(x)  (GELU itself" in shown.output
    exported = CliRunner().invoke(main, ["export", str(out), "--format", "torch"])
    assert exported.exit_code == 0 and "recommends GELU itself" in exported.output, exported.output
    assert "gelu" in (out / "export" / "gelu.py").read_text()
    assert Activation.from_run(out).formula == "gelu(x)"
    ranked = CliRunner().invoke(main, ["export", str(out), "--rank", "1", "--format", "sympy"])
    assert ranked.exit_code == 0 and ranked.output.strip() != ""
