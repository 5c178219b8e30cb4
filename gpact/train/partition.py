"""Which tasks a run selects on, picks its recommended function on, and reports on: three parts that
share no family (DESIGN.md §5), so a test number says how a function does on problems nothing chose it for.

A part is given like `--tasks` (suites, task names, library names, `random:N`) or as a draw from the run's
family split: "search:N", "validation:N", "test:N" deal N library tasks over that part's units of
`family_split(seed)` (the run's seed unless "@SEED" is given). Draws skip the units an earlier part already
uses (search, then validation, then test), so a run searching a hand-written suite still gets validation and
test families of its own. Whatever the parts are, `partition` refuses two parts that share a unit: nothing
from a test family can reach selection or the pick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpact.errors import ConfigError
from gpact.train.library import random_names
from gpact.train.library.splits import family_split
from gpact.train.tasks import resolve_names, split_tasks

PARTS = ("search", "validation", "test")
ROLES = {
    "search": "selected on",
    "validation": "picks the recommended function",
    "test": "reported only, never selected on",
}
_DRAW = re.compile(r"^(search|validation|test):(\d+)(?:@(\d+))?$")


@dataclass(frozen=True)
class Partition:
    """Task names per part, and the unit (family, or Feynman group) of every task named."""

    tasks: dict[str, list[str]]
    units: dict[str, str] = field(default_factory=dict)  # task name -> unit

    def families(self, part: str) -> list[str]:
        return list(dict.fromkeys(self.units[n] for n in self.tasks[part]))

    def describe(self, part: str) -> str:
        names = self.tasks[part]
        return f"{len(names)} tasks of {', '.join(self.families(part))}" if names else "none"


def is_draw(item: str) -> bool:
    """Whether `item` is a part draw such as "validation:12" or "test:8@3"."""
    return bool(_DRAW.match(item.strip()))


def draw(item: str, seed: int = 0, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The names of a part draw ("search:16", "test:8@3"), leaving out the units in `exclude`."""
    m = _DRAW.match(item.strip())
    if not m:
        raise ConfigError(f"'{item}' is not a part draw (search:N, validation:N or test:N, optionally @SEED)")
    part, n, seed = m.group(1), int(m.group(2)), int(m.group(3)) if m.group(3) else seed
    units = [u for u in family_split(seed)[part] if u not in exclude]
    if not units:
        raise ConfigError(f"'{item}': every {part} family of split seed {seed} is already used by an earlier "
                          f"part ({', '.join(sorted(exclude))}); name the tasks, or pass '' to skip the {part} part")
    return random_names(n, seed, units, stream=part)


def resolve(spec: str, seed: int = 0, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Task names of one part's spec: comma-separated `--tasks` items and part draws."""
    out: list[str] = []
    for item in (i.strip() for i in spec.split(",") if i.strip()):
        out.extend(draw(item, seed, exclude) if is_draw(item) else resolve_names(item))
    return list(dict.fromkeys(out))


def partition(search: str, validation: str = "", test: str = "", seed: int = 0) -> Partition:
    """The run's three parts; '' leaves a part empty. ConfigError when two parts share a unit."""
    if not search.strip():
        raise ConfigError("the search part needs tasks (--tasks)")
    tasks: dict[str, list[str]] = {}
    units: dict[str, str] = {}
    used: set[str] = set()
    for part, spec in zip(PARTS, (search, validation, test), strict=True):
        names = resolve(spec, seed, frozenset(used))
        part_units = split_tasks(names) if names else {}
        for name, unit in part_units.items():
            if unit in used:
                earlier = next(p for p in tasks if any(units[n] == unit for n in tasks[p]))
                raise ConfigError(f"task '{name}' of the {part} part is of family '{unit}', which the {earlier} "
                                  f"part uses: parts must not share a family (DESIGN.md §5)")
        tasks[part] = names
        units.update(part_units)
        used |= set(part_units.values())
    return Partition(tasks, units)
