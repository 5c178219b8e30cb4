"""`gpact run --prescreen K`: the GP strategy makes K times the children, trains the surrogate's best share plus
a few random ones, and records its predictions in generations.jsonl."""

import json

from click.testing import CliRunner

from gpact.cli import main

ARGS = ["run", "--grammar", "minimal", "--generations", "2", "--population", "8", "--seed", "1", "--tasks", "smoke",
        "--train-seeds", "1", "--steps", "5", "--width", "4", "--validation", "", "--test", "",
        "--evaluator", "reference", "--prescreen", "3"]


def test_prescreen_trains_the_predicted_share_and_records_predictions(tmp_path):
    res = CliRunner().invoke(main, [*ARGS, "--out", str(tmp_path), "--run-id", "p"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    gens = [json.loads(line) for line in (tmp_path / "p" / "generations.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (tmp_path / "p" / "candidates.jsonl").read_text().splitlines()]
    assert gens[0]["predicted"] == {}  # generation 0: nothing to learn from yet
    trained = {r["tree"] for r in rows}
    for g in gens[1:]:
        assert 0 < len(g["predicted"]) <= 8  # one population's worth of the 3 x 8 children, with predictions
        assert g["evaluated"] <= 8
        new = {r["tree"] for r in rows if r["generation"] == g["generation"]}
        assert new <= set(g["predicted"]) and all(isinstance(v, float) for v in g["predicted"].values())
    assert trained
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["prescreen"] == 3
