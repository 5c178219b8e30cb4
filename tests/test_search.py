import random

import pytest
from deap import gp

import gpact.search.gp as search_mod
from gpact.config import RunConfig, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import load_grammar
from gpact.search.gp import Record, Search, State, pareto_front
from gpact.train.fitness import WORST, Fitness
from gpact.train.tasks import make_suite

CFG = RunConfig(grammar="minimal", population=8, generations=2, tasks="smoke", train_seeds=1,
                train=TrainConfig(width=8, steps=20), holdout="")


@pytest.fixture
def fake_eval(monkeypatch):
    """Count what reaches the trainer; score a formula by its length so results are predictable."""
    calls = []

    def fake(exprs, grammar, tasks, seeds, cfg, **kw):
        calls.append(list(exprs))
        return [Fitness(ood_score=1.0 + len(str(e)) / 100, id_loss=0.1, per_task={}, diverged=0) for e in exprs]

    monkeypatch.setattr(search_mod, "evaluate_population", fake)
    return calls


def make_search(cfg=CFG):
    return Search(cfg, load_grammar(cfg.grammar), make_suite("smoke", n_train=32, n_ood=32))


def test_initial_population_seeds_known_activations_and_respects_limits():
    random.seed(0)
    s = make_search()
    pop = s.initial_population()
    texts = [str(p) for p in pop]
    assert len(pop) == CFG.mu and len(set(texts)) == len(texts)
    assert "relu(x)" in texts and "gelu(x)" in texts
    assert all(s.within_limits(p) for p in pop)


def test_equivalent_trees_are_trained_once(fake_eval):
    s = make_search()
    state = State()
    inds = [s.individual(t) for t in ("relu(x)", "add(relu(x), mul(0.1, x))", "relu(x)", "mul(x, 1.0)", "x")]
    new, hits, rejected = s.evaluate(inds, state)
    assert new == 3 and hits == 2 and rejected == 0
    assert sum(len(c) for c in fake_eval) == 3
    assert inds[0].fitness.values == inds[2].fitness.values
    new, hits, _ = s.evaluate([s.individual("relu(x)")], state)
    assert new == 0 and hits == 1 and len(fake_eval) == 1  # nothing new: the trainer is not called again


def test_over_budget_and_constant_trees_are_rejected_before_training(fake_eval):
    s = make_search()
    deep = "gelu(gelu(gelu(gelu(gelu(x)))))"  # 45 FLOPs > minimal's 40
    inds = [s.individual(deep), s.individual("add(0.1, 1.0)")]
    new, _, rejected = s.evaluate(inds, State())
    assert rejected == 2 and new == 0 and not fake_eval
    assert all(ind.fitness.values[0] == WORST for ind in inds)


def test_variation_stays_within_limits_and_brings_new_trees(fake_eval):
    random.seed(1)
    s = make_search()
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


def test_random_trees_from_the_loop_parse_back(fake_eval):
    random.seed(2)
    s = make_search()
    pset = s.pset
    for _ in range(50):
        tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 3))
        assert str(s.individual(str(tree))) == str(tree)
