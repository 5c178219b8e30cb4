"""Surrogate features (gpact.train.features): outputs on AQuaSurF's inputs and the K-FAC Fisher spectrum."""

import numpy as np
import torch

from gpact.config import TrainConfig
from gpact.expr.grammar import load_grammar
from gpact.expr.trees import formula_to_sympy
from gpact.train.features import (
    FeatureCache,
    activation_batch,
    fisher_features,
    kfac_factors,
    log_spectrum,
    output_features,
)
from gpact.train.mlp import forward, init_params
from gpact.train.tasks import make_task

CFG = TrainConfig(width=8, depth=2, steps=10)


def _exprs(texts, g):
    return [formula_to_sympy(t, g) for t in texts]


def test_features_are_deterministic_and_equal_for_equivalent_functions():
    g = load_grammar("aquasurf")
    task = make_task("poly_cubic", n_train=64)
    texts = ["relu(x)", "max(x, 0)", "max(0, x)", "add(relu(x), 0)", "swish(x)", "bessel_i1e(x)", "tanh(x)"]
    ex = _exprs(texts, g)
    out1, out2 = output_features(ex, g), output_features(ex, g)
    fis1, fis2 = (fisher_features(ex, g, task.x_train, task.y_train, CFG) for _ in range(2))
    assert np.array_equal(out1, out2) and np.array_equal(fis1, fis2)
    assert out1.shape == (7, 1000) and np.isfinite(fis1).all()
    for i in (1, 2, 3):  # the same function as relu(x), written otherwise
        assert np.array_equal(out1[0], out1[i]) and np.array_equal(fis1[0], fis1[i])
    assert not np.array_equal(out1[0], out1[4]) and not np.array_equal(fis1[0], fis1[4])
    assert not np.array_equal(fis1[4], fis1[6])
    assert np.all(np.diff(fis1, axis=1)[:, :15] >= 0)  # a CDF (within the first layer)


def test_batched_activation_matches_the_formula_and_its_slope():
    g = load_grammar("aquasurf")
    ex = _exprs(["swish(x)", "bessel_i0e(x)", "mul(x, erf(x))"], g)
    z = torch.linspace(-3, 3, 50, dtype=torch.float64)
    v, d = activation_batch(ex, g)(z[None].expand(3, -1).contiguous(), True)
    zz = z.clone().requires_grad_(True)
    for k, ref in enumerate([torch.nn.functional.silu(zz), torch.special.i0e(zz), zz * torch.erf(zz)]):
        (slope,) = torch.autograd.grad(ref.sum(), zz)
        assert torch.allclose(v[k], ref.detach()) and torch.allclose(d[k], slope, atol=1e-6)


def test_kfac_spectrum_equals_the_direct_fisher_for_one_sample():
    """With one sample the Fisher block of a layer is exactly A (x) G: its spectrum, computed directly from the
    per-sample gradient of the layer's weights and bias, equals K-FAC's pairwise eigenvalue products."""
    g = load_grammar("aquasurf")
    cfg = TrainConfig(width=5, depth=2, steps=10)
    x, y = torch.tensor([[0.7]]), torch.tensor([[2.0]])
    factors = kfac_factors(activation_batch(_exprs(["tanh(x)"], g), g), 1, x, y, cfg)
    params = [(w.double().requires_grad_(True), b.double().requires_grad_(True)) for w, b in init_params(1, cfg, 0)]
    loss = 0.5 * (forward(params, x.double(), torch.tanh) - y.double()).pow(2).sum()
    grads = torch.autograd.grad(loss, [t for wb in params for t in wb])
    for layer, (a, gg) in enumerate(factors):
        gw, gb = grads[2 * layer], grads[2 * layer + 1]
        v = torch.cat([gw, gb[None]], 0).reshape(-1)  # rows: inputs then the bias, as A's ones column
        direct = torch.linalg.eigvalsh(torch.outer(v, v))
        kfac = log_spectrum(a, gg).exp()[0]
        top = direct.abs().max()
        assert torch.isclose(kfac.max(), top, rtol=1e-9)
        assert torch.isclose(torch.trace(a[0]) * torch.trace(gg[0]), torch.trace(torch.outer(v, v)), rtol=1e-9)
        assert (direct > 1e-6 * top).sum() == (kfac > 1e-6 * top).sum() == 1


def test_feature_cache_computes_each_fingerprint_once(tmp_path):
    calls = []

    def compute(idx):
        calls.append(list(idx))
        return np.array([[float(i), 2.0 * i] for i in idx])

    cache = FeatureCache(tmp_path, "outputs")
    first = cache.get(["a", "b"], compute)
    again = FeatureCache(tmp_path, "outputs").get(["b", "c", "a"], compute)
    assert calls == [[0, 1], [1]]
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
