"""End to end through the console entry point, as a user runs it."""

import csv
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from gpact.cli import main

TINY = ["run", "--grammar", "minimal", "--generations", "2", "--population", "8", "--seed", "1", "--tasks", "smoke",
        "--train-seeds", "1", "--steps", "30", "--width", "8", "--validation", "validation:2", "--test", "test:2"]


def test_run_writes_the_run_folder_and_is_reproducible(tmp_path):
    runner = CliRunner()
    outs = []
    for run_id in ("a", "b"):
        res = runner.invoke(main, [*TINY, "--out", str(tmp_path), "--run-id", run_id])
        assert res.exit_code == 0, res.output
        outs.append(tmp_path / run_id)
    out = res.output
    assert "gen   0/2" in out and "gen   2/2" in out and "Pareto front" in out and "vs GELU" in out
    a, b = (p / "pareto.csv" for p in outs)
    assert a.read_bytes() == b.read_bytes()
    rows = list(csv.DictReader(a.open()))
    assert rows and [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    scores = [float(r["ood_score"]) for r in rows]
    assert scores == sorted(scores)
    for name in ("config.json", "candidates.jsonl", "generations.jsonl", "grammar.yaml", "summary.json"):
        assert (outs[0] / name).exists(), name
    cfg = json.loads((outs[0] / "config.json").read_text())
    assert cfg["grammar"] == "minimal" and cfg["train"]["steps"] == 30
    candidates = [json.loads(line) for line in (outs[0] / "candidates.jsonl").read_text().splitlines()]
    assert len({c["key"] for c in candidates}) == len(candidates)  # every function trained once


def test_existing_run_folder_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    res = CliRunner().invoke(main, [*TINY, "--out", str(tmp_path), "--run-id", "x"])
    assert res.exit_code == 2 and "already exists" in res.output
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("body, needle", [
    (None, "not found"),
    ("primitives:\n  add: {arity: 2, sympy: 'a + b', bogus: 1}\n", "unknown key 'bogus'"),
    ("primitives:\n  add: {arity: 2, sympy: 'a + b'}\n  f: {arity: 1, sympy: 'gamma(a)'}\n", "primitive 'f'"),
    ("primitives:\n  f: {arity: 1, sympy: 'a * b'}\n", "arity 1 allows only a"),
    ("primitives:\n  f: {arity: 1, sympy: 'a +'}\n", "cannot parse"),
])
def test_bad_grammar_is_one_line_exit_2_no_traceback(tmp_path, body, needle):
    path = tmp_path / "bad.yaml"
    if body is not None:
        path.write_text(body)
    proc = subprocess.run([sys.executable, "-m", "gpact", "run", "--grammar", str(path), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0]


def test_run_accepts_library_tasks_and_random_draws(tmp_path):
    args = ["run", "--grammar", "minimal", "--generations", "1", "--population", "4", "--seed", "1",
            "--tasks", "random:2@3,feynman/I.12.4", "--train-seeds", "1", "--steps", "20", "--width", "8",
            "--validation", "", "--test", "", "--out", str(tmp_path), "--run-id", "lib"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "lib" / "config.json").read_text())
    assert config["tasks"] == "random:2@3,feynman/I.12.4"
    tasks = {t for rec in map(json.loads, (tmp_path / "lib" / "candidates.jsonl").read_text().splitlines())
             for t in rec["per_task"]}
    assert "feynman/I.12.4" in tasks and len(tasks) == 3
