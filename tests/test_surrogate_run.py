"""`gpact run --strategy surrogate`: a real run over a template space writes the usual run folder, starts from
the known activations, caches its features, and resumes after kill -9 to the uninterrupted run's front."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli_runs import ENV, HOOK, _wait_for

from gpact.expr.fingerprint import fingerprint
from gpact.expr.grammar import load_grammar
from gpact.expr.trees import formula_to_sympy

GRAMMAR = str(Path(__file__).resolve().parent / "data" / "tiny_space.yaml")
ARGS = ["run", "--strategy", "surrogate", "--grammar", GRAMMAR, "--max-evals", "12", "--population", "4",
        "--seed", "1", "--tasks", "smoke", "--train-seeds", "1", "--steps", "5", "--width", "4", "--validation", "",
        "--test", "", "--evaluator", "reference"]


def _gpact(*args, timeout=300):
    res = subprocess.run([sys.executable, "-m", "gpact", *args], capture_output=True, text=True, env=ENV,
                         timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    stdout = _gpact(*ARGS, "--out", str(out), "--run-id", "ref")
    return out / "ref", stdout


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()]


def test_surrogate_run_trains_known_activations_first_then_predicted_batches(reference):
    run_dir, stdout = reference
    rows = _rows(run_dir)
    assert len(rows) == 12 and len({r["key"] for r in rows}) == 12
    first = {r["formula"] for r in rows if r["generation"] == 0}
    assert {"tanh(x)", "relu(x)"} <= first  # known activations, found in the space under their template names
    assert sorted({r["generation"] for r in rows}) == [0, 1, 2]
    assert "gen   2/" in stdout and "stopped by max evals" in stdout and (run_dir / "pareto.csv").exists()
    feats = {p.name: np.load(p) for p in run_dir.glob("features-*.npz")}
    assert set(feats) == {"features-outputs.npz"}  # the default k-NN reads no Fisher spectra, so none are made
    g = load_grammar(GRAMMAR)  # features are keyed by the fingerprint of the tree as written (records: simplified)
    written = {fingerprint(formula_to_sympy(r["tree"], g), g) for r in rows}
    assert written <= set(feats["features-outputs.npz"]["keys"].tolist())
    assert json.loads((run_dir / "config.json").read_text())["strategy"] == "surrogate"


def test_surrogate_run_killed_mid_generation_resumes_to_the_same_front(tmp_path, reference):
    ref_dir, _ = reference
    marker = tmp_path / "marker"
    marker.mkdir()
    out, err = open(tmp_path / "stdout", "w"), open(tmp_path / "stderr", "w")
    proc = subprocess.Popen([sys.executable, str(HOOK), "2", str(marker), *ARGS, "--out", str(tmp_path),
                             "--run-id", "k"], stdout=out, stderr=err, env=ENV)
    _wait_for(lambda: (marker / "paused").exists(), proc, tmp_path)
    run_dir = tmp_path / "k"
    assert json.loads((run_dir / "checkpoint.json").read_text())["generation"] == 2
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    stdout = _gpact("run", "--resume", str(run_dir))
    assert "resumed at generation 2" in stdout
    assert (run_dir / "pareto.csv").read_bytes() == (ref_dir / "pareto.csv").read_bytes()
    assert (run_dir / "candidates.jsonl").read_bytes() == (ref_dir / "candidates.jsonl").read_bytes()
