"""`gpact transfer --task digits-shift|chars|length`: the shifts, the models, and the table, with tiny settings.

The default settings (the README's table) take minutes; these run each task through the CLI in seconds.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
from click.testing import CliRunner

from gpact.cli import main
from gpact.errors import ConfigError
from gpact.report.transfer_chars import CharsConfig, docstrings, encode, is_test_module, model_kind
from gpact.report.transfer_chars import prepare as prepare_chars
from gpact.report.transfer_digits import DigitsConfig
from gpact.report.transfer_digits import prepare as prepare_digits
from gpact.report.transfer_length import LengthConfig, sums
from gpact.report.transfer_length import prepare as prepare_length
from gpact.report.transfer_length import train_eval as train_length
from gpact.report.transfer_tasks import run_task, task_config

TINY = {
    "digits-shift": ["--width", "4", "--steps", "4", "--batch", "16", "--set", "check_every=2"],
    "chars": ["--width", "16", "--steps", "3", "--batch", "4", "--set", "context=16", "--set", "layers=1",
              "--set", "train_chars=4000", "--set", "test_chars=512"],
    "length": ["--width", "8", "--steps", "5", "--set", "train_length=3", "--set", "test_length=6",
               "--set", "test_size=48"],
}
CPU = torch.device("cpu")


def _run(args: list[str]):
    return CliRunner().invoke(main, ["transfer", *args], catch_exceptions=False)


def _table(stdout: str) -> dict[str, list[str]]:
    """name -> cells of the plain table's rows."""
    rows = [line.split("  ") for line in stdout.splitlines()[2:] if line and not line.startswith(" ")]
    return {cells[0].strip(): [c.strip() for c in cells if c.strip()] for cells in rows if len(cells) > 3}


@pytest.mark.parametrize("task, metric", [("digits-shift", "accuracy"), ("chars", "bits/char"),
                                          ("length", "accuracy")])
def test_each_task_prints_the_transfer_table(task, metric):
    r = _run(["gmtu", "--task", task, "--seeds", "1", "--device", "cpu", *TINY[task]])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"name  OOD {metric}")
    rows = _table(r.stdout.split("\n\n")[0])
    assert list(rows) == ["gelu", "relu", "gmtu"]
    for cells in rows.values():
        value = float(cells[1].split(" ± ")[0])
        assert (0.0 <= value <= 1.0) if metric == "accuracy" else (0.0 < value < 12.0)
    assert f"{task}: " in r.stdout and "1 seeds" in r.stdout and "device cpu" in r.stdout
    assert f"{task}: 3/3 gmtu seed 0: OOD {metric}" in r.stderr  # progress on stderr


def test_task_table_in_markdown():
    r = _run(["relu", "--task", "length", "--seeds", "2", "--markdown", *TINY["length"]])
    assert r.exit_code == 0 and r.stdout.startswith("| name | OOD accuracy |") and "2 seeds" in r.stdout


def test_runs_are_seeded_and_references_share_inits():
    cfg = task_config("length", width=8, steps=5, train_length=3, test_length=6, test_size=48)
    a = run_task(["relu", "x + 0.1*sin(x)"], "length", seeds=[0, 1], cfg=cfg)
    b = run_task(["x + 0.1*sin(x)"], "length", seeds=[0, 1], cfg=cfg)
    assert [r.label for r in a.rows] == ["gelu", "relu", "x + 0.1*sin(x)"]  # relu is not repeated
    assert a.rows[0].ood == b.rows[0].ood and a.rows[2].id == b.rows[2].id  # same seeds, same numbers


def test_digits_shift_moves_only_the_test_digits():
    d = prepare_digits(DigitsConfig())
    assert d.x_train.shape[1:] == (1, 12, 12) and torch.equal(d.y_id, d.y_ood)
    assert d.x_train.mean().abs() < 1e-4  # standardised with training statistics
    assert not torch.allclose(d.x_id, d.x_ood)  # every test digit moved ...
    assert (d.x_id - d.x_ood).flatten(1).abs().amax(1).min() > 0.1
    border = torch.ones(12, 12, dtype=torch.bool)
    border[2:10, 2:10] = False
    assert torch.all(d.x_train[:, 0, border] == d.x_train[:, 0, border].min())  # ... training digits are centred
    assert (d.x_ood[:, 0, border] > d.x_train.min() + 0.5).any()  # moved ones reach the border
    assert torch.equal(prepare_digits(DigitsConfig()).x_ood, d.x_ood)  # deterministic
    assert not torch.equal(prepare_digits(DigitsConfig(rotate=0, scale=0, shift=0)).x_ood, d.x_ood)


