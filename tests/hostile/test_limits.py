"""Hostile sizes and faults at the edges of a run (issue 14): absurd populations and training options, long
bad formulas, functions constant in all but syntax, a poisoned LLM cache and Ctrl-C before any handler.

Each refusal is one line, exit status 2 (130 for Ctrl-C), no traceback, within seconds, nothing started.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpact.cli import main
from gpact.config import LLMConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import load_grammar
from gpact.expr.trees import analyse, make_pset, parse_tree, tree_to_sympy
from gpact.run import estimate
from gpact.search.accept import Acceptance

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EVAL = ["eval", "--tasks", "poly_cubic", "--seeds", "1", "--width", "4", "--steps", "2"]
RUN = ["run", "--generations", "1", "--population", "4", "--steps", "2", "--width", "4", "--train-seeds", "1",
       "--tasks", "smoke", "--validation", "", "--test", "", "--evaluator", "reference"]
FAST = 5.0  # seconds; the refusals take well under one on a loaded 2-core machine
GRAMMAR = load_grammar("full")
PSET = make_pset(GRAMMAR)


def refused(args, needle="", max_chars=400, status=2):
    """Run the CLI; assert a one-line refusal with `status` within FAST seconds; return the line."""
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, [str(a) for a in args])
    took = time.perf_counter() - t0
    assert r.exit_code == status, (r.exit_code, r.output[-500:], r.exception)
    assert "Traceback" not in r.output and r.output.count("\n") == 1, r.output[-500:]
    assert r.output.startswith("gpact: ") and len(r.output) <= max_chars and needle in r.output, r.output
    assert took < FAST, f"{took:.1f} s"
    return r.output


# -- population: refused before anything is built ----------------------------------------------------------


@pytest.mark.parametrize("population", [10_001, 100_000, 10**12])
def test_run_refuses_a_population_it_cannot_build(tmp_path, population):
    line = refused([*RUN, "--population", population, "--out", tmp_path / "runs"], "over 10000")
    assert "h" in line and "GB" in line  # the estimate that justifies it
    assert not (tmp_path / "runs").exists()


def test_population_estimate_checks_free_memory_and_announces_long_starts(tmp_path):
    with pytest.raises(ConfigError, match="GB free"):
        estimate.check_population(5000, available=10**8)
    est = estimate.check_population(5000, available=10**12)
    assert est.seconds > estimate.ANNOUNCE_SECONDS and "min" in est.describe()
    assert estimate.check_population(32, available=10**12).seconds < estimate.ANNOUNCE_SECONDS
    assert estimate.machine_memory() is None or estimate.machine_memory() > 0


def test_run_announces_a_long_initial_population_before_it_starts(tmp_path, monkeypatch):
    from gpact.run import runner

    class Done:
        exit_code = 0

    monkeypatch.setattr(runner, "run", lambda cfg, echo: Done())
    r = CliRunner().invoke(main, [*RUN, "--population", "5000", "--out", str(tmp_path)])
    assert r.exit_code == 0 and r.output.startswith("gpact: building the initial population of 5000 functions: about")
    r = CliRunner().invoke(main, [*RUN, "--out", str(tmp_path)])
    assert r.exit_code == 0 and r.output == ""


def test_api_run_refuses_a_huge_population_at_once(tmp_path):
    import gpact

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="over 10000"):
        gpact.run(population=100_000, out_dir=str(tmp_path / "runs"), tasks="smoke", validation="", test="")
    assert time.perf_counter() - t0 < FAST and not (tmp_path / "runs").exists()


# -- training options that would train nothing or crash inside torch ---------------------------------------

ZEROS = {
    "eval_width_0": [*EVAL, "--width", "0", "--", "x"],
    "eval_width_negative": [*EVAL, "--width", "-1", "--", "x"],
    "eval_steps_0": [*EVAL, "--steps", "0", "--", "x"],
    "eval_depth_0": [*EVAL, "--depth", "0", "--", "x"],
    "eval_lr_0": [*EVAL, "--lr", "0", "--", "x"],
    "eval_lr_inf": [*EVAL, "--lr", "inf", "--", "x"],
    "eval_lr_nan": [*EVAL, "--lr", "nan", "--", "x"],
    "eval_seeds_0": [*EVAL, "--seeds", "0", "--", "x"],
    "run_steps_0": [*RUN, "--steps", "0"],
    "run_width_0": [*RUN, "--width", "0"],
    "run_steps_and_width_0": [*RUN, "--steps", "0", "--width", "0"],
    "run_depth_0": [*RUN, "--depth", "0"],
    "run_lr_negative": [*RUN, "--lr", "-0.01"],
    "run_population_0": [*RUN, "--population", "0"],
    "run_train_seeds_0": [*RUN, "--train-seeds", "0"],
    "run_generations_negative": [*RUN, "--generations", "-1"],
}


@pytest.mark.parametrize("args", ZEROS.values(), ids=ZEROS.keys())
def test_zero_and_negative_training_options_are_refused(tmp_path, args):
    line = refused([*args, "--out", tmp_path / "runs"] if args[0] == "run" else args)
    assert "must be" in line or "at least one" in line
    assert not (tmp_path / "runs").exists()


# -- long bad formulas: the error quotes an excerpt --------------------------------------------------------

LONG = {
    "unknown_name_at_end": "x + " * 900 + "foo(x)",
    "unknown_name_at_start": "foo(x) + " + "x*" * 1900 + "x",
    "one_long_name": "x" * 3990,
    "unbalanced": "(x + " * 80 + "x" + ")" * 81,
    "many_arguments": "max(x" + ", x" * 1300 + ")",
    "huge_number": "tanh(x)*" + "9" * 330 + "*" + "x + " * 800 + "x",
}


@pytest.mark.parametrize("text", LONG.values(), ids=LONG.keys())
def test_eval_quotes_an_excerpt_of_a_long_bad_formula(text):
    line = refused([*EVAL, "--", text], "formula")
    assert len(line) < 400 and "..." in line


# -- functions constant in all but syntax are no candidates ------------------------------------------------

CONSTANT = ["div(x, 0.0)", "div(x, sub(x, x))", "mul(x, 0.0)", "sub(x, x)", "mul(sin(x), 0.0)"]


@pytest.mark.parametrize("text", CONSTANT)
def test_constant_functions_are_rejected_whatever_the_syntax(text):
    tree = parse_tree(text, GRAMMAR, PSET)
    an = analyse(tree_to_sympy(tree, GRAMMAR), GRAMMAR)
    rejection = Acceptance(GRAMMAR).check(tree, an)
    assert rejection is not None and rejection.reason == "constant", (text, an.formula)


@pytest.mark.parametrize("text", ["x", "tanh(x)", "div(x, add(1.0, abs(x)))", "mul(x, 0.001)"])
def test_functions_of_x_are_still_accepted(text):
    tree = parse_tree(text, GRAMMAR, PSET)
    assert Acceptance(GRAMMAR).ok(tree, analyse(tree_to_sympy(tree, GRAMMAR), GRAMMAR))


# -- a poisoned LLM cache: a miss with a note, never a traceback -------------------------------------------

POISON = {
    "oversized": lambda: json.dumps({"content": '["tanh(x)"]', "pad": "x" * 1_100_000}).encode(),
    "nested_100k": lambda: b"[" * 100_000 + b"]" * 100_000,
    "binary": lambda: bytes(range(256)) * 64,
    "not_a_dict": lambda: b'["tanh(x)"]',
    "usage_list": lambda: json.dumps({"content": '["tanh(x)"]', "usage": [1, 2]}).encode(),
    "tokens_infinite": lambda: b'{"content": "[\\"tanh(x)\\"]", "usage": {"total_tokens": Infinity}}',
    "tokens_text": lambda: json.dumps({"content": '["tanh(x)"]', "usage": {"total_tokens": "many"}}).encode(),
    "content_number": lambda: json.dumps({"content": 12345}).encode(),
    "error_list": lambda: json.dumps({"error": ["http_500"]}).encode(),
}


@pytest.mark.parametrize("make", POISON.values(), ids=POISON.keys())
def test_poisoned_llm_cache_entry_is_a_miss_with_a_note(tmp_path, make):
    pytest.importorskip("openai")
    from fake_llm import FakeLLM

    from gpact.search.llm import LLMOperator, Parent

    def parent(text):
        an = analyse(tree_to_sympy(parse_tree(text, GRAMMAR, PSET), GRAMMAR), GRAMMAR)
        return Parent(an.formula, 0.5, an.flops, text)

    server = FakeLLM(default='["tanh(x) + 0.1*sin(x)"]')
    try:
        def crossover(name):
            cfg = LLMConfig(base_url=server.url, model="m", rate=1.0, timeout=2.0)
            op = LLMOperator(cfg, GRAMMAR, PSET, tmp_path / name / "llm_calls.jsonl", random.Random(0),
                             cache_dir=tmp_path / "cache")
            kids = op.crossover(parent("gelu(x)"), parent("sin(x)"), [])
            return kids, json.loads((tmp_path / name / "llm_calls.jsonl").read_text().splitlines()[-1])

        crossover("first")
        (entry,) = (tmp_path / "cache").glob("*.json")
        entry.write_bytes(make())
        t0 = time.perf_counter()
        kids, row = crossover("second")
        assert time.perf_counter() - t0 < FAST
        assert len(server.requests) == 2 and not row["cached"]  # asked again: the poison was a miss
        assert kids and "ignored" in row["cache_note"] and "\n" not in row["cache_note"]
        assert len(entry.read_bytes()) < 10_000  # the fresh answer replaced the poison
    finally:
        server.close()


# -- Ctrl-C before any handler: one line, 130 --------------------------------------------------------------


def test_interrupt_while_the_checkpoint_loads_is_one_line(tmp_path, monkeypatch):
    from gpact.run import checkpoint

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "resume_config", interrupted)
    tmp_path.joinpath("r").mkdir()
    assert refused(["run", "--resume", tmp_path / "r"], status=130) == "gpact: interrupted\n"


SIGNALLERS = {  # python code run before main(): SIGINT at a known point, before any handler of gpact's
    # audit hooks see every import and open, whatever module objects the process ends up with
    "while_importing": "sys.addaudithook(lambda e, a: e == 'import' and a[0] == 'gpact.run.runner' "
                       "and os.kill(os.getpid(), signal.SIGINT))",
    "while_the_checkpoint_loads": "sys.addaudithook(lambda e, a: e == 'open' and str(a[0]).endswith('.json') "
                                  "and os.kill(os.getpid(), signal.SIGINT))",
}


@pytest.mark.parametrize("code", SIGNALLERS.values(), ids=SIGNALLERS.keys())
def test_real_sigint_before_the_handlers_is_one_line_and_130(tmp_path, code):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "checkpoint.json").write_text("{}")
    (run_dir / "config.json").write_text("{}")
    # a shell that starts a job in the background makes it ignore SIGINT, and the ignore is inherited: give the
    # subprocess the Ctrl-C a user's terminal gives (Python's default handler), whoever runs the tests
    script = (f"import os, signal, sys, threading, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
              f"from gpact.cli import main; {code}; "
              f"main(['run', '--resume', {str(run_dir)!r}], prog_name='gpact')")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 130, proc.stderr[-1000:]
    assert proc.stderr == "gpact: interrupted\n" and proc.stdout == ""
    assert time.perf_counter() - t0 < 30  # a fresh interpreter that imports torch on a loaded machine
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.json", "config.json"]  # no lock, no writes


def test_the_command_line_names_every_strategy():
    from gpact.config import STRATEGIES
    from gpact.search.strategy import STRATEGIES as CLASSES

    assert STRATEGIES == tuple(CLASSES)


def test_the_command_line_starts_without_torch():
    """So a Ctrl-C while torch loads lands in gpact's handler, and refusals need not wait for it."""
    code = "import sys, gpact.cli; sys.exit('torch' in sys.modules or 'sympy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=ENV, timeout=60).returncode == 0
