"""Templates confine a run: `gpact run` with a template grammar writes only trees of the grammar's run
templates (initial population, every operator, the LLM included), checked on the run folder itself."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from gpact.cli import main
from gpact.config import RunConfig
from gpact.errors import GrammarError
from gpact.expr.grammar import grammar_from_dict, load_grammar
from gpact.expr.templates import conforms, run_templates
from gpact.expr.trees import make_pset, parse_tree
from gpact.run.checkpoint import config_differences

SMALL = ["--generations", "2", "--population", "8", "--seed", "1", "--tasks", "smoke", "--train-seeds", "1",
         "--steps", "20", "--width", "8", "--validation", "", "--test", ""]


def _run(tmp_path, grammar, *extra):
    res = CliRunner().invoke(main, ["run", "--grammar", grammar, *SMALL, "--out", str(tmp_path), "--run-id", "r",
                                    *extra], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return tmp_path / "r"


def _trees(run_dir):
    rows = [json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()]
    return rows, [r["tree"] for r in rows] + [r["tree"] for r in csv.DictReader((run_dir / "pareto.csv").open())]


def _outside(grammar_name, trees):
    g = load_grammar(grammar_name)
    pset, templates = make_pset(g), run_templates(g)
    return [t for t in trees if not any(conforms(parse_tree(t, g, pset), tp, g) for tp in templates)]


@pytest.mark.parametrize("grammar, shape", [("swish", "unit"), ("aquasurf", "unit"), ("grafs", "cell")])
def test_every_candidate_of_a_template_run_conforms(tmp_path, grammar, shape):
    assert [t.name for t in run_templates(load_grammar(grammar))] == [shape]
    run_dir = _run(tmp_path, grammar)
    rows, trees = _trees(run_dir)
    assert len(rows) > 8  # later generations brought new functions
    assert not _outside(grammar, trees)
    assert any(r["generation"] > 0 for r in rows)
    assert json.loads((run_dir / "config.json").read_text())["strategy"] == "gp"


def test_llm_children_outside_the_template_are_refused(tmp_path):
    pytest.importorskip("openai")
    from fake_llm import FakeLLM

    # in the swish unit: add(sin(x), tanh(x)), mul(x, sigmoid(x)); outside it: tanh(x), sin(sin(sin(x)))
    server = FakeLLM(default='["tanh(x)", "add(sin(x), tanh(x))", "sin(sin(sin(x)))", "mul(x, sigmoid(x))"]')
    try:
        run_dir = _run(tmp_path, "swish", "--llm-base-url", server.url, "--llm-model", "m", "--llm-rate", "1",
                       "--llm-mutation-rate", "1", "--llm-max-calls", "3")
    finally:
        server.close()
    rows, trees = _trees(run_dir)
    assert not _outside("swish", trees)
    calls = [json.loads(line) for line in (run_dir / "llm_calls.jsonl").read_text().splitlines()]
    assert len(calls) == 3 and any(r["reason"] == "template" for c in calls for r in c["rejected"])
    assert any(r["origin"] == "llm" for r in rows)


def test_a_grammar_names_its_run_templates(tmp_path):
    base = {"name": "t", "primitives": {"add": {"arity": 2, "sympy": "a + b"}, "sin": {"arity": 1, "sympy": "sin(a)"}},
            "terminals": {"constants": [1]}}
    one = {"shape": "add(u(x), x)", "slots": {"u": ["sin"]}}
    g = grammar_from_dict({**base, "templates": {"one": one, "two": {"shape": "sin(u(x))", "slots": {"u": ["sin"]}}}})
    assert [t.name for t in run_templates(g)] == ["one", "two"]  # default: all of them
    g = grammar_from_dict({**base, "templates": {"run": ["two"], "one": one, "two": one}})
    assert [t.name for t in run_templates(g)] == ["two"]
    assert run_templates(grammar_from_dict({**base, "templates": {"run": [], "one": one}})) == []
    with pytest.raises(GrammarError, match="templates.run"):
        grammar_from_dict({**base, "templates": {"run": ["nope"], "one": one}})


def test_strategy_option_and_old_configs_without_it():
    saved = RunConfig().to_dict()
    del saved["strategy"]  # a run started before the key existed resumes as a gp run
    assert config_differences(saved, RunConfig()) == []
    res = CliRunner().invoke(main, ["run", "--strategy", "annealing"])
    assert res.exit_code == 2 and "annealing" in res.output
