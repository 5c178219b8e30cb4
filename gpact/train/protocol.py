"""Per-network training protocols: each (task, seed) network draws its width, depth, steps and learning rate
from the run's ProtocolDist, so the fitness rewards activations that work across training regimes, not in
one (docs/design.md §5 "Protocol randomisation").

A draw depends only on the task name, the seed and the distribution: GELU and every candidate train the
same (task, seed) network with the same protocol, in any call order, in any process or on any machine.
Seeds s and s + SEED_PERIOD draw the same protocol: GELU's yardstick networks (gpact.run.verdict, seeds
1000 + s) train under the protocol of the candidates' networks they are compared with, from other weights.
"""

from __future__ import annotations

import dataclasses
import random
import zlib

from gpact.config import ProtocolDist, TrainConfig

SEED_PERIOD = 1000  # seeds that differ by a multiple of this share their protocols (yardstick networks)
FIELDS = (("widths", "width"), ("depths", "depth"), ("steps", "steps"), ("lrs", "lr"))  # dist field, TrainConfig field


def draw(dist: ProtocolDist | None, base: TrainConfig, task_name: str, seed: int) -> TrainConfig:
    """The protocol of network (task_name, seed): `base` with one value per field of `dist` drawn.

    Every field draws its own uniform number, always, so pinning one field never changes another's draw.
    """
    if dist is None:
        return base
    rng = random.Random(f"{zlib.crc32(task_name.encode())}:{seed % SEED_PERIOD}:{dist.seed}")
    picks = {}
    for many, one in FIELDS:
        u = rng.random()
        choices = getattr(dist, many)
        if choices:
            picks[one] = choices[min(int(u * len(choices)), len(choices) - 1)]
    return dataclasses.replace(base, **picks)


def widest(dist: ProtocolDist | None, base: TrainConfig) -> TrainConfig:
    """The largest network any draw can give (widest, deepest): for memory estimates."""
    if dist is None:
        return base
    return dataclasses.replace(base, width=max(dist.widths or (base.width,)), depth=max(dist.depths or (base.depth,)))
