"""Runs you can trust: killed, interrupted and resumed runs end with the uninterrupted run's front; show,
list and export read a run folder back. Real subprocesses and signals, through the command line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpact.cli import main

ROOT = Path(__file__).resolve().parent.parent
HOOK = Path(__file__).resolve().parent / "hooked_run.py"
# racing on (4 networks: stages of 1, 2 and 4), so every kill and resume below goes through its stages too
TINY = ["--grammar", "minimal", "--generations", "3", "--population", "8", "--seed", "1", "--tasks", "smoke",
        "--train-seeds", "2", "--race-start", "1", "--race-eta", "2", "--steps", "5", "--width", "4",
        "--validation", "", "--test", "", "--evaluator", "reference"]
# one torch thread everywhere: thread counts can change float sums, and these tests compare bytes
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def reference(cli_run):
    """The uninterrupted run every other run here must reproduce."""
    return cli_run(TINY)


def _start_paused(tmp_path, generation, run_id="hooked", args=TINY):
    """A real `gpact run ARGS` subprocess that pauses while evaluating `generation` (see hooked_run.py)."""
    marker = tmp_path / "marker"
    marker.mkdir()
    out, err = open(tmp_path / "stdout", "w"), open(tmp_path / "stderr", "w")
    proc = subprocess.Popen([sys.executable, str(HOOK), str(generation), str(marker), "run", *args,
                             "--out", str(tmp_path), "--run-id", run_id], stdout=out, stderr=err, env=ENV)
    _wait_for(lambda: (marker / "paused").exists(), proc, tmp_path)
    return proc, marker, tmp_path / run_id


def _wait_for(condition, proc, tmp_path, limit=240.0):
    """Poll until `condition()`; fail with the process's output if it exits first or never gets there."""
    deadline = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"subprocess did not get there (rc {proc.poll()}):\n{(tmp_path / 'stdout').read_text()}\n"
                        f"{(tmp_path / 'stderr').read_text()}")
        time.sleep(0.05)


def _generation(run_dir):
    return json.loads((run_dir / "checkpoint.json").read_text())["generation"]


def _same_front(run_dir, reference):
    assert (run_dir / "pareto.csv").read_bytes() == (reference / "pareto.csv").read_bytes()
    # every function trained once, in the same order, with the same numbers
    assert (run_dir / "candidates.jsonl").read_bytes() == (reference / "candidates.jsonl").read_bytes()


