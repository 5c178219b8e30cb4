"""Protocol randomisation: seeded per-network draws, pinning, the config record, and a run that uses it."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from gpact.cli import main
from gpact.config import ProtocolDist, RunConfig, TrainConfig
from gpact.errors import ConfigError
from gpact.train.protocol import draw, widest

BASE = TrainConfig(width=16, depth=2, steps=200, lr=1e-2)
NAMES = [f"task_{i}" for i in range(8)]


def test_draws_are_seeded_by_task_and_seed_only():
    dist = ProtocolDist()
    nets = [(n, s) for n in NAMES for s in range(4)]
    first = {k: draw(dist, BASE, *k) for k in nets}
    assert {k: draw(dist, BASE, *k) for k in reversed(nets)} == first  # any call order
    assert all(v.clip_loss == BASE.clip_loss and v.dtype == BASE.dtype for v in first.values())
    for many, one in (("widths", "width"), ("depths", "depth"), ("steps", "steps"), ("lrs", "lr")):
        assert {getattr(v, one) for v in first.values()} == set(getattr(dist, many)), many  # spread over choices
    assert len({draw(dist, BASE, "task_0", s) for s in range(8)}) > 1  # seeds differ
    assert len({draw(dist, BASE, n, 0) for n in NAMES}) > 1  # tasks differ
    salted = ProtocolDist(seed=1)
    assert any(draw(salted, BASE, *k) != first[k] for k in nets)


def test_pinning_fixes_a_field_and_leaves_the_other_draws_alone():
    dist = ProtocolDist()
    wide = dataclasses.replace(dist, widths=(32,))
    base_width = dataclasses.replace(dist, widths=())
    for name in NAMES:
        free = draw(dist, BASE, name, 1)
        assert draw(wide, BASE, name, 1) == dataclasses.replace(free, width=32)
        assert draw(base_width, BASE, name, 1) == dataclasses.replace(free, width=BASE.width)
        assert draw(ProtocolDist.fixed(), BASE, name, 1) == BASE == draw(None, BASE, name, 1)
    assert ProtocolDist.fixed().is_fixed and not dist.is_fixed
    assert widest(dist, BASE) == dataclasses.replace(BASE, width=max(dist.widths), depth=max(dist.depths))
    assert widest(ProtocolDist.fixed(), BASE) == BASE


def test_default_distribution_costs_about_todays_protocol():
    """A default run must stay within its time budget: mean width^2 x depth x steps near 16 x 16 x 2 x 200."""
    d = ProtocolDist()
    mean = sum(w * w * k * s for w in d.widths for k in d.depths for s in d.steps) / (
        len(d.widths) * len(d.depths) * len(d.steps))
    today = RunConfig().train
    assert mean / (today.width**2 * today.depth * today.steps) == pytest.approx(1, abs=0.1)


@pytest.mark.parametrize("bad, needle", [
    ({"widths": (0, 8)}, "widths, depths and steps"), ({"steps": (1.5,)}, "whole numbers"),
    ({"lrs": (0.0,)}, "lrs must be > 0"), ({"seed": -1}, "seed"),
])
def test_bad_distributions_are_config_errors(bad, needle):
    with pytest.raises(ConfigError, match=needle):
        ProtocolDist(**bad)


def test_run_config_round_trips_the_distribution():
    cfg = RunConfig(protocol=ProtocolDist(widths=(8, 12), steps=(30,), lrs=(1e-2, 3e-2), seed=5))
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # tuples come back from JSON as lists
    assert again == cfg and isinstance(again.protocol.widths, tuple)
    old = cfg.to_dict()
    del old["protocol"]  # a run saved before protocols were drawn trained every network alike
    assert RunConfig.from_dict(old).protocol == ProtocolDist.fixed()
    assert RunConfig().protocol == ProtocolDist()


def test_gpact_run_with_the_random_protocol(tmp_path):
    args = ["run", "--grammar", "grammars/minimal.yaml", "--generations", "1", "--population", "4", "--tasks",
            "smoke", "--train-seeds", "1", "--steps", "15", "--validation", "", "--test", "", "--out", str(tmp_path)]
    res = CliRunner().invoke(main, [*args, "--protocol", "random", "--lr", "0.02", "--run-id", "r"])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["train"]["steps"] == 15 and saved["train"]["lr"] == 0.02
    dist = RunConfig.from_dict(saved).protocol
    assert dist.steps == () and dist.lrs == () and dist.widths == ProtocolDist().widths  # given options pin
    res = CliRunner().invoke(main, ["run", "--resume", str(tmp_path / "r"), "--protocol", "fixed"])  # changes scores
    assert res.exit_code == 2 and f"protocol.widths: run {list(ProtocolDist().widths)}, now []" in res.output
    res = CliRunner().invoke(main, [*args, "--protocol", "fixed", "--run-id", "f"])
    assert res.exit_code == 0, res.output
    assert RunConfig.from_dict(json.loads((tmp_path / "f" / "config.json").read_text())).protocol.is_fixed


def test_yardstick_seeds_draw_the_protocol_of_the_seed_they_are_compared_with():
    """GELU's yardstick network at seed 1000 + s trains under the protocol of the candidates' seed s."""
    from gpact.config import ProtocolDist, TrainConfig
    from gpact.run.verdict import REFERENCE_SEEDS
    from gpact.train.protocol import draw

    dist, base = ProtocolDist(), TrainConfig()
    for task in ("rational/3", "feynman/I.12.4", "poly_cubic"):
        for s in range(4):
            assert draw(dist, base, task, s) == draw(dist, base, task, REFERENCE_SEEDS + s)
