"""Leave-one-family-out table (`gpact crossval`): the task draw, the ratios, failures, and the command."""

import math

import pytest
from click.testing import CliRunner

from gpact.cli import main
from gpact.config import TrainConfig
from gpact.errors import ConfigError
from gpact.train import crossval as cv
from gpact.train.crossval import crossval, draw_tasks
from gpact.train.fitness import WORST, Fitness
from gpact.train.library import unit_names
from gpact.train.objective import FAIL_LOG_RATIO
from gpact.train.objective import log_ratio as network_log_ratio

TINY = TrainConfig(width=8, depth=2, steps=30)


def test_task_draw_is_seeded_and_per_family():
    a = draw_tasks(["rational", "feynman-III"], 3, task_seed=0)
    assert a == draw_tasks(["rational", "feynman-III"], 3, task_seed=0)
    assert a != draw_tasks(["rational", "feynman-III"], 3, task_seed=1)
    assert all(n.startswith("rational/") for n in a["rational"]) and len(set(a["rational"])) == 3
    assert set(a["feynman-III"]) <= set(unit_names("feynman-III")) and len(set(a["feynman-III"])) == 3
    # a family's draw does not depend on which other families are asked for
    assert draw_tasks(["damped", "rational"], 3)["rational"] == a["rational"]
    assert len(draw_tasks(["feynman-III"], 99)["feynman-III"]) == len(unit_names("feynman-III"))
    with pytest.raises(ConfigError, match="unknown family nope"):
        draw_tasks(["rational", "nope"], 3)


def test_network_log_ratio_failures():
    assert network_log_ratio(2.0, 1.0) == pytest.approx(math.log(2))
    assert network_log_ratio(WORST, 1.0) == FAIL_LOG_RATIO  # a failed network: as bad as it gets
    assert network_log_ratio(0.5, WORST) == 0.0  # GELU failed: no yardstick, a tie
    assert network_log_ratio(WORST, WORST) == FAIL_LOG_RATIO


def test_failure_counts_as_worst(monkeypatch):
    """A formula whose networks fail on two of three seeds gets the failure ratio there: its worst family."""

    def fake(exprs, grammar, tasks, seeds, cfg, evaluator, device):
        fits = []
        for i, _ in enumerate(exprs):
            per_task = {t.spec.name: (WORST if i == 1 and seeds[0] < 2 and t.spec.family == "damped" else 1.0)
                        for t in tasks}
            fits.append(Fitness(1.0, 1.0, per_task, 0))
        return fits

    monkeypatch.setattr(cv, "evaluate_population", fake)
    table = crossval(["gelu", "relu"], units=["rational", "damped"], per_family=2, seeds=3, cfg=TINY)
    relu = table.rows[1]
    assert relu.cells["damped"].median == pytest.approx(math.exp(FAIL_LOG_RATIO))
    assert relu.cells["damped"].lo == 1.0 and relu.cells["rational"].hi == 1.0
    assert relu.worst == "damped" and relu.failed == 4  # 2 damped tasks x 2 seeds
    assert relu.overall.median == pytest.approx(math.exp(FAIL_LOG_RATIO / 2))  # mean over the two families
    assert all(s.median == 1.0 for s in table.rows[0].cells.values())


def test_gelu_row_is_one_and_a_bad_formula_is_worse():
    table = crossval(["x*x*x*x", "gelu"], units=["rational", "damped"], per_family=1, seeds=2, cfg=TINY)
    assert [r.label for r in table.rows] == ["x*x*x*x", "gelu"]  # gelu given: not added a second time
    gelu, bad = table.rows[1], table.rows[0]
    assert gelu.is_reference and not bad.is_reference
    assert all(s.median == s.lo == s.hi == 1.0 for s in [*gelu.cells.values(), gelu.overall])
    assert max(s.median for s in bad.cells.values()) > 1.0 and bad.overall.median > 1.0


def _run(args):
    return CliRunner().invoke(main, ["crossval", *args])


def test_cli_prints_the_table(tmp_path):
    csv = tmp_path / "cv.csv"
    r = _run(["relu", "gelu(x) + 0.1*sin(x)", "--steps", "5", "--width", "4", "--per-family", "1", "--seeds", "2",
              "--families", "rational,damped", "--csv", str(csv)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Leave-one-family-out: OOD loss ratio to gelu trained on the same tasks and seeds")
    assert "never used for selection" in r.stdout
    head = next(line for line in lines if line.startswith("family"))
    assert head.split()[:4] == ["family", "gelu", "(ref)", "relu"]
    rows = {line.split()[0] for line in lines[lines.index(head) + 2:] if line.strip()}
    assert {"rational*", "damped*", "overall", "worst", "failed"} <= rows
    assert "seed 2/2 done" in r.stderr
    assert csv.read_text().startswith("name,formula,family,seed,log_ratio,ratio,tasks\ngelu,gelu(x),rational,0,0,1,")


@pytest.mark.parametrize("args, msg", [
    (["relu", "--families", "rational,nope"], "unknown family nope"),
    (["foo(x)"], "formula 'foo(x)'"),
])
def test_cli_bad_input_is_one_line(args, msg):
    r = _run([*args, "--steps", "5", "--width", "4", "--per-family", "1", "--seeds", "1"])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and r.output.startswith("gpact: error:") and msg in r.output