def test_sigkill_mid_generation_then_resume_gives_the_uninterrupted_front(tmp_path, reference):
    proc, _, run_dir = _start_paused(tmp_path, generation=2)
    assert _generation(run_dir) == 2  # generations 0 and 1 are checkpointed; 2 is under way
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()
    shown = CliRunner().invoke(main, ["show", str(run_dir), "--no-plots"])
    assert "status      incomplete (generation 1/3)" in shown.output and "references  gelu(x)" in shown.output
    assert f"resume: gpact run --resume {run_dir}" in shown.output

    res = subprocess.run([sys.executable, "-m", "gpact", "run", "--resume", str(run_dir)], capture_output=True,
                         text=True, env=ENV, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resumed at generation 2" in res.stdout and "gen   2/3" in res.stdout and "gen   1/3" not in res.stdout
    _same_front(run_dir, reference)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"


def test_sigint_finishes_the_generation_checkpoints_and_exits_130(tmp_path, reference):
    proc, marker, run_dir = _start_paused(tmp_path, generation=1)
    proc.send_signal(signal.SIGINT)
    _wait_for(lambda: "finishing this generation" in (tmp_path / "stderr").read_text(), proc, tmp_path)
    (marker / "go").write_text("go")
    assert proc.wait(timeout=120) == 130
    out = (tmp_path / "stdout").read_text()
    assert "gen   1/3" in out and "gen   2/3" not in out  # generation 1 was finished, no new one started
    assert f"checkpoint {run_dir / 'checkpoint.json'}" in out and f"front {run_dir / 'pareto.csv'}" in out
    assert "Traceback" not in (tmp_path / "stderr").read_text()
    assert _generation(run_dir) == 2
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted: SIGINT"

    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 0, res.output
    _same_front(run_dir, reference)


def test_second_sigterm_abandons_the_generation_and_exits_143(tmp_path, reference):
    proc, _, run_dir = _start_paused(tmp_path, generation=1)
    proc.send_signal(signal.SIGTERM)
    _wait_for(lambda: "finishing this generation" in (tmp_path / "stderr").read_text(), proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert "abandoning this generation" in (tmp_path / "stderr").read_text()
    assert "Traceback" not in (tmp_path / "stderr").read_text()
    assert _generation(run_dir) == 1  # the abandoned generation left no trace but log-free work
    gens = {json.loads(line)["generation"] for line in (run_dir / "candidates.jsonl").read_text().splitlines()}
    assert gens == {0}
    assert "continue with: gpact run --resume" in (tmp_path / "stdout").read_text()

    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 0, res.output
    _same_front(run_dir, reference)


def test_resume_with_a_changed_config_is_refused_naming_each_key(reference):
    res = CliRunner().invoke(main, ["run", "--resume", str(reference), "--seed", "2", "--steps", "9",
                                    "--generations", "5"])
    assert res.exit_code == 2
    line = res.output.strip()
    assert line.startswith("gpact: error: cannot resume") and "\n" not in line
    assert "seed: run 1, now 2" in line and "train.steps: run 5, now 9" in line and "generations" not in line.split(
        "(only")[0]


def test_max_evals_stops_at_a_generation_boundary_and_resume_goes_on(tmp_path, reference):
    runner = CliRunner()
    res = runner.invoke(main, ["run", *TINY, "--max-evals", "1", "--out", str(tmp_path), "--run-id", "m"])
    assert res.exit_code == 0, res.output
    assert "gen   0/3" in res.output and "gen   1/3" not in res.output and "stopped by max evals" in res.output
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["status"] == "stopped: max evals" and summary["generations"] == 0
    res = runner.invoke(main, ["run", "--resume", str(tmp_path / "m"), "--max-evals", "0", "--time-limit", "1h"])
    assert res.exit_code == 0, res.output
    _same_front(tmp_path / "m", reference)


def test_time_limit_stops_at_a_generation_boundary(tmp_path):
    res = CliRunner().invoke(main, ["run", *TINY, "--time-limit", "0.001s", "--out", str(tmp_path), "--run-id", "t"])
    assert res.exit_code == 0, res.output
    assert "gen   0/3" in res.output and "gen   1/3" not in res.output  # generation 0 always runs
    assert "stopped by time limit after generation 0/3; continue with: gpact run --resume" in res.output
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["status"] == "stopped: time limit"
    res = CliRunner().invoke(main, ["run", *TINY, "--time-limit", "soon", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "cannot read time limit 'soon'" in res.output


def test_show_list_and_export(tmp_path, reference):
    runner = CliRunner()
    res = runner.invoke(main, ["show", str(reference)])
    assert res.exit_code == 0, res.output
    assert "status      complete (generation 3/3)" in res.output and "Pareto front" in res.output
    assert f"plots: {reference / 'pareto.png'}, {reference / 'curves.png'}" in res.output
    assert (reference / "pareto.png").stat().st_size > 10_000

    res = runner.invoke(main, ["list", str(reference.parent)])
    assert res.exit_code == 0, res.output
    header, _, row = res.output.splitlines()[:3]
    assert header.split()[:4] == ["run", "started", "grammar", "generations"]
    assert row.split()[0] == "ref" and "minimal" in row and "3/3" in row and row.rstrip().endswith("complete")
    assert json.loads((reference / "summary.json").read_text())["recommended"]["formula"] in row

    target = tmp_path / "act.py"
    res = runner.invoke(main, ["export", str(reference), "--rank", "1", "--format", "torch", "--out", str(target)])
    assert res.exit_code == 0, res.output
    assert "class Activation(nn.Module)" in target.read_text()
    res = runner.invoke(main, ["export", str(reference), "--rank", "1", "--format", "latex"])
    assert res.exit_code == 0 and res.output.strip()
    res = runner.invoke(main, ["export", str(reference), "--rank", "99"])
    assert res.exit_code == 2 and "no rank 99" in res.output
