"""Splits by family: search families select, validation families pick the recommended function, test
families only report (DESIGN.md §5). The unit is a family, never a task inside one: a generator family
("rational") or a Feynman group ("feynman-I", "feynman-II", "feynman-III"), so nothing a run selects
on shares a generator with what it is tested on.

Default (`family_split(seed)`): the test units are fixed, DEFAULT_TEST, so reported test numbers
compare across runs and seeds; the seed deals the validation units out of the rest, and the remaining
units are searched. DEFAULT_TEST takes one unit of each kind of behaviour outside the box and leaves
siblings of each kind to the units that search and validation are dealt from:
- bounded / decaying: "rational" ("saturating", "bump" stay);
- decaying oscillation: "damped" ("harmonic" stays);
- growing products and quotients: "powers" ("polynomial", "exponential", "logsqrt" stay);
- physics: "feynman-III", the smallest group ("feynman-I", "feynman-II" stay).
None of them is a family of the hand-written suites "default" and "holdout" (polynomial, harmonic,
Feynman groups I and II), so runs on those never selected on a test family either. `test=None` deals
the test units by the seed too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpact.errors import ConfigError
from gpact.train.library import UNITS, family_key
from gpact.train.library.spec import TaskSpec

DEFAULT_TEST = ("rational", "damped", "powers", "feynman-III")


def split_unit(spec: TaskSpec) -> str:
    """The unit a task splits with: its family; a hand-written feynman_<id> task goes with its group."""
    if spec.family == "feynman":  # the hand-written tasks, named feynman_<group>.<rest>
        return "feynman-" + spec.name.removeprefix("feynman_").split(".")[0]
    return spec.family


def family_split(
    seed: int = 0,
    n_validation: int = 3,
    test: Sequence[str] | None = DEFAULT_TEST,
    n_test: int = 4,
    units: Sequence[str] = UNITS,
) -> dict[str, list[str]]:
    """{"search": [...], "validation": [...], "test": [...]}: disjoint, covering `units`, fixed per seed."""
    units = list(dict.fromkeys(units))
    rng = np.random.default_rng([family_key("split"), seed])
    if test is None:
        if not 0 < n_test < len(units):
            raise ConfigError(f"n_test must be in 1..{len(units) - 1}, got {n_test}")
        test = [units[i] for i in sorted(rng.choice(len(units), n_test, replace=False))]
    test = list(dict.fromkeys(test))
    unknown = [u for u in test if u not in units]
    if unknown:
        raise ConfigError(f"unknown test unit(s) {', '.join(unknown)}; units: {', '.join(units)}")
    rest = [u for u in units if u not in test]
    if not 0 <= n_validation < len(rest):
        raise ConfigError(f"n_validation must be in 0..{len(rest) - 1} so that something is left to search")
    picked = set(rng.choice(len(rest), n_validation, replace=False).tolist())
    return {
        "search": [u for i, u in enumerate(rest) if i not in picked],
        "validation": [u for i, u in enumerate(rest) if i in picked],
        "test": test,
    }