def test_chars_corpus_is_split_by_module(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""Module doc."""\ndef g():\n    """G doc."""\nclass C:\n    """C doc."""\n')
    assert docstrings(f) == "Module doc.\n\nG doc.\n\nC doc."
    (tmp_path / "bad.py").write_text("def (:\n")
    assert docstrings(tmp_path / "bad.py") == ""
    assert encode("a\n\t").tolist() == [ord("a") - 32, 95, 96]
    names = ["os", "re", "json", "typing", "abc", "ast", "csv", "glob", "heapq", "shutil"]
    assert {is_test_module(n) for n in names} == {True, False}
    cfg = CharsConfig(train_chars=20_000, test_chars=1_000)
    d = prepare_chars(cfg)
    assert len(d.train) == 18_000 and len(d.id_test) == 1_000 and len(d.ood_test) == 1_000
    assert d.modules[0] > 0 and d.modules[1] > 0 and int(d.train.max()) < 97


def test_chars_without_transformers_uses_the_minimal_gpt(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an import of a missing package does
    assert model_kind(CharsConfig()) == "minimal"
    r = _run(["relu", "--task", "chars", "--seeds", "1", *TINY["chars"]])
    assert r.exit_code == 0 and "minimal width 16" in r.stdout


def test_length_sums_are_right():
    x, y = sums(5, 4, 10, torch.Generator().manual_seed(0))
    for xi, yi in zip(x, y, strict=True):
        a = sum(int(xi[i, :10].argmax()) * 10**i for i in range(4))
        b = sum(int(xi[i, 10:].argmax()) * 10**i for i in range(4))
        assert sum(int(d) * 10**i for i, d in enumerate(yi)) == a + b
    assert torch.all(x[:, 4] == 0)  # the carry step has no input
    data = prepare_length(LengthConfig(train_length=3, test_length=6, test_size=48))
    assert {t.shape[1] for t, _ in data.ood_test} == {5, 6, 7} and {t.shape[1] for t, _ in data.id_test} == {2, 3, 4}
    nan = train_length(lambda z: z * float("nan"), data, 0, LengthConfig(width=4, steps=2), CPU)
    assert all(math.isnan(v) for v in nan)


@pytest.mark.parametrize("args, message", [
    (["relu", "--task", "mnist"], "unknown task 'mnist'"),
    (["relu", "--task", "length", "--dataset", "wine"], "not both"),
    (["relu"], "give --dataset"),
    (["relu", "--task", "length", "--set", "nope=1"], "KEY one of"),
    (["relu", "--task", "length", "--set", "width=wide"], "width takes a int"),
    (["relu", "--task", "length", "--steps", "0"], "steps must be > 0"),
    (["relu", "--task", "length", "--set", "test_length=2"], "test_length must be above"),
    (["relu", "--task", "chars", "--set", "model=bert"], "unknown model 'bert'"),
    (["relu", "--task", "length", "--depth", "3"], "--depth is for --dataset"),
    (["relu", "--dataset", "wine", "--batch", "3"], "are for --task"),
    (["foo(x)", "--task", "length"], "formula 'foo(x)'"),
])
def test_bad_input_is_one_line(args, message):
    r = CliRunner().invoke(main, ["transfer", *args, "--seeds", "1"])
    assert r.exit_code == 2 and message in r.output and r.output.startswith("gpact: ")
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_device_is_one_line():
    r = CliRunner().invoke(main, ["transfer", "relu", "--task", "length", "--device", "cuda"])
    assert r.exit_code == 2 and "torch sees no CUDA device" in r.output


def test_task_config_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="has no option depth"):
        task_config("digits-shift", depth=3)
