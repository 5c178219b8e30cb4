"""Task library: seeded family generators, shift kinds, the Feynman table, random:N draws, family splits."""

import zlib
from collections import Counter

import numpy as np
import pytest
import torch

from gpact.errors import ConfigError
from gpact.train.library import (
    FAMILIES,
    FEYNMAN_UNITS,
    MAX_RANGE,
    UNITS,
    check,
    equations,
    library_spec,
    random_names,
    unit_names,
)
from gpact.train.library.feynman import parse_table
from gpact.train.library.spec import TaskSpec, ood_mask, sample_ood
from gpact.train.library.splits import DEFAULT_TEST, family_split
from gpact.train.tasks import SUITES, TASKS, draw_raw, get_spec, make_suite, make_task, resolve_names, split_tasks

FIELDS = ("x_train", "y_train", "x_ood", "y_ood")
INDICES = range(12)  # per family: enough draws to see every shift kind and 1..3 inputs


def _all_drawn():
    return [library_spec(f"{f}/{i}") for f in FAMILIES for i in INDICES]


def _assert_ood_as_shift_says(spec, x_ood):
    lo, hi = np.array(spec.id_box).T
    a, b = np.array(spec.ood_box).T
    out = ood_mask(spec, x_ood)
    assert out.any(axis=1).all(), f"{spec.name}: an OOD point lies in the ID box"
    inside = (x_ood >= lo) & (x_ood < hi)
    if spec.shift == "scaled":
        assert ((x_ood >= a) & (x_ood <= b)).all()
        return
    if spec.coords == "one" and spec.n_inputs > 1:
        assert (out.sum(axis=1) == 1).all() and (out | inside).all()
    else:
        assert out.all()
    side = {"right": x_ood >= hi, "left": x_ood <= lo, "both": (x_ood >= hi) | (x_ood <= lo)}[spec.shift]
    assert side[out].all()
    if spec.shift == "both" and out.sum() > 100:
        assert (x_ood >= hi)[out].mean() > 0.3 and (x_ood <= lo)[out].mean() > 0.3


def test_every_family_draws_deterministic_distinct_tasks():
    for fam in FAMILIES:
        a, b = make_task(f"{fam}/3", 64, 32, seed=1), make_task(f"{fam}/3", 64, 32, seed=1)
        assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in FIELDS), fam
        c = make_task(f"{fam}/4", 64, 32, seed=1)
        assert not torch.equal(a.y_train, c.y_train)
        assert a.spec.family == fam and a.spec.name == f"{fam}/3"
        # the parameters are the name's: a new spec object for the same name is the same function
        x = np.random.default_rng(0).uniform(-1, 1, (50, a.spec.n_inputs)) + np.array(a.spec.id_box)[:, 1]
        np.testing.assert_array_equal(library_spec(f"{fam}/3").fn(x), a.spec.fn(x))


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_family_draws_are_guarded_finite_and_ood_disjoint(fam):
    specs = [library_spec(f"{fam}/{i}") for i in INDICES]
    for spec in specs:
        assert check(spec) == ""
        x_tr, y_tr, x_ood, y_ood = draw_raw(spec, 200, 300, seed=2)
        lo, hi = np.array(spec.id_box).T
        assert ((x_tr >= lo) & (x_tr < hi)).all()
        _assert_ood_as_shift_says(spec, x_ood)
        assert np.isfinite(y_tr).all() and np.isfinite(y_ood).all() and y_tr.std() > 0
        spread = max(np.abs(y_tr - y_tr.mean()).max(), np.abs(y_ood - y_tr.mean()).max()) / y_tr.std()
        assert spread < 2 * MAX_RANGE  # bounded dynamic range on a sample other than the guard's probe
    assert len({s.n_inputs for s in specs}) >= 2


def test_all_shift_kinds_and_coords_occur():
    specs = _all_drawn()
    seen = Counter((s.shift, s.coords if s.n_inputs > 1 else "1d") for s in specs)
    for kind in ("right", "left", "both", "scaled"):
        assert any(k == kind for k, _ in seen), kind
    assert seen[("right", "one")] + seen[("left", "one")] + seen[("both", "one")] > 0
    assert any(c == "all" for _, c in seen)
    assert {s.shift for s in specs if s.family == "logsqrt"} == {"right"}  # keeps log/sqrt arguments > 0


