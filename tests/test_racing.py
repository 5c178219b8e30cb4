"""Racing: stages of growing network prefixes, the best 1/eta promoted, front members trained on everything."""

import csv
import json

import pytest
from click.testing import CliRunner

from gpact.cli import main
from gpact.config import RunConfig
from gpact.search.racing import Race, make_plan
from gpact.train.fitness import Fitness, aggregate, merge, run_key
from gpact.train.reference import TrainResult


def test_plan_stages_grow_by_eta_and_cover_every_network_once():
    plan = make_plan(["a", "b", "c", "d", "e"], [0, 1], start=2, eta=3, seed=7)
    assert plan.sizes == (2, 6, 10) and plan.final == 2
    assert sorted(plan.order) == sorted((t, s) for t in "abcde" for s in (0, 1))
    assert [s for _, s in plan.order[:5]] == [0] * 5  # a stage adds tasks on the first seed before new seeds
    assert make_plan(["a", "b", "c", "d", "e"], [0, 1], start=2, eta=3, seed=7) == plan
    assert make_plan(["a", "b", "c", "d", "e"], [0, 1], start=2, eta=3, seed=8).order != plan.order
    off = make_plan(["a", "b"], [0], start=4, eta=3, seed=0)
    assert off.sizes == (2,) and off.order == (("a", 0), ("b", 0))  # nothing to race: today's order
    assert make_plan(["a", "b", "c"], [0], start=1, eta=1, seed=0).sizes == (3,)


class _Task:
    def __init__(self, name):
        self.spec = type("Spec", (), {"name": name})()


class _Backend:
    """Losses a function of (formula, task, seed), so the race's choices are known in advance."""

    def __init__(self, quality):
        self.quality, self.calls = quality, []

    def evaluate(self, exprs, grammar, tasks, seeds, cfg, **kw):
        self.calls.append((len(exprs), len(tasks), list(seeds)))
        out = []
        for e in exprs:
            losses = {t.spec.name: [TrainResult(0.1, self.quality[e] * (1 + s), False) for s in seeds] for t in tasks}
            out.append(aggregate(losses, seeds))
        return out


def test_the_best_fraction_is_promoted_and_networks_are_counted():
    quality = {f"f{i}": 1.0 + i for i in range(9)}  # f0 best ... f8 worst
    names = [f"t{i}" for i in range(6)]
    plan = make_plan(names, [0, 1], start=2, eta=3, seed=0)  # 2 -> 6 -> 12 networks
    backend = _Backend(quality)
    race = Race(plan, [_Task(n) for n in names], None, backend, RunConfig())
    out = race.run(list(quality), score=lambda f: f.ood_score)
    stages = {e: s for e, (_, s) in zip(quality, out, strict=True)}
    assert stages == {"f0": 2, "f1": 1, "f2": 1, **{f"f{i}": 0 for i in range(3, 9)}}
    assert [len(f.per_run) for f, _ in out] == [12, 6, 6] + [2] * 6
    assert race.networks == 9 * 2 + 3 * 4 + 1 * 6
    finished = race.finish(["f5"], [out[5][0]], [0])
    assert len(finished[0].per_run) == 12 and race.networks == 9 * 2 + 3 * 4 + 6 + 10


def test_merge_of_parts_equals_one_evaluation_of_all():
    res = {"a": [TrainResult(0.1, 2.0, False), TrainResult(0.2, 4.0, False)],
           "b": [TrainResult(0.1, 1.0, False), TrainResult(1e6, 1e6, True, "nonfinite")]}
    whole = aggregate(res, [0, 1])
    parts = merge([aggregate({"a": res["a"][:1], "b": res["b"][:1]}, [0]),
                   aggregate({"a": res["a"][1:], "b": res["b"][1:]}, [1])])
    assert parts.per_run == whole.per_run and parts.per_task == whole.per_task
    assert parts.ood_score == pytest.approx(whole.ood_score) and parts.diverged == whole.diverged == 1
    assert merge([whole]) is whole and isinstance(parts, Fitness) and run_key("a", 1) in parts.per_run


def test_a_raced_run_trains_front_members_on_every_network(tmp_path):
    args = ["run", "--grammar", "minimal", "--generations", "2", "--population", "8", "--seed", "3",
            "--tasks", "search:4", "--train-seeds", "2", "--race-start", "2", "--race-eta", "2", "--steps", "20",
            "--width", "8", "--validation", "", "--test", "", "--out", str(tmp_path), "--run-id", "r"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "racing: 2 -> 4 -> 8 networks per function" in res.output
    out = tmp_path / "r"
    records = {r["key"]: r for r in map(json.loads, (out / "candidates.jsonl").read_text().splitlines())}
    assert {r["stage"] for r in records.values()} == {0, 1, 2}  # stages recorded as reached
    checkpoint = {r["key"]: r for r in json.loads((out / "checkpoint.json").read_text())["records"]}
    for row in csv.DictReader((out / "pareto.csv").open()):
        assert checkpoint[row["key"]]["stage"] == 2 and len(checkpoint[row["key"]]["per_run"]) == 8
    gens = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert gens[-1]["networks"] > gens[0]["networks"] > 0 and len(gens[0]["stages"]) == 3


def test_max_networks_stops_the_run_at_a_training_budget(tmp_path):
    args = ["run", "--grammar", "minimal", "--generations", "5", "--population", "4", "--seed", "1",
            "--tasks", "smoke", "--train-seeds", "1", "--steps", "5", "--width", "4", "--max-networks", "1",
            "--validation", "", "--test", "", "--out", str(tmp_path), "--run-id", "b"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "stopped by max networks after generation 0/5" in res.output
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["status"] == "stopped: max networks"
