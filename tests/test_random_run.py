"""`gpact run --strategy random`: trains exactly --max-evals distinct functions drawn from the run's template
(no known activations offered first), every one inside the template, the same ones for the same seed."""

import json
from pathlib import Path

from click.testing import CliRunner

from gpact.cli import main
from gpact.expr.grammar import load_grammar
from gpact.expr.templates import match, run_templates
from gpact.expr.trees import make_pset, parse_tree

GRAMMAR = str(Path(__file__).resolve().parent / "data" / "tiny_space.yaml")
ARGS = ["run", "--strategy", "random", "--grammar", GRAMMAR, "--max-evals", "10", "--population", "4",
        "--tasks", "smoke", "--train-seeds", "1", "--steps", "5", "--width", "4", "--validation", "", "--test", "",
        "--evaluator", "reference"]


def _run(tmp_path, run_id, seed):
    res = CliRunner().invoke(main, [*ARGS, "--seed", str(seed), "--out", str(tmp_path), "--run-id", run_id])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / run_id / "candidates.jsonl").read_text().splitlines()]
    return res.output, rows


def test_random_run_trains_max_evals_distinct_template_functions_reproducibly(tmp_path):
    out, rows = _run(tmp_path, "a", 1)
    assert len(rows) == 10 and len({r["key"] for r in rows}) == 10  # 4 + 4 + the last batch trimmed to 2
    assert sorted({r["generation"] for r in rows}) == [0, 1, 2]
    assert {r["origin"] for r in rows} == {"random"}
    assert "stopped by max evals" in out and "Pareto front" in out
    g = load_grammar(GRAMMAR)
    pset, (template,) = make_pset(g), run_templates(g)
    assert all(match(parse_tree(r["tree"], g, pset), template, g) is not None for r in rows)
    _, again = _run(tmp_path, "b", 1)
    assert [r["tree"] for r in again] == [r["tree"] for r in rows]
    _, other = _run(tmp_path, "c", 2)
    assert [r["tree"] for r in other] != [r["tree"] for r in rows]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["strategy"] == "random"
