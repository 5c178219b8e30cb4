"""Fitness: median over seeds, geometric mean over tasks, WORST propagation."""

import math

import pytest
import torch

from gpact.config import TrainConfig
from gpact.errors import ConfigError
from gpact.train.fitness import WORST, Fitness, aggregate, evaluate_reference
from gpact.train.reference import TrainResult
from gpact.train.tasks import make_suite


def ok(ood, id_loss=0.1):
    return TrainResult(id_loss, ood, False)


BAD = TrainResult(WORST, WORST, True, "nonfinite")


def test_median_then_geometric_mean():
    f = aggregate({
        "a": [ok(1.0), ok(100.0), ok(4.0)],  # median 4 (the 100 outlier is ignored)
        "b": [ok(0.25, 0.2), ok(0.5, 0.4)],  # even count: mean of the middle pair = 0.375
    })
    assert f.per_task == {"a": 4.0, "b": 0.375}
    assert f.ood_score == pytest.approx(math.sqrt(4.0 * 0.375))
    assert f.id_loss == pytest.approx(math.sqrt(0.1 * 0.3))
    assert f.diverged == 0 and f.reason == ""


def test_geometric_mean_is_scale_fair():
    # a 10x change on either task moves the score by the same factor
    base = aggregate({"a": [ok(1.0)], "b": [ok(100.0)]}).ood_score
    assert aggregate({"a": [ok(10.0)], "b": [ok(100.0)]}).ood_score == pytest.approx(base * math.sqrt(10))
    assert aggregate({"a": [ok(1.0)], "b": [ok(1000.0)]}).ood_score == pytest.approx(base * math.sqrt(10))


def test_minority_divergence_is_counted_but_median_survives():
    f = aggregate({"a": [ok(2.0), BAD, ok(3.0)], "b": [ok(1.0)]})
    assert f.per_task["a"] == 3.0  # diverged counts as +inf: sorted [2, 3, inf] -> 3
    assert f.ood_score == pytest.approx(math.sqrt(3.0))
    assert f.diverged == 1 and f.reason == "nonfinite"


def test_worst_propagates():
    # half the seeds diverged: the middle pair contains +inf, so the task is WORST, and so is the suite
    f = aggregate({"a": [ok(2.0), BAD], "b": [ok(1.0), ok(1.0)]})
    assert f.per_task["a"] == WORST and f.per_task["b"] == 1.0
    assert f.ood_score == WORST and f.id_loss == WORST
    everything = aggregate({"a": [BAD], "b": [TrainResult(WORST, WORST, True, "error: x")]})
    assert everything == Fitness(WORST, WORST, {"a": WORST, "b": WORST}, 2, "nonfinite",
                                 {"a#0": WORST, "b#0": WORST})


def test_zero_loss_is_floored_not_minus_infinity():
    f = aggregate({"a": [ok(0.0)], "b": [ok(1.0)]})
    assert 0 < f.ood_score < 1e-5 and math.isfinite(f.ood_score)


def test_empty_inputs_are_config_errors():
    with pytest.raises(ConfigError):
        aggregate({})
    with pytest.raises(ConfigError):
        aggregate({"a": []})


def test_evaluate_reference_end_to_end():
    tasks = make_suite("smoke", n_train=32, n_ood=16)
    cfg = TrainConfig(width=8, steps=20)
    f = evaluate_reference(torch.tanh, tasks, seeds=[0, 1], cfg=cfg)
    assert set(f.per_task) == {t.spec.name for t in tasks}
    assert f.diverged == 0 and 0 < f.ood_score < WORST
    assert f.ood_score == pytest.approx(math.prod(f.per_task.values()) ** 0.5)
    bad = evaluate_reference(lambda z: z / 0 - z / 0, tasks, seeds=[0], cfg=cfg)
    assert bad.ood_score == WORST and bad.diverged == 2


def test_every_network_keeps_its_own_loss_under_its_seed():
    """per_run pairs networks with GELU's by (task, seed): named by the seeds given, failures WORST."""
    f = aggregate({"a": [ok(2.0), BAD], "b": [ok(1.0), ok(3.0)]}, seeds=[5, 7])
    assert f.per_run == {"a#5": 2.0, "a#7": WORST, "b#5": 1.0, "b#7": 3.0}
    with pytest.raises(ConfigError, match="one result per seed"):
        aggregate({"a": [ok(1.0)]}, seeds=[0, 1])