def test_scaled_shift_is_a_shell_around_the_box():
    spec = TaskSpec("shell", "test", 2, lambda x: x.sum(1), (-1.0, 1.0), (-2.0, 2.0), shift="scaled")
    x = sample_ood(spec, np.random.default_rng(0), 2000)
    assert x.shape == (2000, 2) and (np.abs(x) <= 2).all() and (np.abs(x) >= 1).any(axis=1).all()
    assert (np.abs(x) < 1).any(axis=1).mean() > 0.3  # most of the shell has one coordinate still inside


def test_one_coordinate_out():
    spec = TaskSpec("one", "test", 3, lambda x: x.sum(1), (0.0, 1.0), (1.0, 2.0), coords="one")
    x = sample_ood(spec, np.random.default_rng(0), 3000)
    out = x >= 1
    assert (out.sum(1) == 1).all() and (x >= 0).all() and (x <= 2).all()
    assert min(Counter(out.argmax(1).tolist()).values()) > 800  # every coordinate takes its turn


def test_specs_refuse_overlapping_or_malformed_regions():
    f = lambda x: x[:, 0]  # noqa: E731
    with pytest.raises(ConfigError, match="does not lie"):
        TaskSpec("bad", "t", 1, f, (0.0, 2.0), (1.0, 3.0))
    with pytest.raises(ConfigError, match="does not lie"):
        TaskSpec("bad", "t", 1, f, (0.0, 2.0), (-1.0, 0.5), shift="left")
    with pytest.raises(ConfigError, match="scaled"):
        TaskSpec("bad", "t", 2, f, (0.0, 1.0), (-1.0, 2.0), shift="scaled", coords="one")
    with pytest.raises(ConfigError, match="centred on 0"):
        TaskSpec("bad", "t", 1, f, (1.0, 3.0), (3.0, 5.0), ood_mirror=True)
    with pytest.raises(ConfigError):
        TaskSpec("bad", "t", 1, f, (0.0, 1.0), (1.0, 2.0), shift="sideways")


def test_guard_refuses_constant_exploding_and_nonfinite_targets():
    box = dict(id_range=(0.0, 1.0), ood_range=(1.0, 2.0))
    assert "constant" in check(TaskSpec("c", "t", 1, lambda x: 0 * x[:, 0] + 3.0, **box))
    assert "dynamic range" in check(TaskSpec("e", "t", 1, lambda x: np.exp(8 * x[:, 0]), **box))
    assert "finite" in check(TaskSpec("n", "t", 1, lambda x: np.log(x[:, 0] - 1.5), **box))
    assert check(TaskSpec("ok", "t", 1, lambda x: np.sin(3 * x[:, 0]), **box)) == ""


def test_hand_written_tasks_draw_exactly_as_before():
    """The sampler of the first gpact, inlined: shift kinds must not move one point of an existing task."""
    for name, spec in TASKS.items():
        key = zlib.crc32(name.encode())
        r_tr, r_ood = np.random.default_rng([4, key, 0]), np.random.default_rng([4, key, 1])
        x_tr = r_tr.uniform(*spec.id_range, size=(33, spec.n_inputs))
        x_ood = r_ood.uniform(*spec.ood_range, size=(21, spec.n_inputs))
        if spec.ood_mirror:
            x_ood *= r_ood.choice([-1.0, 1.0], size=x_ood.shape)
        got = draw_raw(spec, 33, 21, seed=4)
        for want, have in zip((x_tr, spec.fn(x_tr), x_ood, spec.fn(x_ood)), got, strict=True):
            assert want.tobytes() == have.tobytes(), name
        assert spec.shift == ("both" if spec.ood_mirror else "right") and spec.coords == "all"


def test_names_resolve_and_errors_are_config_errors():
    assert resolve_names("smoke, rational/3, feynman/II.3.24") == [*SUITES["smoke"], "rational/3", "feynman/II.3.24"]
    tasks = make_suite("bump/1,feynman/I.6.2a", n_train=16, n_ood=8)
    assert [t.spec.name for t in tasks] == ["bump/1", "feynman/I.6.2a"]
    for bad in ("nosuch/3", "rational/x", "feynman/IV.1", "random:3@x", "rational/-1"):
        with pytest.raises(ConfigError):
            resolve_names(bad)
    with pytest.raises(ConfigError, match="Feynman"):
        get_spec("feynman/I.99")


def test_random_draws_are_deterministic_distinct_and_spread():
    names = resolve_names("random:140")
    assert names == random_names(140, 0) == resolve_names("random:140@0")
    assert len(set(names)) == 140
    units = Counter(split_tasks(names).values())
    assert set(units) == set(UNITS) and max(units.values()) - min(units.values()) <= 1
    other = resolve_names("random:140@1")
    assert other != names and len(set(other) & set(names)) < 70
    assert resolve_names("random:5@7") == random_names(140, 7)[:5]
    t = make_suite("random:3@2", n_train=16, n_ood=8)
    assert [x.spec.name for x in t] == random_names(3, 2)


