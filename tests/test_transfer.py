"""Transfer to real data: the covariate-shift splits, training, and the comparison table."""

import math

import numpy as np
import pytest
import torch
from sklearn import datasets

from gpact.errors import ConfigError, FormulaError
from gpact.report.transfer import (
    DATASETS,
    TransferConfig,
    format_result,
    make_split,
    split_indices,
    train_eval,
    transfer,
)

TINY = TransferConfig(width=8, steps=20, check_every=5)


@pytest.mark.parametrize("name", list(DATASETS))
def test_split_is_a_covariate_shift(name):
    loader, kind = DATASETS[name]
    x, y = getattr(datasets, loader)(return_X_y=True)
    tr, va, te, pos = split_indices(np.asarray(x, dtype=np.float64), y, kind)
    assert len(set(tr) | set(va) | set(te)) == len(y) == len(tr) + len(va) + len(te)  # a partition
    groups = [y == c for c in np.unique(y)] if kind == "classification" else [np.ones(len(y), bool)]
    for g in groups:  # within every class, the OOD rows lie beyond every training row along PC1
        inside = np.concatenate([tr, va])
        assert pos[te][g[te]].min() >= pos[inside][g[inside]].max()
    if kind == "classification":  # class proportions kept
        for c in np.unique(y):
            assert abs(np.mean(y[tr] == c) - np.mean(y[te] == c)) < 0.05
    split = make_split(name)
    assert split.x_train.shape[0] == len(tr) and split.x_ood.shape[0] == len(te)
    torch.testing.assert_close(split.x_train.mean(0), torch.zeros(split.x_train.shape[1]), atol=1e-4, rtol=0)
    assert split.x_ood.mean().item() != pytest.approx(0.0, abs=1e-3)  # standardised with training stats only
    again = make_split(name)
    assert torch.equal(split.x_ood, again.x_ood)


def test_train_eval_metrics_and_failure():
    split = make_split("wine")
    ood, id_ = train_eval(torch.tanh, split, 0, TINY)
    assert 0.0 <= ood <= 1.0 and 0.0 <= id_ <= 1.0
    assert train_eval(torch.tanh, split, 0, TINY) == (ood, id_)  # seeded
    assert all(math.isnan(v) for v in train_eval(lambda z: z * float("nan"), split, 0, TINY))
    reg = make_split("diabetes")
    mse, _ = train_eval(torch.tanh, reg, 1, TINY)
    assert 0.0 < mse < 10.0


def test_transfer_table_includes_references():
    res = transfer(["gmtu", "x + 0.1*sin(x)", "relu"], "wine", seeds=2, cfg=TINY)
    assert [r.label for r in res.rows] == ["gelu", "relu", "gmtu", "x + 0.1*sin(x)"]
    assert all(len(r.ood) == 2 for r in res.rows) and res.metric == "accuracy"
    text = format_result(res)
    assert "OOD accuracy" in text and "vs gelu" in text and "gmtu" in text
    assert format_result(res, markdown=True).startswith("| name |")


def test_errors():
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        transfer(["relu"], "mnist", cfg=TINY)
    with pytest.raises(FormulaError, match="formula 'foo\\(x\\)'"):
        transfer(["foo(x)"], "wine", cfg=TINY)
