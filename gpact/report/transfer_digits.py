"""`--task digits-shift`: a small CNN on scikit-learn's 8x8 digits, tested on moved digits.

The digits are placed on a 12x12 canvas. The network trains on centred, upright digits only; the ID test is
held-out digits as they are, the OOD test the same held-out digits rotated, rescaled and shifted by a fixed,
seeded random affine map each (a shift the training set lacks: no augmentation). The CNN is
conv3x3-act-conv3x3-act-maxpool-conv3x3-act-global average pool-linear, every hidden activation the
formula; minibatch Adam, and the weights with the best ID loss (on a validation part of the training
digits) are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gpact.errors import ConfigError
from gpact.report.shift import Act, ActModule, ShiftTask

CANVAS = 12


@dataclass(frozen=True)
class DigitsConfig:
    width: int = 16  # channels of the first convolution (the others have twice as many)
    steps: int = 300  # minibatch Adam steps
    batch: int = 64
    lr: float = 3e-3
    rotate: float = 30.0  # OOD: rotation drawn in +-rotate degrees,
    scale: float = 0.2  # scale in 1 +- scale,
    shift: float = 1.5  # and translation in +-shift pixels, per digit
    check_every: int = 50  # steps between ID validation checks (early stopping)


@dataclass(frozen=True)
class DigitsData:
    x_train: torch.Tensor  # [n, 1, 12, 12], standardised with training statistics
    y_train: torch.Tensor
    x_val: torch.Tensor  # held out of training, for early stopping
    y_val: torch.Tensor
    x_id: torch.Tensor  # held-out test digits as they are
    y_id: torch.Tensor
    x_ood: torch.Tensor  # the same test digits, moved
    y_ood: torch.Tensor


def prepare(cfg: DigitsConfig) -> DigitsData:
    """Split 60 / 15 / 25 % (train / validation / test) at random (seed 0), per class; move the test digits."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError("--task digits-shift needs scikit-learn: pip install scikit-learn") from None
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a, b = int(0.6 * len(idx)), int(0.75 * len(idx))
        for part, sel in zip(parts, (idx[:a], idx[a:b], idx[b:]), strict=True):
            part.append(sel)
    tr, va, te = (np.sort(np.concatenate(p)) for p in parts)
    img = torch.zeros(len(y), 1, CANVAS, CANVAS)
    pad = (CANVAS - 8) // 2
    img[:, 0, pad:pad + 8, pad:pad + 8] = torch.from_numpy(x.reshape(-1, 8, 8) / 16.0).float()
    moved = _move(img[te], cfg, seed=0)
    mean, std = float(img[tr].mean()), float(img[tr].std())
    labels = torch.from_numpy(y.astype(np.int64))

    def norm(t: torch.Tensor) -> torch.Tensor:
        return (t - mean) / std

    return DigitsData(norm(img[tr]), labels[tr], norm(img[va]), labels[va], norm(img[te]), labels[te],
                      norm(moved), labels[te])


def _move(img: torch.Tensor, cfg: DigitsConfig, seed: int) -> torch.Tensor:
    """Each image rotated, rescaled and shifted by its own affine map drawn from `seed` (bilinear)."""
    gen = torch.Generator().manual_seed(seed)
    n = img.shape[0]

    def draw(half: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * half

    angle, scale = draw(math.radians(cfg.rotate)), 1 + draw(cfg.scale)
    tx, ty = draw(cfg.shift) * 2 / CANVAS, draw(cfg.shift) * 2 / CANVAS  # pixels -> grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # output->input map: inverse scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _cnn(width: int, act: Act) -> nn.Module:
    a = ActModule(act)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), a, nn.MaxPool2d(2),
                         nn.Conv2d(width, 2 * width, 3, padding=1), a, nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(2 * width * (CANVAS // 4) ** 2, 10))


def train_eval(act: Act, data: DigitsData, seed: int, cfg: DigitsConfig, device: torch.device) -> tuple[float, float]:
    """(OOD accuracy, ID accuracy) of the CNN trained from init `seed`; (nan, nan) if training failed."""
    torch.manual_seed(seed)
    model = _cnn(cfg.width, act).to(device)
    gen = torch.Generator().manual_seed(seed)
    x, y = data.x_train.to(device), data.y_train.to(device)
    xv, yv = data.x_val.to(device), data.y_val.to(device)
    best, best_loss = None, math.inf
    try:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(0, len(y), (cfg.batch,), generator=gen).to(device)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % cfg.check_every == 0 or step == cfg.steps:
                with torch.no_grad():
                    val = float(F.cross_entropy(model(xv), yv))
                if math.isfinite(val) and val < best_loss:
                    best, best_loss = {k: v.detach().clone() for k, v in model.state_dict().items()}, val
        if best is None:
            return math.nan, math.nan
        model.load_state_dict(best)
        with torch.no_grad():
            return _accuracy(model, data.x_ood, data.y_ood, device), _accuracy(model, data.x_id, data.y_id, device)
    except Exception:  # a user formula can fail in any way: the seed counts as failed
        return math.nan, math.nan


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    return float((model(x.to(device)).argmax(1).cpu() == y).float().mean())


def _describe(data: DigitsData, cfg: DigitsConfig) -> str:
    return (f"digits-shift: 8x8 digits on a {CANVAS}x{CANVAS} canvas; train {len(data.y_train)} upright centred "
            f"(+{len(data.y_val)} for early stopping), ID test {len(data.y_id)} as they are, OOD test the same "
            f"{len(data.y_ood)} rotated +-{cfg.rotate:g} deg, scaled 1+-{cfg.scale:g}, shifted +-{cfg.shift:g} px; "
            f"CNN width {cfg.width}, {cfg.steps} Adam steps of {cfg.batch} (lr {cfg.lr}, best validation loss kept)")


DIGITS_SHIFT = ShiftTask("digits-shift", "accuracy", DigitsConfig(), prepare, train_eval,
                         lambda d: (len(d.y_train), len(d.y_id), len(d.y_ood)), _describe)
