"""Configuration as plain data: a run's, its training protocol's and its LLM operator's, saved with every run
and checked on resume. Nothing heavy is imported here (no torch, sympy, yaml): the records are read and
written without loading the machinery that uses them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gpact.errors import ConfigError

BACKENDS = ("serial", "process", "ray")  # where candidates are trained (gpact.backends)
TRAIN_DTYPES = ("float32", "float64")
OBJECTIVES = ("tail", "geomean")  # gpact.train.objective.Objective
EVOLVE = ("activation", "derivative")  # what a tree is: the activation, or its derivative (gpact.expr.integrate)
# gpact.search.strategy.STRATEGIES keys, named here so the CLI starts without torch
STRATEGIES = ("gp", "gradient", "surrogate", "random")


@dataclass(frozen=True)
class TrainConfig:
    """How one candidate is trained on one task (gpact.train.mlp)."""

    width: int = 32
    depth: int = 2  # number of hidden layers (activation after each)
    steps: int = 300
    lr: float = 1e-2  # full-batch Adam
    clip_loss: float = 1e6  # a training whose loss exceeds this (or is non-finite) has diverged
    dtype: str = "float32"  # or "float64": slower, for checking one evaluator against another
    const_lr: float | None = None  # Adam's rate for trainable constants, p(0.8); None: the network's lr

    def __post_init__(self) -> None:
        if self.dtype not in TRAIN_DTYPES:
            raise ConfigError(f"train dtype must be one of {', '.join(TRAIN_DTYPES)}, got '{self.dtype}'")
        ints = (self.width, self.depth, self.steps)  # 0 would train nothing, or crash deep inside torch
        _check([(all(isinstance(v, int) and v >= 1 for v in ints), "width, depth and steps must be >= 1"),
                (0 < self.lr < float("inf") and self.clip_loss > 0, "lr must be a positive number, clip_loss > 0"),
                (self.const_lr is None or 0 <= self.const_lr < float("inf"),
                 "const_lr (--const-lr) must be a number >= 0")])

    @property
    def torch_dtype(self):  # -> torch.dtype
        import torch  # here, not at the top: this module stays plain data

        return getattr(torch, self.dtype)


@dataclass(frozen=True)
class ProtocolDist:
    """The training protocols networks draw from (gpact.train.protocol, docs/design.md §5), so that a winning
    activation is not tuned to one training regime. Each (task, seed) network draws one value per field,
    seeded by its task name, its seed and `seed`; one value pins a field, an empty tuple takes the run's
    TrainConfig value (all empty: every network trains as before, bit for bit).
    """

    widths: tuple[int, ...] = (12, 16, 20)
    depths: tuple[int, ...] = (1, 2, 3)
    steps: tuple[int, ...] = (150, 200, 250)
    lrs: tuple[float, ...] = (5e-3, 1e-2, 2e-2)
    seed: int = 0  # salt of the draws: another value gives every network another protocol

    def __post_init__(self) -> None:
        for name in ("widths", "depths", "steps", "lrs"):  # lists (from JSON) become tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        ints = self.widths + self.depths + self.steps
        _check([
            (all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in ints),
             "protocol widths, depths and steps must be whole numbers >= 1"),
            (all(isinstance(v, int | float) and v > 0 for v in self.lrs), "protocol lrs must be > 0"),
            (isinstance(self.seed, int) and self.seed >= 0, "protocol seed must be a whole number >= 0"),
        ])

    @classmethod
    def fixed(cls) -> ProtocolDist:
        """No randomisation: every network trains with the run's TrainConfig."""
        return cls(widths=(), depths=(), steps=(), lrs=())

    @property
    def is_fixed(self) -> bool:
        return all(len(getattr(self, f)) <= 1 for f in ("widths", "depths", "steps", "lrs"))


