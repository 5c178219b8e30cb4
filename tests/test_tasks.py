"""Tasks: disjoint ID/OOD ranges, train-only standardisation, determinism, registry and errors."""

import numpy as np
import pytest
import torch

from gpact.errors import ConfigError
from gpact.train.tasks import BENCH_TASK, SUITES, TASKS, draw_raw, make_suite, make_task, resolve_names


def _ood_intervals(spec):
    lo, hi = spec.ood_range
    return [(lo, hi), (-hi, -lo)] if spec.ood_mirror else [(lo, hi)]


@pytest.mark.parametrize("name", list(TASKS))
def test_id_and_ood_ranges_are_disjoint(name):
    spec = TASKS[name]
    id_lo, id_hi = spec.id_range
    assert id_lo < id_hi
    for lo, hi in _ood_intervals(spec):
        assert lo < hi
        assert hi <= id_lo or lo >= id_hi, f"{name}: OOD {lo, hi} overlaps ID {spec.id_range}"


@pytest.mark.parametrize("name", list(TASKS))
def test_samples_lie_in_their_ranges_and_targets_are_finite(name):
    spec = TASKS[name]
    x_tr, y_tr, x_ood, y_ood = draw_raw(spec, 200, 200, seed=3)
    assert x_tr.shape == (200, spec.n_inputs) and y_tr.shape == (200,)
    assert x_ood.shape == (200, spec.n_inputs) and y_ood.shape == (200,)
    assert np.all((x_tr >= spec.id_range[0]) & (x_tr <= spec.id_range[1]))
    in_ood = np.zeros_like(x_ood, dtype=bool)
    for lo, hi in _ood_intervals(spec):
        in_ood |= (x_ood >= lo) & (x_ood <= hi)
    assert in_ood.all()
    assert np.isfinite(y_tr).all() and np.isfinite(y_ood).all()
    assert y_tr.std() > 1e-3  # not a constant target


def test_mirrored_ood_covers_both_sides():
    _, _, x_ood, _ = draw_raw(TASKS["poly_cubic"], 10, 400, seed=0)
    assert (x_ood > 1).sum() > 100 and (x_ood < -1).sum() > 100


@pytest.mark.parametrize("name", ["poly_2d", "feynman_I.12.4", "harmonic_3", BENCH_TASK,  # hand-written
                                  "polynomial/5", "rational/2", "kink/7", "powers/1", "feynman/I.12.4"])  # library
def test_standardised_with_train_statistics_only(name):
    task = make_task(name, n_train=128, n_ood=64, seed=5)
    x_tr, y_tr, x_ood, y_ood = draw_raw(task.spec, 128, 64, seed=5)
    assert task.x_train.dtype == torch.float32 and task.y_train.shape == (128, 1)
    assert task.x_ood.shape == (64, task.spec.n_inputs) and task.y_ood.shape == (64, 1)
    np.testing.assert_allclose(task.x_train.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(task.x_train.numpy().std(0), 1, atol=1e-5)
    np.testing.assert_allclose(task.y_train.numpy().std(), 1, atol=1e-5)
    # the OOD split is shifted and scaled by the TRAIN statistics, recomputed here from raw samples
    x_exp = (x_ood - x_tr.mean(0)) / x_tr.std(0)
    y_exp = (y_ood - y_tr.mean()) / y_tr.std()
    np.testing.assert_allclose(task.x_ood.numpy(), x_exp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(task.y_ood.numpy()[:, 0], y_exp, rtol=1e-5, atol=1e-5)
    # ...and it is genuinely out of distribution: not standardised by its own statistics
    assert abs(float(task.x_ood.mean())) > 0.5 or abs(float(task.x_ood.std()) - 1) > 0.2


def test_deterministic_and_seed_dependent():
    a = make_task("harmonic_2", n_train=64, n_ood=32, seed=1)
    b = make_task("harmonic_2", n_train=64, n_ood=32, seed=1)
    c = make_task("harmonic_2", n_train=64, n_ood=32, seed=2)
    for f in ("x_train", "y_train", "x_ood", "y_ood"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.x_train, c.x_train)


def test_no_global_rng_use():
    np.random.seed(0)
    torch.manual_seed(0)
    before = (np.random.random(), torch.rand(1).item())
    np.random.seed(0)
    torch.manual_seed(0)
    make_task("poly_cubic", n_train=16, n_ood=16)
    assert (np.random.random(), torch.rand(1).item()) == before


def test_tasks_with_same_seed_get_different_points():
    a, b = make_suite(["poly_cubic", "harmonic_2"], n_train=32, n_ood=8, seed=0)
    assert not np.allclose(a.x_train.numpy(), b.x_train.numpy())


def test_ood_points_do_not_depend_on_n_train():
    _, _, x1, _ = draw_raw(TASKS["poly_cubic"], 16, 32, seed=0)
    _, _, x2, _ = draw_raw(TASKS["poly_cubic"], 64, 32, seed=0)
    np.testing.assert_array_equal(x1, x2)


def test_unknown_names_raise_config_error():
    with pytest.raises(ConfigError, match="unknown task 'nope'; known: .*poly_cubic"):
        make_task("nope")
    with pytest.raises(ConfigError, match="nope"):
        make_suite("nope")
    with pytest.raises(ConfigError):
        make_task("poly_cubic", seed=-1)


def test_suites():
    assert set(SUITES) >= {"default", "smoke", "holdout", "bench", "all"}
    for names in SUITES.values():
        assert names and all(n in TASKS for n in names)
    assert set(SUITES["all"]) == set(TASKS)
    assert 6 <= len(SUITES["default"]) <= 8
    assert {TASKS[n].family for n in SUITES["default"]} == {"polynomial", "harmonic", "feynman"}
    assert not set(SUITES["holdout"]) & set(SUITES["default"])  # never used for selection
    assert len(SUITES["smoke"]) == 2 and all(TASKS[n].n_inputs == 1 for n in SUITES["smoke"])
    assert SUITES["bench"] == (BENCH_TASK,)


def test_feynman_family():
    feyn = [s for s in TASKS.values() if s.family == "feynman"]
    assert len(feyn) >= 6
    assert {s.n_inputs for s in feyn} == {1, 2, 3}
    assert all(s.name.startswith("feynman_I") for s in feyn)


def test_make_suite_resolves_names():
    assert resolve_names("smoke") == list(SUITES["smoke"])
    assert resolve_names("poly_cubic, smoke") == ["poly_cubic", "harmonic_2"]
    tasks = make_suite("smoke", n_train=16, n_ood=8)
    assert [t.spec.name for t in tasks] == list(SUITES["smoke"])


def test_bench_task_matches_the_reference_protocol():
    spec = TASKS[BENCH_TASK]
    x = np.array([[0.0], [0.5], [1.5]])
    np.testing.assert_allclose(spec.fn(x), np.sin(3 * x[:, 0]) + x[:, 0] ** 2)
    assert spec.id_range == (-1.0, 1.0) and spec.ood_range == (1.0, 2.0) and not spec.ood_mirror
