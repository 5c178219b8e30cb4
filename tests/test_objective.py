import math

import pytest
from scipy import stats

from gpact.errors import ConfigError
from gpact.train.objective import FAIL_LOG_RATIO, cvar, log_ratio, spearman, tail_score
from gpact.train.reference import WORST


def _r(ood: float, failed: bool = False) -> float:
    return WORST if failed else ood


GELU = {f"t{i}": _r(1.0) for i in range(8)}


def test_equal_to_gelu_scores_zero():
    s = tail_score(dict(GELU), GELU)
    assert s.score == 0.0 and s.vs_gelu == 1.0 and s.failed == 0 and s.n == 8


def test_one_catastrophic_task_counts_through_the_tail():
    """Seven tasks at half GELU's loss and one at 100x: the geometric mean says "better than GELU",
    the tail term does not let the catastrophe hide."""
    cand = {k: _r(0.5) for k in GELU} | {"t7": _r(100.0)}
    s = tail_score(cand, GELU, tail=0.25)
    geo_mean = math.exp(s.mean)
    assert geo_mean < 1.0  # what the old aggregate would have rewarded
    assert s.cvar == pytest.approx((math.log(100) + math.log(0.5)) / 2)
    assert s.score > 0 and s.vs_gelu > 1.0
    uniform = tail_score({k: _r(0.9) for k in GELU}, GELU)
    assert uniform.score < s.score  # steady and slightly better beats brilliant-but-fragile


def test_failures_are_worst():
    trained_badly = tail_score({k: _r(1e4) for k in GELU}, GELU)
    one_failure = tail_score({k: _r(0.5) for k in GELU} | {"t0": _r(0, failed=True)}, GELU)
    assert log_ratio(_r(0, failed=True), _r(1.0)) == FAIL_LOG_RATIO
    assert one_failure.failed == 1 and one_failure.cvar > math.log(1e4) / 2
    assert tail_score({k: _r(0, failed=True) for k in GELU}, GELU).score > trained_badly.score


def test_a_failed_gelu_network_is_no_yardstick():
    ref = dict(GELU) | {"t0": _r(0, failed=True)}
    assert log_ratio(_r(0.3), ref["t0"]) == 0.0
    assert log_ratio(_r(0, failed=True), ref["t0"]) == FAIL_LOG_RATIO


def test_cvar_and_errors():
    assert cvar([1, 2, 3, 4], 0.25) == 4 and cvar([1, 2, 3, 4], 0.5) == 3.5 and cvar([5], 0.1) == 5
    with pytest.raises(ConfigError):
        cvar([], 0.5)
    with pytest.raises(ConfigError):
        cvar([1.0], 0.0)
    with pytest.raises(ConfigError, match="no GELU reference"):
        tail_score({"other": _r(1.0)}, GELU)


def test_spearman_matches_scipy_with_ties():
    x = [0.3, 1.2, 1.2, 5.0, -2.0, 0.3, 7.0]
    y = [1.0, 2.0, 3.0, 3.0, 0.5, 0.2, 9.0]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_the_tail_is_over_tasks_not_networks():
    """One lucky and one unlucky seed on a task average out: the tail measures tasks, not initialisations
    (which GELU, paired with itself, would never pay)."""
    ref = {"a#0": 1.0, "a#1": 1.0, "b#0": 1.0, "b#1": 1.0}
    s = tail_score({"a#0": 4.0, "a#1": 0.25, "b#0": 1.0, "b#1": 1.0}, ref, tail=0.5)
    assert s.score == pytest.approx(0.0) and s.n == 4
    worse = tail_score({"a#0": 4.0, "a#1": 4.0, "b#0": 1.0, "b#1": 1.0}, ref, tail=0.5)
    assert worse.cvar == pytest.approx(math.log(4)) and worse.mean == pytest.approx(math.log(4) / 2)
