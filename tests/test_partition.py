"""The run's three parts (search, validation, test) never share a family, whatever the user passes."""

import pytest

from gpact.errors import ConfigError
from gpact.train.library.splits import DEFAULT_TEST
from gpact.train.partition import draw, partition
from gpact.train.tasks import split_tasks


def test_default_parts_are_disjoint_by_family_and_seeded():
    p = partition("search:16", "validation:12", "test:12", seed=0)
    units = {part: set(p.families(part)) for part in p.tasks}
    assert len(p.tasks["search"]) == 16 and len(p.tasks["validation"]) == 12 and len(p.tasks["test"]) == 12
    assert not units["search"] & units["validation"] and not (units["search"] | units["validation"]) & units["test"]
    assert units["test"] == set(DEFAULT_TEST)
    assert partition("search:16", "validation:12", "test:12", seed=0) == p
    assert partition("search:16", "validation:12", "test:12", seed=1).tasks["search"] != p.tasks["search"]


def test_draws_skip_families_an_earlier_part_uses():
    """A hand-written search suite still gets validation and test families of its own."""
    p = partition("smoke,rational/3", "validation:6", "test:6", seed=2)
    searched = set(split_tasks(p.tasks["search"]).values())
    assert "rational" in searched
    for part in ("validation", "test"):
        assert not set(p.families(part)) & searched
    assert "rational" not in p.families("test")


@pytest.mark.parametrize("search, validation, test", [
    ("rational/3", "rational/4", ""),
    ("smoke", "", "damped/1,smoke"),
    ("powers/2", "", "test:4,powers/9"),
])
def test_parts_that_share_a_family_are_refused(search, validation, test):
    with pytest.raises(ConfigError, match="must not share a family"):
        partition(search, validation, test)


def test_bad_parts_are_clear_errors():
    with pytest.raises(ConfigError, match="needs tasks"):
        partition("", "validation:2")
    with pytest.raises(ConfigError, match="already used"):
        draw("test:3@0", exclude=frozenset(DEFAULT_TEST))
    with pytest.raises(ConfigError, match="unknown task"):
        partition("search:4", "nonsense")


def test_eval_takes_part_draws():
    """`gpact eval --tasks test:N` scores on the test families a run reports on (same seed, same tasks)."""
    from click.testing import CliRunner

    from gpact.cli import main

    res = CliRunner().invoke(main, ["eval", "relu", "--tasks", "test:2@0", "--seeds", "1", "--steps", "5",
                                    "--width", "4"])
    assert res.exit_code == 0, res.output
    assert "2 tasks x 1 seeds" in res.output
