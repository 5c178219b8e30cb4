import random

import pytest
from deap import gp

from gpact.config import RunConfig, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import load_grammar
from gpact.search.gp import Search
from gpact.search.records import Record, State, pareto_front
from gpact.train.fitness import WORST, Fitness
from gpact.train.tasks import make_suite

CFG = RunConfig(grammar="minimal", population=8, generations=2, tasks="smoke", train_seeds=1,
                train=TrainConfig(width=8, steps=20), validation="", test="")


class FakeBackend:
    """Counts what reaches the trainer; scores a formula by its length so results are predictable."""

    name, faults = "fake", []

    def __init__(self):
        self.calls = []

    def evaluate(self, exprs, grammar, tasks, seeds, cfg, **kw):
        self.calls.append(list(exprs))
        return [Fitness(ood_score=1.0 + len(str(e)) / 100, id_loss=0.1, per_task={}, diverged=0) for e in exprs]


@pytest.fixture
def backend():
    return FakeBackend()


def make_search(backend, cfg=CFG):
    return Search(cfg, load_grammar(cfg.grammar), make_suite("smoke", n_train=32, n_ood=32), backend)


def test_initial_population_seeds_known_activations_and_respects_limits(backend):
    random.seed(0)
    s = make_search(backend)
    pop = s.initial_population()
    texts = [str(p) for p in pop]
    assert len(pop) == CFG.mu and len(set(texts)) == len(texts)
    assert "relu(x)" in texts and "gelu(x)" in texts
    assert all(s.within_limits(p) for p in pop)


def test_equivalent_trees_are_trained_once(backend):
    s = make_search(backend)
    state = State()
    inds = [s.individual(t) for t in ("relu(x)", "add(relu(x), mul(0.1, x))", "relu(x)", "mul(x, 1.0)", "x")]
    new, hits, rejected = s.evaluate(inds, state)
    assert new == 3 and hits == 2 and rejected == 0
    assert sum(len(c) for c in backend.calls) == 3
    assert inds[0].fitness.values == inds[2].fitness.values
    new, hits, _ = s.evaluate([s.individual("relu(x)")], state)
    assert new == 0 and hits == 1 and len(backend.calls) == 1  # nothing new: the trainer is not called again


def test_over_budget_and_constant_trees_are_rejected_before_training(backend):
    s = make_search(backend)
    deep = "gelu(gelu(gelu(gelu(gelu(x)))))"  # 45 FLOPs > minimal's 40
    inds = [s.individual(deep), s.individual("add(0.1, 1.0)")]
    new, _, rejected = s.evaluate(inds, State())
    assert rejected == 2 and new == 0 and not backend.calls
    assert all(ind.fitness.values[0] == WORST for ind in inds)


def test_variation_stays_within_limits_and_brings_new_trees(backend):
    random.seed(1)
    s = make_search(backend)
    state = State()
    pop = s.start(state)
    for _ in range(3):
        pop, stats = s.step(pop, state)
    assert state.generation == 3 and len(pop) == CFG.mu
    assert all(s.within_limits(p) for p in pop)
    assert state.evaluations > CFG.mu  # later generations trained new functions


def test_pareto_front_is_non_dominated_and_sorted():
    def rec(k, flops, score):
        return Record(key=k, formula=k, tree=k, flops=flops, ood_score=score, id_loss=0, generation=0)

    recs = [rec("a", 1, 5.0), rec("b", 2, 4.0), rec("c", 3, 4.5), rec("d", 9, 1.0), rec("e", 0, WORST),
            rec("f", 2, 4.0)]
    front = pareto_front(recs)
    assert [r.key for r in front] == ["d", "b", "a"]


def test_config_validation_and_round_trip():
    assert RunConfig.from_dict(CFG.to_dict()) == CFG
    assert RunConfig(population=6).mu == 8
    with pytest.raises(ConfigError):
        RunConfig(population=2)
    with pytest.raises(ConfigError, match="unknown run config keys"):
        RunConfig.from_dict({"colour": 1})


def test_random_trees_from_the_loop_parse_back(backend):
    random.seed(2)
    s = make_search(backend)
    pset = s.pset
    for _ in range(50):
        tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 3))
        assert str(s.individual(str(tree))) == str(tree)


SIGNS = """name: signs
description: a space where sign flips are one mutation away.
primitives:
  neg: {arity: 1, sympy: "-a", cost: 1}
  tanh: {arity: 1, sympy: "tanh(a)", cost: 5}
  relu: {arity: 1, sympy: "Max(a, 0)", torch: torch.relu, cost: 1, inline: false}
  sin: {arity: 1, sympy: "sin(a)", cost: 4}
  add: {arity: 2, sympy: "a + b", cost: 1}
  mul: {arity: 2, sympy: "a * b", cost: 1}
terminals:
  constants: [0.5, 2]
limits: {max_height: 4, max_size: 9, max_flops: 30, init_min_height: 1, init_max_height: 2}
"""


def test_a_run_never_trains_a_sign_mirror_of_a_function_it_trained(tmp_path):
    """-f(x), f(-x) and -f(-x) train like f in distribution: `gpact run` varies such a child again instead."""
    import json

    from click.testing import CliRunner

    from gpact.cli import main
    from gpact.expr.fingerprint import mirror_keys, probe_values
    from gpact.expr.trees import analyse, formula_to_sympy

    grammar = tmp_path / "signs.yaml"
    grammar.write_text(SIGNS)
    res = CliRunner().invoke(main, ["run", "--grammar", str(grammar), "--generations", "8", "--population", "8",
                                    "--seed", "0", "--tasks", "smoke", "--train-seeds", "1", "--steps", "3",
                                    "--width", "4", "--validation", "", "--test", "", "--out", str(tmp_path),
                                    "--run-id", "m"])
    assert res.exit_code == 0, res.output
    g = load_grammar(str(grammar))
    rows = [json.loads(line) for line in (tmp_path / "m" / "candidates.jsonl").read_text().splitlines()]
    keys = {r["key"] for r in rows}
    assert len(keys) > 30  # the premise: enough functions trained for mirrors to have come up
    for r in rows:
        an = analyse(formula_to_sympy(r["tree"], g), g)
        assert not mirror_keys(an.expr, probe_values(an.expr, g), g) & keys, r["formula"]
