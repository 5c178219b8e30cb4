"""The strategy seam: what turns "what has been evaluated" into "what to evaluate next".

A strategy starts a population, advances it one generation at a time (evaluating through the run's
backend, recording every new function in `State.records`), and rebuilds it from a checkpoint. The runner
owns everything else (run folder, front, checkpoint, progress, stopping), so every strategy writes the
same files. `gpact run --strategy NAME` picks one from STRATEGIES.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from deap import gp

from gpact.config import RunConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.search.accept import Acceptance
from gpact.search.gp import Search
from gpact.search.gradient import GradientSearch
from gpact.search.operators import Operator
from gpact.search.random_search import RandomSearch
from gpact.search.records import GenerationStats, State
from gpact.search.surrogate import SurrogateSearch
from gpact.train.objective import Objective
from gpact.train.tasks import Task

if TYPE_CHECKING:
    from gpact.backends.base import Backend


class Strategy(Protocol):
    def __init__(self, cfg: RunConfig, grammar: Grammar, tasks: list[Task], backend: Backend,
                 operators: Sequence[Operator] | None = None, accept: Acceptance | None = None,
                 pset: gp.PrimitiveSet | None = None, objective: Objective | None = None) -> None: ...

    def start(self, state: State) -> list:
        """The initial population (not yet evaluated: the first `step` does that)."""

    def step(self, population: list, state: State, progress=None) -> tuple[list, GenerationStats]:
        """Evaluate what needs it, choose the next population, advance `state.generation` by one."""

    def restore(self, members: list[dict[str, Any]]) -> list:
        """The population from a checkpoint's members ({"tree", "fitness", "crowding_dist"}), exactly."""


STRATEGIES: dict[str, type[Strategy]] = {
    "gp": Search,  # NSGA-II over trees
    "gradient": GradientSearch,  # GrafS: supernets over the run's template, shrunk to one op per slot
    "surrogate": SurrogateSearch,  # AQuaSurF: train the best-predicted functions of a template space
    "random": RandomSearch,  # the baseline: uniformly random functions of the run's templates
}


def strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}' (choose from {', '.join(STRATEGIES)})")
    return STRATEGIES[name]
