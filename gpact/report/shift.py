"""What a shift task is (`ShiftTask`), and the activation as a module for the models the tasks build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Act = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ShiftTask:
    """One benchmark: how to build its data once, and how to train and score one network on it."""

    name: str
    metric: str  # "accuracy" (higher is better) or "bits/char" (lower is better)
    config: Any  # the task's config dataclass, with the defaults the README timings are for
    prepare: Callable[[Any], Any]  # cfg -> data (on CPU)
    train_eval: Callable[[Act, Any, int, Any, torch.device], tuple[float, float]]  # -> (OOD, ID); nan: failed
    sizes: Callable[[Any], tuple[int, int, int]]  # train, ID test, OOD test (examples or characters)
    describe: Callable[[Any, Any], str]  # (data, cfg) -> the table's note


class ActModule(torch.nn.Module):
    """A formula's torch callable as a module, for the places a model wants an `nn.Module`."""

    def __init__(self, fn: Act):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)
