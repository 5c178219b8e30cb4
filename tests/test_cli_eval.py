"""`gpact eval`, `baselines`, `enumerate` and `transfer` end to end through click, with tiny settings."""

from click.testing import CliRunner

from gpact.cli import main

TINY = ["--tasks", "poly_cubic", "--seeds", "2", "--width", "8", "--steps", "20"]


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_eval_prints_table_against_gelu(tmp_path):
    csv = tmp_path / "scores.csv"
    r = _run(["eval", "gelu(x) + 0.1*sin(x)", "gmtu", *TINY, "--csv", str(csv), "--per-task"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()  # progress lines go to stderr
    assert lines[0].split()[:4] == ["name", "FLOPs", "OOD", "score"]
    assert any(line.startswith("gelu (ref)") for line in lines)
    assert any(line.startswith("gmtu ") and "tanh(1.5*x)" in line for line in lines)
    assert "relative to gelu" in r.output
    assert csv.read_text().startswith("name,formula,flops,ood_score")


def test_eval_bad_formulas_are_one_line_errors():
    for bad, msg in [("foo(x)", "'foo' is not a primitive"), ("x +* 2", "cannot parse"), ("sin(x, x)", "argument")]:
        r = CliRunner().invoke(main, ["eval", bad, *TINY])
        assert r.exit_code == 2
        assert r.output.count("\n") == 1 and r.output.startswith("gpact: error: formula") and msg in r.output
    assert CliRunner().invoke(main, ["eval", *TINY]).exit_code == 2  # no formulas: usage error


def test_baselines_subset_sorted():
    r = _run(["baselines", "--only", "relu,gelu_sine", *TINY, "--markdown"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("| name | FLOPs | OOD score |") and "seed 2/2 done" in r.stderr
    assert "gelu (ref)" in r.output and "relu" in r.output and "gelu_sine" in r.output
    r = CliRunner().invoke(main, ["baselines", "--only", "nope", *TINY])
    assert r.exit_code == 2 and "unknown baseline 'nope'" in r.output


def test_enumerate_counts_and_writes_formulas_that_eval_reads(tmp_path):
    out = tmp_path / "unit.txt"
    r = _run(["enumerate", "--grammar", "aquasurf", "--points", "500", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "5,103 names" in r.output and "distinct functions" in r.output
    formulas = out.read_text().splitlines()
    assert f"wrote {len(formulas)} formulas" in r.output and 2700 < len(formulas) < 3200
    few = tmp_path / "few.txt"
    few.write_text("# two of them\n" + "\n".join(formulas[100:102]) + "\n")
    r = _run(["eval", "--grammar", "aquasurf", "-f", str(few), *TINY])
    assert r.exit_code == 0, r.output
    assert formulas[100] in r.output
    r = CliRunner().invoke(main, ["enumerate", "--grammar", "swish"])
    assert r.exit_code == 2 and "--template" in r.output


def test_transfer_command():
    r = _run(["transfer", "gmtu", "--dataset", "wine,diabetes", "--seeds", "2", "--width", "8", "--steps", "20"])
    assert r.exit_code == 0, r.output
    assert "OOD accuracy" in r.output and "OOD mse" in r.output
    assert r.output.count("\ngelu ") == 2 and r.output.count("\nrelu ") == 2
    r = CliRunner().invoke(main, ["transfer", "relu", "--dataset", "mnist"])
    assert r.exit_code == 2 and "unknown dataset" in r.output
