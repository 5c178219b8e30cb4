"""TaskSpec, the record every task is built from, and the sampler of its ID and OOD inputs.

A spec carries a per-coordinate ID box `id_box` = ((lo_1, hi_1), ..., (lo_d, hi_d)) and an OOD region
described by two pieces of data, `shift` and `coords`. Every OOD point is outside the ID box by
construction (never by rejection against the training sample):

- `coords` picks, per OOD point, the coordinates that leave the box: "all" (every coordinate) or
  "one" (one coordinate, uniform over the d inputs; the others are drawn from their ID interval).
  For d = 1 both mean the same.
- `shift` says where a coordinate that leaves goes; `ood_box` holds one interval per coordinate:
  - "right": from ood_box_j, which lies at or above hi_j (beyond one side);
  - "left":  from ood_box_j, which lies at or below lo_j;
  - "both":  from ood_box_j (above hi_j) or, by a fair coin per coordinate, its mirror image about the
             centre c_j of the ID interval (below lo_j): x -> c_j - (x - c_j); both sides;
  - "scaled": uniform over ood_box (the ID box scaled up about its centre), keeping only points with
             at least one coordinate outside the ID box (a shell around it). `coords` must be "all".

The hand-written tasks of `gpact.train.tasks` give one `id_range` and one `ood_range` for every
coordinate and a flag `ood_mirror`; their shift is "both" when `ood_mirror` (mirror about 0, their ID
range must then be centred there) and "right" otherwise. `id_box`/`ood_box` are filled in from the
ranges for them, and the sampler below draws exactly the points it drew before shift kinds existed
(same generator calls in the same order), so existing runs are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gpact.errors import ConfigError

SHIFTS = ("right", "left", "both", "scaled")
COORDS = ("all", "one")
Box = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class TaskSpec:
    """A task generator: the target function and its ID/OOD input regions."""

    name: str
    family: str  # "polynomial" | "harmonic" | "feynman" | a library family (gpact.train.library.FAMILIES)
    n_inputs: int
    fn: Callable[[np.ndarray], np.ndarray]  # x: [N, d] float64 -> y: [N]
    id_range: tuple[float, float]  # training inputs, uniform per coordinate (coordinate 0's for a library task)
    ood_range: tuple[float, float]  # scoring inputs; disjoint from id_range (coordinate 0's for a library task)
    ood_mirror: bool = False  # OOD coordinates also drawn from (-hi, -lo), random sign each (hand-written tasks)
    shift: str = ""  # "right" | "left" | "both" | "scaled"; "" = from ood_mirror
    coords: str = "all"  # "all" | "one": coordinates that leave the ID box, per OOD point
    id_box: Box = ()  # per coordinate; () = id_range on every coordinate
    ood_box: Box = ()  # per coordinate, read as `shift` says; () = ood_range on every coordinate

    def __post_init__(self) -> None:
        if not self.shift:
            object.__setattr__(self, "shift", "both" if self.ood_mirror else "right")
        if not self.id_box:
            object.__setattr__(self, "id_box", (tuple(self.id_range),) * self.n_inputs)
        if not self.ood_box:
            object.__setattr__(self, "ood_box", (tuple(self.ood_range),) * self.n_inputs)
        problem = _check(self)
        if problem:
            raise ConfigError(f"task '{self.name}': {problem}")


def _check(s: TaskSpec) -> str:
    if s.shift not in SHIFTS or s.coords not in COORDS:
        return f"shift must be one of {SHIFTS} and coords one of {COORDS}, got {s.shift!r}, {s.coords!r}"
    if s.ood_mirror and s.shift != "both":
        return "ood_mirror means shift 'both'"
    if s.ood_mirror and s.id_range[0] != -s.id_range[1]:
        return "ood_mirror draws from (-hi, -lo), the mirror image of ood_range about 0: id_range must be centred on 0"
    if s.shift == "scaled" and s.coords != "all":
        return "a scaled box has no 'one coordinate out' form"
    if len(s.id_box) != s.n_inputs or len(s.ood_box) != s.n_inputs:
        return f"id_box and ood_box need {s.n_inputs} intervals"
    for (lo, hi), (a, b) in zip(s.id_box, s.ood_box, strict=True):
        if not (lo < hi and a < b):
            return f"empty interval in {(lo, hi)} or {(a, b)}"
        outside = {"right": a >= hi, "left": b <= lo, "both": a >= hi, "scaled": a <= lo and b >= hi}[s.shift]
        if not outside:
            return f"OOD interval {(a, b)} does not lie as shift '{s.shift}' says around ID {(lo, hi)}"
    if s.shift == "scaled" and all(ab == lohi for ab, lohi in zip(s.ood_box, s.id_box, strict=True)):
        return "a scaled box equal to the ID box leaves no OOD region"
    return ""


def sample_id(spec: TaskSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """n points uniform in the ID box, float64 [n, d]."""
    lo, hi = np.array(spec.id_box, dtype=np.float64).T
    return rng.uniform(lo, hi, size=(n, spec.n_inputs))


def sample_ood(spec: TaskSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """n points of the OOD region (module docstring), float64 [n, d]; none lies in the ID box."""
    d = spec.n_inputs
    lo, hi = np.array(spec.id_box, dtype=np.float64).T
    a, b = np.array(spec.ood_box, dtype=np.float64).T
    if spec.shift == "scaled":
        out = np.empty((0, d))
        while len(out) < n:  # acceptance >= 1 - (ID volume / scaled volume); deterministic given rng
            x = rng.uniform(a, b, size=(2 * n + 8, d))
            out = np.concatenate([out, x[((x < lo) | (x >= hi)).any(axis=1)]])
        return out[:n]
    x = rng.uniform(a, b, size=(n, d))
    if spec.shift == "both":  # mirror about the ID centre by a random sign; for centre 0 this is x * sign
        centre = (lo + hi) / 2
        x = centre + rng.choice([-1.0, 1.0], size=x.shape) * (x - centre)
    if spec.coords == "one" and d > 1:
        inside = rng.uniform(lo, hi, size=(n, d))
        keep = np.arange(d)[None, :] == rng.integers(0, d, size=n)[:, None]
        x = np.where(keep, x, inside)
    return x


def ood_mask(spec: TaskSpec, x: np.ndarray) -> np.ndarray:
    """[n, d] bool: which coordinates of each point lie outside the ID box (on or beyond its edge)."""
    lo, hi = np.array(spec.id_box, dtype=np.float64).T
    return (x <= lo) | (x >= hi)
