"""Run configuration: plain data, saved with every run and checked on resume."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gpact.backends.pools import BACKENDS
from gpact.errors import ConfigError
from gpact.search.llm import LLMConfig
from gpact.train.mlp import TrainConfig


@dataclass(frozen=True)
class RunConfig:
    grammar: str = "grammars/full.yaml"
    generations: int = 10
    time_limit: float = 0.0  # seconds of wall time per invocation (checked between generations); 0: none
    max_evals: int = 0  # stop once the run has trained this many new functions; 0: none
    population: int = 32  # rounded up to a multiple of 4 (NSGA-II's tournament needs it)
    seed: int = 0
    tasks: str = "default"  # suite name or comma-separated task names (gpact.train.tasks)
    train_seeds: int = 2  # network initialisations per task; the score takes their median
    n_train: int = 256
    n_ood: int = 256
    train: TrainConfig = field(default_factory=lambda: TrainConfig(width=16, depth=2, steps=200))
    evaluator: str = "auto"  # auto | reference | batched
    device: str = "auto"  # auto | cpu | cuda
    cx_prob: float = 0.6
    mut_prob: float = 0.4
    holdout: str = "holdout"  # suite scored once at the end, never used for selection; "" to skip
    out_dir: str = "runs"
    run_id: str = ""  # empty: derived from the grammar, seed and start time
    llm: LLMConfig = field(default_factory=LLMConfig)  # LLM crossover (docs/llm.md); off by default
    backend: str = "serial"  # serial | process | ray: where candidates are trained (docs/scaleout.md)
    workers: int = 0  # process/ray workers; 0: one per GPU, else one per CPU core
    ray_address: str = ""  # "": start a local Ray; "auto" or host:port: join a running cluster
    chunk_timeout: float = 0.0  # seconds a worker may spend on one chunk before it is replaced; 0: no limit
    strategy: str = "gp"  # gpact.search.strategy.STRATEGIES: how the next candidates are chosen

    def __post_init__(self) -> None:
        checks = [
            (self.generations >= 0, "generations must be >= 0"),
            (self.time_limit >= 0 and self.max_evals >= 0, "time_limit and max_evals must be >= 0 (0: no limit)"),
            (self.population >= 4, "population must be >= 4"),
            (self.train_seeds >= 1, "train_seeds must be >= 1"),
            (0 <= self.cx_prob <= 1 and 0 <= self.mut_prob <= 1, "cx_prob and mut_prob must be in [0, 1]"),
            (self.seed >= 0, "seed must be >= 0"),
            (self.train.steps >= 1 and self.train.width >= 1, "train.steps and train.width must be >= 1"),
            (self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}"),
            (self.workers >= 0 and self.chunk_timeout >= 0, "workers and chunk_timeout must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    @property
    def mu(self) -> int:
        return -(-self.population // 4) * 4

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown run config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        if isinstance(data.get("train"), dict):
            data["train"] = TrainConfig(**data["train"])
        if isinstance(data.get("llm"), dict):
            data["llm"] = LLMConfig(**data["llm"])
        return cls(**data)
