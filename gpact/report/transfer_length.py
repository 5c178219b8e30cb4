"""`--task length`: addition by a recurrent network, trained on short numbers, tested on longer ones.

Two numbers arrive digit by digit (base 10 by default, one-hot), least significant first; at each step the
network emits one digit of the sum (one more step for the last carry). The cell is an Elman RNN,
h_t = f(W [a_t, b_t, h_{t-1}] + c), with
the formula as f, and a linear readout: the activation is applied again at every step, so how it behaves
on long inputs decides whether the carry survives. Training numbers have 1 to `train_length` digits; the ID
test draws fresh numbers of those lengths, the OOD test numbers of `train_length`+1 to `test_length` digits.
Reported: the share of sums with every digit right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gpact.errors import ConfigError
from gpact.report.shift import Act, ShiftTask


@dataclass(frozen=True)
class LengthConfig:
    width: int = 32  # hidden units
    steps: int = 500  # Adam steps
    batch: int = 64
    lr: float = 1e-2
    base: int = 10
    train_length: int = 6  # training numbers have 1..train_length digits
    test_length: int = 24  # OOD numbers have train_length+1..test_length digits
    test_size: int = 512  # sums per test split


@dataclass(frozen=True)
class LengthData:
    id_test: list[tuple[torch.Tensor, torch.Tensor]]  # (inputs [n, T, 2], target bits [n, T]) per length
    ood_test: list[tuple[torch.Tensor, torch.Tensor]]
    sizes: tuple[int, int, int]


def sums(n: int, digits: int, base: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random additions of two `digits`-digit numbers: one-hot inputs [n, digits+1, 2*base] (the last step
    all zero) and the sum's digits [n, digits+1], least significant first."""
    a = torch.randint(0, base, (n, digits), generator=gen)
    b = torch.randint(0, base, (n, digits), generator=gen)
    out, carry = torch.zeros(n, digits + 1, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    for i in range(digits):
        s = a[:, i] + b[:, i] + carry
        out[:, i], carry = s % base, s // base
    out[:, digits] = carry
    x = torch.zeros(n, digits + 1, 2 * base)
    x[:, :digits] = torch.cat([F.one_hot(a, base), F.one_hot(b, base)], 2).float()
    return x, out


def _split(lengths: range, total: int, base: int, gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    per = max(1, total // len(lengths))
    return [sums(per, k, base, gen) for k in lengths]


def prepare(cfg: LengthConfig) -> LengthData:
    if cfg.test_length <= cfg.train_length:
        raise ConfigError("length: test_length must be above train_length")
    gen = torch.Generator().manual_seed(1234)  # the test sums; training draws its own from the seed
    id_test = _split(range(1, cfg.train_length + 1), cfg.test_size, cfg.base, gen)
    ood_test = _split(range(cfg.train_length + 1, cfg.test_length + 1), cfg.test_size, cfg.base, gen)
    count = sum(len(y) for _, y in id_test), sum(len(y) for _, y in ood_test)
    return LengthData(id_test, ood_test, (cfg.steps * cfg.batch, *count))


class Elman(nn.Module):
    def __init__(self, width: int, base: int, act: Act):
        super().__init__()
        self.width, self.act = width, act
        self.cell, self.out = nn.Linear(2 * base + width, width), nn.Linear(width, base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.width)
        outs = []
        for t in range(x.shape[1]):
            h = self.act(self.cell(torch.cat([x[:, t], h], 1)))
            outs.append(self.out(h))
        return torch.stack(outs, 1)  # [n, T, base]


def train_eval(act: Act, data: LengthData, seed: int, cfg: LengthConfig, device: torch.device) -> tuple[float, float]:
    """(OOD exact-sum accuracy, ID exact-sum accuracy) after training from init `seed`; nan: failed."""
    torch.manual_seed(seed)
    model = Elman(cfg.width, cfg.base, act).to(device)
    gen = torch.Generator().manual_seed(seed)
    try:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        for _ in range(cfg.steps):
            digits = int(torch.randint(1, cfg.train_length + 1, (1,), generator=gen))
            x, y = sums(cfg.batch, digits, cfg.base, gen)
            loss = F.cross_entropy(model(x.to(device)).reshape(-1, cfg.base), y.to(device).reshape(-1))
            if not torch.isfinite(loss):
                return math.nan, math.nan
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        with torch.no_grad():
            return _exact(model, data.ood_test, device), _exact(model, data.id_test, device)
    except Exception:  # a user formula can fail in any way: the seed counts as failed
        return math.nan, math.nan


def _exact(model: nn.Module, split: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    right = sum(int((model(x.to(device)).argmax(2).cpu() == y).all(1).sum()) for x, y in split)
    return right / sum(len(y) for _, y in split)


def _describe(data: LengthData, cfg: LengthConfig) -> str:
    return (f"length: base-{cfg.base} addition, least significant digit first; trained on 1-{cfg.train_length} "
            f"digit numbers "
            f"({cfg.steps} Adam steps of {cfg.batch} sums, lr {cfg.lr}, gradient norm clipped at 1), ID test "
            f"{data.sizes[1]} sums of 1-{cfg.train_length} digits, OOD test {data.sizes[2]} sums of "
            f"{cfg.train_length + 1}-{cfg.test_length} digits; Elman RNN width {cfg.width}; "
            "accuracy: every digit right")


LENGTH = ShiftTask("length", "accuracy", LengthConfig(), prepare, train_eval, lambda d: d.sizes, _describe)