@dataclass(frozen=True)
class LLMConfig:
    """LLM crossover and mutation (gpact.search.llm, docs/llm.md); off unless a rate is above 0."""

    base_url: str | None = None  # e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama)
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key; the key itself is never stored
    rate: float = 0.0  # probability that a crossover is done by the LLM
    mutation_rate: float = 0.0  # probability that a mutation is done by the LLM
    max_calls: int = 100  # requests per run (cached ones included, so a re-run replays the same calls)
    max_total_tokens: int = 0  # token budget per run; 0 = none
    timeout: float = 30.0  # seconds per request; no retries
    n_children: int = 2  # formulas asked for per request
    temperature: float = 0.7
    max_tokens: int = 1024  # completion tokens per request
    front_size: int = 5  # front members shown as context
    cache_dir: str | None = None  # default: chosen by the caller (shared across runs)

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.rate <= 1 and 0 <= self.mutation_rate <= 1, "llm rate and mutation_rate must be in [0, 1]"),
            (self.max_calls >= 0 and self.max_total_tokens >= 0, "llm max_calls and max_total_tokens must be >= 0"),
            (self.timeout > 0, "llm timeout must be > 0 seconds"),
            (1 <= self.n_children <= 16, "llm n_children must be in 1..16"),
            (0 <= self.temperature <= 2, "llm temperature must be in [0, 2]"),
            (self.max_tokens >= 1 and self.front_size >= 0, "llm max_tokens must be >= 1, front_size >= 0"),
            (not self.wanted or (self.base_url and self.model), "an LLM rate > 0 needs --llm-base-url and --llm-model"),
        ]
        _check(checks)

    @property
    def wanted(self) -> bool:
        return self.rate > 0 or self.mutation_rate > 0

    @property
    def enabled(self) -> bool:
        return bool(self.wanted and self.base_url and self.model)


MIXTURES = ("dirichlet", "softmax")  # gpact.train.supernet: DrNAS or DARTS slot mixtures
SPLITS = ("nested", "random")  # gpact.train.oneshot: how the training box is split between weights and alpha


@dataclass(frozen=True)
class GradientConfig:
    """The gradient strategy (gpact.search.gradient, GrafS): supernets trained by first-order bi-level steps."""

    restarts: int = 4  # supernets per generation, trained as one stacked batch (each its own seed)
    warm_steps: int = 100  # weight steps with the base activation before the cell's mixtures train
    search_steps: int = 200  # alternating (alpha/beta, weights) step pairs; shrinking ends by 60% of them
    mixture: str = "dirichlet"  # dirichlet (DrNAS: ELU(alpha)+1, rsample) or softmax (DARTS)
    split: str = "nested"  # nested: weights on the inner part of the box, alpha on its outer band; random
    band: float = 0.25  # share of the training points alpha/beta train on (the outer band when nested)
    alpha_lr: float = 0.03  # Adam, betas (0.5, 0.999), on alpha and beta
    clamp: float = 10.0  # op outputs clamped to +-clamp during search only; 0: none
    base: str = "gelu"  # the warm-start activation: a unary primitive of the grammar

    def __post_init__(self) -> None:
        _check([
            (self.restarts >= 1 and self.search_steps >= 1 and self.warm_steps >= 0,
             "gradient restarts and search_steps must be >= 1, warm_steps >= 0"),
            (self.mixture in MIXTURES, f"gradient mixture must be one of {', '.join(MIXTURES)}"),
            (self.split in SPLITS, f"gradient split must be one of {', '.join(SPLITS)}"),
            (0 < self.band < 1, "gradient band must be in (0, 1)"),
            (self.alpha_lr > 0 and self.clamp >= 0, "gradient alpha_lr must be > 0 and clamp >= 0"),
        ])


