"""`--const-lr`, the learning rate of trainable constants p(c), through the command line: at 0 a run with
`--trainable-constants` trains every function exactly as the run with fixed constants does, and a bad
value is a one-line error."""

import json
import re

import pytest
from click.testing import CliRunner

from gpact.cli import main

# generation 0 of seed 1 draws two functions with one trainable constant each (gelu(p(-0.3)*x), relu(...))
RUN = ["run", "--grammar", "minimal", "--population", "8", "--generations", "0", "--seed", "1", "--tasks", "smoke",
       "--train-seeds", "2", "--race-eta", "1", "--steps", "8", "--width", "4", "--validation", "", "--test", "",
       "--evaluator", "batched", "--device", "cpu"]
EVAL = ["eval", "x*sigmoid(p(1.702)*x)", "--tasks", "smoke", "--seeds", "1", "--steps", "5", "--width", "4",
        "--evaluator", "batched", "--device", "cpu"]


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()]


def test_zero_const_lr_run_trains_each_function_as_the_fixed_run_bit_for_bit(tmp_path):
    fixed = CliRunner().invoke(main, [*RUN, "--out", str(tmp_path), "--run-id", "fixed"])
    assert fixed.exit_code == 0, fixed.output
    zero = CliRunner().invoke(main, [*RUN, "--trainable-constants", "--const-lr", "0", "--out", str(tmp_path),
                                     "--run-id", "zero"])
    assert zero.exit_code == 0, zero.output
    assert json.loads((tmp_path / "zero" / "config.json").read_text())["train"]["const_lr"] == 0.0

    want, got = _records(tmp_path / "fixed"), _records(tmp_path / "zero")
    # the same trees are drawn; the trainable run spells its ephemeral constants p(c)
    assert [r["tree"] for r in want] == [re.sub(r"\bp\(([-\d.e]+)\)", r"\1", r["tree"]) for r in got]
    single = 0
    for w, g in zip(want, got, strict=True):
        if "p(" not in g["tree"]:
            assert g["per_run"] == w["per_run"], g["tree"]
            continue
        for c in g["constants"]:  # at rate 0 nothing moved: every layer of every network holds the start value
            assert all(x["lo"] == x["median"] == x["hi"] == pytest.approx(c["start"], rel=1e-6) for x in c["layers"])
        if len(g["constants"]) == 1 and not re.search(r"\d", re.sub(r"\bp\([^)]*\)", "", g["tree"])):
            # one trainable constant standing for one fixed one (no other number sympy could fold it with)
            assert (g["per_run"], g["ood_score"], g["id_loss"]) == (w["per_run"], w["ood_score"], w["id_loss"])
            single += 1
    assert single >= 1, [r["tree"] for r in got]


def test_const_lr_reaches_the_networks_through_eval(tmp_path):
    """`gpact eval --const-lr 0` keeps p(c) at its start; the default (the network's lr) moves it."""
    still = CliRunner().invoke(main, [*EVAL, "--const-lr", "0"])
    assert still.exit_code == 0, still.output
    assert "constant 0 starts 1.702, learned layer 1 1.702 [1.7, 1.7], layer 2 1.702 [1.7, 1.7]" in still.output
    moved = CliRunner().invoke(main, [*EVAL, "--const-lr", "0.05"])
    assert moved.exit_code == 0, moved.output
    line = next(x for x in moved.output.splitlines() if "constant 0 starts 1.702" in x)
    assert "learned layer 1 1.702 [1.7, 1.7]" not in line and "layer 2 1.702 [1.7, 1.7]" not in line


@pytest.mark.parametrize("args, needle", [
    ([*EVAL, "--const-lr", "-0.01"], "const_lr (--const-lr) must be a number >= 0"),
    ([*EVAL, "--const-lr", "nan"], "const_lr (--const-lr) must be a number >= 0"),
    ([*RUN, "--trainable-constants", "--const-lr", "-1"], "const_lr (--const-lr) must be a number >= 0"),
    ([*RUN, "--const-lr", "0.01"], "give it with --trainable-constants"),
])
def test_a_bad_const_lr_is_a_one_line_error(tmp_path, args, needle):
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path)] if args[0] == "run" else args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpact: error: ") and needle in lines[0], res.output
    assert not list(tmp_path.iterdir())  # refused before any run folder was made


def test_baselines_show_fixed_against_trainable_and_at_rate_0_they_are_the_same_function(tmp_path):
    """`gpact baselines` lists xIELU and xIPReLU fixed and trainable; the trainable forms start at the published
    a_p = a_n = 0.8, so at --const-lr 0 they score as the fixed forms (softplus rounds 0.8 in float32)."""
    import csv

    path = tmp_path / "b.csv"
    res = CliRunner().invoke(main, ["baselines", "--only", "xielu,xielu_trainable,xiprelu,xiprelu_trainable",
                                    "--tasks", "smoke", "--seeds", "1", "--steps", "5", "--width", "4", "--device",
                                    "cpu", "--const-lr", "0", "--csv", str(path)])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in csv.DictReader(path.read_text().splitlines())}
    for name in ("xielu", "xiprelu"):
        fixed, trained = rows[name], rows[f"{name}_trainable"]
        assert re.search(r"\bp\(", trained["formula"]) and not re.search(r"\bp\(", fixed["formula"])
        for key in ("ood_score", "id_loss", "poly_cubic", "harmonic_2"):
            assert float(trained[key]) == pytest.approx(float(fixed[key]), rel=1e-4), (name, key)
    assert "xielu_trainable: constant 0 starts -1.05, learned layer 1 -1.05 [-1.05, -1.05]" in res.output
