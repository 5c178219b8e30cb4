"""The small MLP every evaluator trains, and its initial weights.

Initialisation lives here, in one place, so the reference evaluator and any batched evaluator start
from bit-identical weights for the same seed and can be checked against each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gpact.config import TrainConfig

Params = list[tuple[torch.Tensor, torch.Tensor]]


DEFAULT_CONFIG = TrainConfig()

# The reference protocol of docs/design.md §4 "The evaluator" (MLP 1->64->64->1, 500 steps), used with tasks.BENCH_TASK.
BENCH_CONFIG = TrainConfig(width=64, depth=2, steps=500)


def layer_sizes(n_inputs: int, cfg: TrainConfig) -> list[int]:
    """Widths from input to output: n_inputs -> width (x depth) -> 1."""
    return [n_inputs] + [cfg.width] * cfg.depth + [1]


def init_params(n_inputs: int, cfg: TrainConfig, seed: int) -> Params:
    """[(W [fan_in, fan_out], b [fan_out])] per layer, float32, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The same bound as nn.Linear's default for both W and b. Draw order is fixed (W then b, layer by
    layer) from a private torch.Generator, so the result depends only on the arguments.
    """
    gen = torch.Generator().manual_seed(seed)
    sizes = layer_sizes(n_inputs, cfg)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = fan_in**-0.5
        w = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
        params.append((w, b))
    return params


def forward(params: Params, x: torch.Tensor,
            act: Callable[[torch.Tensor], torch.Tensor] | Sequence[Callable[[torch.Tensor], torch.Tensor]]
            ) -> torch.Tensor:
    """x @ W + b per layer; `act` after each hidden layer (or `act[i]` after hidden layer i), none after the last."""
    h = x
    last = len(params) - 1
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < last:
            h = act[i](h) if isinstance(act, Sequence) else act(h)
    return h
