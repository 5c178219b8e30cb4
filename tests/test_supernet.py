"""The supernet cell (gpact.train.supernet): a mixture with all its weight on one alternative per slot is that
cell, exactly; shrinking ends with one alternative per slot; clamps act only during search."""

import random

import pytest
import torch

from gpact.expr.grammar import load_grammar
from gpact.expr.templates import build, conforms, get_template
from gpact.expr.trees import compile_expr, make_pset, tree_to_sympy
from gpact.train.supernet import CellMixture


@pytest.fixture(scope="module")
def grafs():
    g = load_grammar("grafs")
    return g, get_template(g, "cell"), make_pset(g)


@pytest.mark.parametrize("mixture", ["dirichlet", "softmax"])
def test_all_weight_on_one_alternative_is_that_cell_exactly(grafs, mixture):
    grammar, template, pset = grafs
    rng = random.Random(3)
    restarts = 5
    cell = CellMixture(template, grammar, restarts, mixture=mixture, clamp=0, seed=1, dtype=torch.float64)
    picks = [{n: rng.randrange(len(s.patterns)) for n, s in template.slots.items()} for _ in range(restarts)]
    with torch.no_grad():  # betas away from their start, so the constants matter
        for p in cell.beta.values():
            p.uniform_(-1.5, 1.5, generator=torch.Generator().manual_seed(0))
            p.copy_(torch.round(p * 100) / 100)  # values a tree writes exactly
    cell.fix(picks)
    z = torch.linspace(-6, 6, 401, dtype=torch.float64).repeat(restarts, 1)
    out = cell(z)
    for r, ch in enumerate(cell.choices(picks)):
        tree = build(template, ch, grammar, pset)
        assert conforms(tree, template, grammar)
        want = compile_expr(tree_to_sympy(tree, grammar), grammar)(z[r])
        torch.testing.assert_close(out[r], want.expand_as(z[r]), rtol=1e-12, atol=1e-12, msg=str(tree))
    weights = cell.weights()
    for name in template.slots:
        assert torch.equal(weights[name].sum(1), torch.ones(restarts, dtype=torch.float64))
        assert ((weights[name] == 0) | (weights[name] == 1)).all()  # exactly one-hot


def test_shrinking_leaves_one_alternative_per_slot_and_drops_the_smallest_alpha(grafs):
    grammar, template, pset = grafs
    cell = CellMixture(template, grammar, 3, seed=2)
    before = {n: cell.alpha[n].detach().clone() for n in template.slots}
    first = cell.shrink()
    assert first == "u0"  # 23 alternatives, first of the largest slots in template order
    dropped = (~cell.alive[first]).nonzero()[:, 1]
    assert dropped.tolist() == before[first].argmin(1).tolist()
    drops = 1
    while cell.shrink() is not None:
        drops += 1
    assert drops == sum(len(s.patterns) - 1 for s in template.slots.values())
    assert set(cell.counts().values()) == {1}
    for ch in cell.choices(cell.argmax()):
        assert conforms(build(template, ch, grammar, pset), template, grammar)


def test_clamp_bounds_every_alternative_during_search(grafs):
    grammar, template, _ = grafs
    cell = CellMixture(template, grammar, 2, mixture="softmax", clamp=10.0, seed=0)
    z = torch.linspace(-100, 100, 201).repeat(2, 1)
    assert cell(z).abs().max() <= 10.0 + 1e-4