def test_random_draws_run_out_only_when_feynman_is_exhausted():
    big = random_names(1000, 3)
    feyn = [n for n in big if n.startswith("feynman/")]
    assert len(feyn) == len(set(feyn)) == len(equations())  # every equation once, then only generators
    assert len(big) == len(set(big)) == 1000


def test_family_split_is_disjoint_deterministic_and_by_family():
    a = family_split(0)
    assert a == family_split(0) and a["test"] == list(DEFAULT_TEST)
    parts = [set(a[k]) for k in ("search", "validation", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(UNITS)
    assert {tuple(family_split(s)["validation"]) for s in range(10)} != {tuple(a["validation"])}
    assert all(family_split(s)["test"] == list(DEFAULT_TEST) for s in range(5))
    drawn = family_split(5, test=None, n_test=3)
    assert len(drawn["test"]) == 3 and drawn == family_split(5, test=None, n_test=3)
    with pytest.raises(ConfigError):
        family_split(0, test=["nosuch"])
    with pytest.raises(ConfigError):
        family_split(0, n_validation=len(UNITS))


def test_split_tasks_maps_tasks_to_their_unit():
    got = split_tasks("default,holdout,bench,rational/3,feynman/III.15.12,feynman/II.3.24")
    assert got["poly_cubic"] == "polynomial" and got["harmonic_2"] == "harmonic"
    assert got["feynman_I.12.4"] == "feynman-I" and got["feynman_II.3.24"] == "feynman-II"
    assert got["rational/3"] == "rational" and got["feynman/III.15.12"] == "feynman-III"
    assert got["feynman/II.3.24"] == got["feynman_II.3.24"]  # same equation, same unit
    assert not set(got[n] for n in SUITES["default"] + SUITES["holdout"]) & set(DEFAULT_TEST)


def test_feynman_table_loads_and_every_equation_evaluates():
    eqs = equations()
    assert len(eqs) >= 95 and len({e.id for e in eqs.values()}) == len(eqs)
    assert {e.group for e in eqs.values()} == {"I", "II", "III"}
    assert sum(len(unit_names(u)) for u in FEYNMAN_UNITS) == len(eqs)
    for eid, eq in eqs.items():
        spec = library_spec(f"feynman/{eid}")
        assert spec.family == f"feynman-{eq.group}" and spec.n_inputs == len(eq.variables)
        assert check(spec) == "", eid
        for (_, lo, hi), (a, m), (m2, b) in zip(eq.variables, spec.id_box, spec.ood_box, strict=True):
            assert (a, b) == (lo, hi) and m == m2 == (lo + hi) / 2  # lower half trains, upper half scores


def test_feynman_formulas_match_the_physics():
    x = np.array([[2.0, 3.0, 1.5]])
    np.testing.assert_allclose(library_spec("feynman/I.12.4").fn(x), 2 / (4 * np.pi * 3 * 1.5**2))
    np.testing.assert_allclose(library_spec("feynman/I.26.2").fn(np.array([[0.5, 1.0]])), np.arcsin(0.5 * np.sin(1)))
    np.testing.assert_allclose(library_spec("feynman/I.44.4").fn(np.array([[1.0, 2, 3, 2, 4]])), 6 * np.log(2))
    # the hand-written feynman_* tasks compute the same equations
    for eid in ("I.14.3", "I.29.4", "II.3.24", "I.37.4"):
        z = np.random.default_rng(0).uniform(1, 5, (20, TASKS[f"feynman_{eid}"].n_inputs))
        np.testing.assert_allclose(library_spec(f"feynman/{eid}").fn(z), TASKS[f"feynman_{eid}"].fn(z), rtol=1e-12)


def test_feynman_table_errors_name_the_row():
    head = "id,group,output,formula,v1_name,v1_low,v1_high\n"
    with pytest.raises(ConfigError, match="I.1"):
        parse_table(head + "I.1,II,f,x,x,1,5\n")
    with pytest.raises(ConfigError, match="repeated"):
        parse_table("# c\n" + head + "I.1,I,f,x,x,1,5\nI.1,I,f,x,x,1,5\n")
    with pytest.raises(ConfigError, match="range"):
        parse_table(head + "I.1,I,f,x,x,one,5\n")
