"""MLP: shapes, nn.Linear-like init bounds, seeded determinism, forward semantics."""

import torch

from gpact.config import TrainConfig
from gpact.train.mlp import forward, init_params


def test_shapes_and_bounds():
    cfg = TrainConfig(width=8, depth=3)
    params = init_params(2, cfg, seed=0)
    assert [(w.shape, b.shape) for w, b in params] == [
        ((2, 8), (8,)), ((8, 8), (8,)), ((8, 8), (8,)), ((8, 1), (1,))
    ]
    for w, b in params:
        bound = w.shape[0] ** -0.5
        assert w.dtype == torch.float32 and b.dtype == torch.float32
        assert w.abs().max() <= bound and b.abs().max() <= bound
        assert w.abs().max() > 0.5 * bound  # actually spread over the range
    out = forward(params, torch.zeros(5, 2), torch.tanh)
    assert out.shape == (5, 1)


def test_same_seed_same_params_different_seed_different():
    cfg = TrainConfig(width=8, depth=2)
    a, b, c = init_params(3, cfg, 7), init_params(3, cfg, 7), init_params(3, cfg, 8)
    assert all(torch.equal(x, y) for la, lb in zip(a, b, strict=True) for x, y in zip(la, lb, strict=True))
    assert not torch.equal(a[0][0], c[0][0])


def test_init_ignores_global_rng():
    torch.manual_seed(0)
    a = init_params(1, TrainConfig(width=4), 3)
    torch.manual_seed(123)
    b = init_params(1, TrainConfig(width=4), 3)
    assert torch.equal(a[1][0], b[1][0])


def test_forward_applies_act_after_hidden_layers_only():
    params = [(torch.tensor([[1.0]]), torch.tensor([-2.0])), (torch.tensor([[3.0]]), torch.tensor([-1.0]))]
    # relu(1*x - 2) * 3 - 1: negative output proves no activation after the last layer
    out = forward(params, torch.tensor([[1.0], [4.0]]), torch.relu)
    assert out[:, 0].tolist() == [-1.0, 5.0]
