"""The task library: seeded family generators and the Feynman table, addressed by name.

Names rebuild their task from nothing else (workers of distributed backends rebuild tasks from names):

- "<family>/<index>", e.g. "rational/17": generator `family` (families.py) draws from
  np.random.default_rng([key(family), index]), key(family) = crc32 of the family name; while the draw
  fails the guard below, it draws again from the same generator, so the name always gives one task.
- "feynman/<id>", e.g. "feynman/I.12.4": one row of the Feynman data file (feynman.py).
- "random:N" or "random:N@SEED" (SEED defaults to 0) expands to N distinct names of the above, dealt
  round-robin over a seeded shuffle of all split units (the generator families and the three Feynman
  groups), so every unit gets N / 14 names give or take one while it has names left.

The guard (`check`) refuses a drawn task unless, on a fixed probe sample of its ID box and its OOD
region, the target is finite, not constant on the ID box (std > 1e-8 * max |y|), and of bounded
dynamic range: max |y - mean_ID| / std_ID <= MAX_RANGE over both samples. Targets that grow too fast
outside the box (the issue: suites dominated by them reward linear extrapolation) are redrawn.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

from gpact.errors import ConfigError
from gpact.train.library.families import GENERATORS, Drawn
from gpact.train.library.feynman import GROUPS, equations, feynman_spec
from gpact.train.library.spec import TaskSpec, sample_id, sample_ood

FAMILIES = {g.name: g for g in GENERATORS}
FEYNMAN_UNITS = tuple(f"feynman-{g}" for g in GROUPS)
UNITS = (*FAMILIES, *FEYNMAN_UNITS)  # what splits by family deal out
MAX_RANGE = 60.0  # the hand-written tasks reach 24, the Feynman table 49; steep polynomials and powers redraw
MAX_TRIES = 200
PROBE_POINTS = 512
_NAME = re.compile(r"^([a-z]+)/(\d+)$")
_RANDOM = re.compile(r"^random:(\d+)(?:@(\d+))?$")


def family_key(family: str) -> int:
    return zlib.crc32(family.encode())


def check(spec: TaskSpec) -> str:
    """'' when the guard (module docstring) accepts the task, else the reason it refuses it."""
    rng = np.random.default_rng([family_key("probe")])
    with np.errstate(all="ignore"):
        y_id, y_ood = spec.fn(sample_id(spec, rng, PROBE_POINTS)), spec.fn(sample_ood(spec, rng, PROBE_POINTS))
    if not (np.isfinite(y_id).all() and np.isfinite(y_ood).all()):
        return "target not finite"
    mean, std = y_id.mean(), y_id.std()
    if not std > 1e-8 * np.abs(y_id).max():
        return "target constant on the ID box"
    spread = max(np.abs(y_id - mean).max(), np.abs(y_ood - mean).max()) / std
    if spread > MAX_RANGE:
        return f"dynamic range {spread:.0f} > {MAX_RANGE:.0f} standard deviations of the ID target"
    return ""


def is_library_name(name: str) -> bool:
    """Whether `name` has the form of a library name (the index or Feynman id may still not exist)."""
    m = _NAME.match(name)
    return name.startswith("feynman/") or bool(m and m.group(1) in FAMILIES)


def _spec(name: str, family: str, drawn: Drawn) -> TaskSpec:
    return TaskSpec(name, family, drawn.n_inputs, drawn.fn, drawn.id_box[0], drawn.ood_box[0], shift=drawn.shift,
                    coords=drawn.coords, id_box=drawn.id_box, ood_box=drawn.ood_box)


def library_spec(name: str) -> TaskSpec:
    """The spec a library name stands for; ConfigError for a name that is not one."""
    if name.startswith("feynman/"):
        eq = equations().get(name.removeprefix("feynman/"))
        if eq is None:
            raise ConfigError(f"unknown Feynman equation '{name}'; known: {', '.join(equations())}")
        return feynman_spec(eq, name)
    m = _NAME.match(name)
    if not m or m.group(1) not in FAMILIES:
        raise ConfigError(f"'{name}' is not a library task: '<family>/<index>' with family one of "
                          f"{', '.join(FAMILIES)}, or 'feynman/<id>'")
    family, index = m.group(1), int(m.group(2))
    rng = np.random.default_rng([family_key(family), index])
    reasons = []
    for _ in range(MAX_TRIES):
        spec = _spec(name, family, FAMILIES[family].draw(rng))
        reason = check(spec)
        if not reason:
            return spec
        reasons.append(reason)
    raise ConfigError(f"task '{name}': no draw passed the guard in {MAX_TRIES} tries (last: {reasons[-1]})")


def unit_names(unit: str) -> list[str]:
    """Every name of a Feynman unit (generator families have unboundedly many)."""
    group = unit.removeprefix("feynman-")
    return [f"feynman/{e.id}" for e in equations().values() if e.group == group]


def random_names(n: int, seed: int = 0, units: Sequence[str] = UNITS, stream: str = "random") -> list[str]:
    """N distinct library names dealt across `units` by `seed` (module docstring); `stream` names the
    random stream, so draws for different purposes (a run's search and validation tasks) are independent."""
    unknown = [u for u in units if u not in UNITS]
    if unknown or not units:
        raise ConfigError(f"unknown unit(s) {', '.join(unknown) or '(none given)'}; units: {', '.join(UNITS)}")
    rng = np.random.default_rng([family_key(stream), seed])
    pools = {u: list(rng.permutation(unit_names(u))) for u in FEYNMAN_UNITS if u in units}
    used: set[str] = set()
    out: list[str] = []
    live = list(dict.fromkeys(units))
    while len(out) < n:
        if not live:
            raise ConfigError(f"{n} tasks asked of {', '.join(units)}: more than the library has")
        for unit in [live[i] for i in rng.permutation(len(live))]:
            if len(out) == n:
                break
            if unit in pools:
                if not pools[unit]:
                    live.remove(unit)
                    continue
                name = str(pools[unit].pop())
            else:
                name = f"{unit}/{int(rng.integers(0, 1_000_000))}"
                while name in used:
                    name = f"{unit}/{int(rng.integers(0, 1_000_000))}"
            used.add(name)
            out.append(name)
    return out


def expand_random(item: str) -> list[str] | None:
    """The names of a 'random:N[@SEED]' item, or None when `item` is not of that form."""
    m = _RANDOM.match(item)
    if not m:
        return None
    return random_names(int(m.group(1)), int(m.group(2) or 0))
