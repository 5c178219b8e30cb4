"""`gpact run --trainable-constants` on the default grammar, and killed with SIGKILL mid-generation: it resumes to the
uninterrupted run's front and records, learned constants included (a real subprocess, the real command line)."""

import json
import signal

from click.testing import CliRunner
from test_cli_runs import _generation, _same_front, _start_paused

from gpact.cli import main

TINY = ["--grammar", "minimal", "--generations", "2", "--population", "8", "--seed", "1", "--tasks", "smoke",
        "--train-seeds", "2", "--race-start", "1", "--race-eta", "2", "--steps", "6", "--width", "4",
        "--validation", "", "--test", "", "--evaluator", "batched", "--device", "cpu",
        "--trainable-constants", "--const-lr", "0.05"]


def test_sigkill_then_resume_with_trainable_constants_gives_the_uninterrupted_run(tmp_path):
    ref = CliRunner().invoke(main, ["run", *TINY, "--out", str(tmp_path), "--run-id", "ref"])
    assert ref.exit_code == 0, ref.output
    records = [json.loads(line) for line in (tmp_path / "ref" / "candidates.jsonl").read_text().splitlines()]
    moved = [r["generation"] for r in records if any(c["median"] != c["start"] for c in r["constants"] or [])]
    assert 2 in moved, "generation 2 (the one killed and resumed) trains constants away from their start"

    proc, _, run_dir = _start_paused(tmp_path, generation=2, args=TINY)
    assert _generation(run_dir) == 2  # generations 0 and 1 are checkpointed; 2 is under way
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "resumed at generation 2" in res.output
    _same_front(run_dir, tmp_path / "ref")  # pareto.csv and candidates.jsonl (learned constants) byte for byte
    assert json.loads((run_dir / "config.json").read_text())["train"]["const_lr"] == 0.05


def test_the_default_grammar_seeds_its_known_activations_with_their_numbers_fixed(tmp_path):
    """The seeds (`max(x, 0)`: 0 is no constant of grammar full) keep their numbers fixed; the draws are p(c)."""
    res = CliRunner().invoke(main, ["run", "--trainable-constants", "--population", "24", "--generations", "0",
                                    "--tasks", "smoke", "--train-seeds", "1", "--race-eta", "1", "--steps", "3",
                                    "--width", "4", "--validation", "", "--test", "", "--evaluator", "batched",
                                    "--device", "cpu", "--out", str(tmp_path), "--run-id", "r"])
    assert res.exit_code == 0, res.output
    population = [ind["tree"] for ind in json.loads((tmp_path / "r" / "checkpoint.json").read_text())["population"]]
    assert "max(x, 0.0)" in population  # the seed ReLU, its 0 fixed
    trees = [json.loads(line)["tree"] for line in (tmp_path / "r" / "candidates.jsonl").read_text().splitlines()]
    assert any("p(" in t for t in trees)  # random trees draw trainable constants