@dataclass(frozen=True)
class RunConfig:
    grammar: str = "grammars/full.yaml"
    generations: int = 10
    time_limit: float = 0.0  # seconds of wall time per invocation (checked between generations); 0: none
    max_evals: int = 0  # stop once the run has trained this many new functions; 0: none
    population: int = 32  # rounded up to a multiple of 4 (NSGA-II's tournament needs it)
    seed: int = 0
    tasks: str = "search:16"  # the search part: selected on (gpact.train.partition; `--tasks` syntax)
    validation: str = "validation:16"  # picks the recommended function among the front; "" skips
    test: str = "test:24"  # reported only, never selected on; "" skips
    train_seeds: int = 3  # network initialisations per task (racing trains the last ones on promising functions only)
    n_train: int = 256
    n_ood: int = 256
    train: TrainConfig = field(default_factory=lambda: TrainConfig(width=16, depth=2, steps=200))
    evaluator: str = "auto"  # auto | reference | batched
    device: str = "auto"  # auto | cpu | cuda
    cx_prob: float = 0.6
    mut_prob: float = 0.4
    out_dir: str = "runs"
    run_id: str = ""  # empty: derived from the grammar, seed and start time
    llm: LLMConfig = field(default_factory=LLMConfig)  # LLM crossover (docs/llm.md); off by default
    backend: str = "serial"  # serial | process | ray: where candidates are trained (docs/scaleout.md)
    workers: int = 0  # process/ray workers; 0: one per GPU, else one per CPU core
    ray_address: str = ""  # "": start a local Ray; "auto" or host:port: join a running cluster
    chunk_timeout: float = 0.0  # seconds a worker may spend on one chunk before it is replaced; 0: no limit
    strategy: str = "gp"  # gpact.search.strategy.STRATEGIES: how the next candidates are chosen
    objective: str = "tail"  # tail: ratio to GELU with a CVaR tail term; geomean: geometric mean OOD loss
    tail: float = 0.25  # the tail term averages the worst quarter of networks' log-ratios to GELU
    tail_weight: float = 1.0
    proxy_check: int = 30  # functions scored on validation to rank-correlate with the search score
    race_eta: int = 3  # racing: the best 1/eta of each stage go on to eta times more networks; 1: no racing
    race_start: int = 4  # networks per new function in racing's first stage
    max_networks: int = 0  # stop once the search has trained this many networks (its training budget); 0: none
    prescreen: int = 0  # gp: make this many times the children, train the surrogate's best share; 0 or 1: off
    protocol: ProtocolDist = field(default_factory=ProtocolDist)  # per-network training protocols; fixed(): off
    evolve: str = "activation"  # or "derivative": trees are derivatives, scored as their integrals
    integrate_seconds: float = 5.0  # `evolve` derivative: sympy's time box per integral (gpact.expr.integrate)
    gradient: GradientConfig = field(default_factory=GradientConfig)  # the gradient strategy's supernets
    trainable_constants: bool = False  # ephemeral constants are drawn as p(c), learned per network and layer

    def __post_init__(self) -> None:
        checks = [
            (self.generations >= 0, "generations must be >= 0"),
            (self.time_limit >= 0 and self.max_evals >= 0, "time_limit and max_evals must be >= 0 (0: no limit)"),
            (self.population >= 4, "population must be >= 4"),
            (self.train_seeds >= 1, "train_seeds must be >= 1"),
            (0 <= self.cx_prob <= 1 and 0 <= self.mut_prob <= 1, "cx_prob and mut_prob must be in [0, 1]"),
            (self.seed >= 0, "seed must be >= 0"),
            (self.train.const_lr is None or self.trainable_constants,
             "const_lr (--const-lr) sets the rate of trainable constants; give it with --trainable-constants"),
            (self.train.steps >= 1 and self.train.width >= 1, "train.steps and train.width must be >= 1"),
            (self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}"),
            (self.workers >= 0 and self.chunk_timeout >= 0, "workers and chunk_timeout must be >= 0"),
            (self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}"),
            (0 < self.tail <= 1 and self.tail_weight >= 0, "tail must be in (0, 1] and tail_weight >= 0"),
            (self.proxy_check >= 0, "proxy_check must be >= 0"),
            (self.race_eta >= 1 and self.race_start >= 1, "race_eta and race_start must be >= 1"),
            (self.max_networks >= 0, "max_networks must be >= 0 (0: no limit)"),
            (self.evolve in EVOLVE, f"evolve must be one of {', '.join(EVOLVE)}"),
            (0 < self.integrate_seconds <= 3600, "integrate_seconds must be in (0, 3600]"),
            (self.evolve == "activation" or not self.llm.wanted,
             "--evolve derivative does not work with the LLM operator (it writes activations, not derivatives)"),
            (self.prescreen >= 0, "prescreen must be >= 0 (0: off)"),
        ]
        _check(checks)

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
        if isinstance(data.get("gradient"), dict):
            data["gradient"] = GradientConfig(**data["gradient"])
        if "protocol" not in data:  # saved before protocols were drawn: it trained every network alike
            data["protocol"] = ProtocolDist.fixed()
        elif isinstance(data["protocol"], dict):
            data["protocol"] = ProtocolDist(**data["protocol"])
        return cls(**data)


def _check(checks: list[tuple[object, str]]) -> None:
    """Raise a ConfigError with the message of the first check that fails."""
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
