"""Reference evaluator: determinism, learning, and failures turned into WORST results."""

import math

import pytest
import torch

from gpact.config import TrainConfig
from gpact.train.mlp import forward, init_params
from gpact.train.reference import WORST, TrainResult, train_reference
from gpact.train.tasks import make_task

CFG = TrainConfig(width=8, depth=2, steps=30, lr=1e-2)


@pytest.fixture(scope="module")
def task():
    return make_task("poly_cubic", n_train=64, n_ood=32, seed=0)


def test_deterministic(task):
    a = train_reference(torch.tanh, task, seed=3, cfg=CFG)
    b = train_reference(torch.tanh, task, seed=3, cfg=CFG)
    assert a == b  # bit-identical floats
    c = train_reference(torch.tanh, task, seed=4, cfg=CFG)
    assert c.id_loss != a.id_loss


def test_tanh_learns(task):
    params = init_params(1, CFG, 0)
    with torch.no_grad():
        initial = torch.mean((forward(params, task.x_train, torch.tanh) - task.y_train) ** 2).item()
    r = train_reference(torch.tanh, task, seed=0, cfg=CFG)
    assert not r.diverged and r.reason == ""
    assert math.isfinite(r.ood_loss) and 0 < r.ood_loss < WORST
    assert r.id_loss < 0.5 * initial


def test_respects_caller_no_grad(task):
    with torch.no_grad():
        r = train_reference(torch.tanh, task, seed=0, cfg=CFG)
    assert r == train_reference(torch.tanh, task, seed=0, cfg=CFG)


def _boom(z):
    raise ValueError("bad primitive\nsecond line")


@pytest.mark.parametrize(
    "act, reason",
    [
        (lambda z: z * float("nan"), "nonfinite"),
        (lambda z: torch.exp(50 * z), None),  # overflow: inf, or a loss above clip_loss
        (lambda z: 1e4 * z, "diverged"),  # finite but loss far above clip_loss
        (_boom, "error: ValueError: bad primitive"),
        (lambda z: "not a tensor", "error: TypeError"),
    ],
)
def test_failures_are_worst_results_not_exceptions(task, act, reason):
    r = train_reference(act, task, seed=0, cfg=CFG)
    assert r.diverged and r.id_loss == WORST and r.ood_loss == WORST
    assert r.reason.startswith(reason) if reason else r.reason in ("nonfinite", "diverged")
    assert "\n" not in r.reason


class _NanGradTanh(torch.autograd.Function):
    """tanh whose backward is NaN, and whose forward maps NaN inputs to 0."""

    @staticmethod
    def forward(ctx, z):
        return torch.nan_to_num(torch.tanh(z), nan=0.0)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def test_nan_gradient_hidden_by_activation_is_caught(task):
    # NaN gradients make NaN weights, but this activation hides them, so the loss stays finite:
    # only the final parameter check can see the divergence.
    r = train_reference(_NanGradTanh.apply, task, seed=0, cfg=CFG)
    assert r == TrainResult(WORST, WORST, True, "nonfinite")


def test_ood_nonfinite_is_worst():
    # finite on the training inputs, inf on the (scaled-up) OOD inputs: the OOD check must flag it
    def act(z):
        return torch.where(z.abs() > 1e3, torch.full_like(z, float("inf")), torch.tanh(z))

    task = make_task("poly_cubic", n_train=64, n_ood=32, seed=0)
    task.x_ood.mul_(1e6)
    assert not train_reference(torch.tanh, task, seed=0, cfg=CFG).diverged
    r = train_reference(act, task, seed=0, cfg=CFG)
    assert r == TrainResult(WORST, WORST, True, "nonfinite")


def test_huge_finite_ood_loss_is_clamped():
    task = make_task("poly_cubic", n_train=64, n_ood=32, seed=0)
    task.y_ood.fill_(1e5)  # OOD MSE ~ 1e10 with a sane network
    r = train_reference(torch.tanh, task, seed=0, cfg=CFG)
    assert not r.diverged and r.ood_loss == WORST and r.id_loss < 1
