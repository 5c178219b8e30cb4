"""Templates: the published spaces' sizes, staying inside a template under variation, validation errors,
and the bottom-up distinct-function count against brute force."""

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gpact.errors import GrammarError
from gpact.expr.grammar import grammar_from_dict, load_grammar
from gpact.expr.templates import (
    bounds,
    build,
    conforms,
    count_distinct,
    enumerate_trees,
    equivalence_inputs,
    function_keys,
    get_template,
    match,
    pick_template,
    template_names,
    to_text,
)
from gpact.expr.trees import compile_expr, make_pset, parse_tree, tree_to_sympy
from gpact.search.operators import crossover_in_template, mutate_in_template, random_choices, random_tree

SPACES = [("aquasurf", "unit", 5103, (27, 7)), ("grafs", "cell", 23**4 * 9**2, (23, 9)),
          ("swish", "unit", 25 * 25 * 10, (25, 10)), ("swish", "two_units", 25**4 * 10**2, (25, 10))]


@pytest.mark.parametrize("grammar, name, names, ops", SPACES)
def test_published_space_sizes(grammar, name, names, ops):
    g = load_grammar(grammar)
    t = get_template(g, name)
    assert t.names == names
    sizes = {len(s.labels) for s in t.slots.values()}
    assert sizes == set(ops)  # every unary slot has the paper's unary list, every binary slot the binary one


@pytest.mark.parametrize("grammar, name", [(s[0], s[1]) for s in SPACES])
def test_short_run_stays_inside_template(grammar, name):
    """A small GP loop (random init, in-template mutation and crossover, truncation on tree size) never
    leaves the template or the grammar's limits, and every tree compiles to finite outputs."""
    g = load_grammar(grammar)
    pset = make_pset(g)
    t = get_template(g, name)
    rng = random.Random(1)
    pop = [random_tree(t, g, pset, rng) for _ in range(16)]
    seen = set()
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    for _ in range(6):
        children = []
        for a, b in zip(pop[::2], pop[1::2], strict=True):
            a, b = type(a)(a), type(b)(b)
            crossover_in_template(a, b, t, g, pset, rng)
            children += [mutate_in_template(a, t, g, pset, rng), b]
        pop = sorted(pop + children, key=len)[:16]
        for tree in pop:
            assert conforms(tree, t, g), str(tree)
            assert tree.height <= g.limits.max_height and len(tree) <= g.limits.max_size
            seen.add(str(tree))
    for text in sorted(seen)[:20]:
        with torch.no_grad():
            y = compile_expr(tree_to_sympy(parse_tree(text, g, pset), g), g)(x)
        assert torch.isfinite(y).all(), text
    assert len(seen) > 16  # variation did produce new trees


@pytest.mark.parametrize("grammar", ["aquasurf", "grafs", "swish"])
def test_limits_cover_every_template_tree(grammar):
    g = load_grammar(grammar)
    for name in template_names(g):
        height, size = bounds(get_template(g, name))
        assert height <= g.limits.max_height and size <= g.limits.max_size


def test_match_recovers_choices_and_text_round_trips():
    g = load_grammar("grafs")
    pset = make_pset(g)
    t = get_template(g, "cell")
    rng = random.Random(3)
    for _ in range(50):
        choices = random_choices(t, g, rng)
        tree = build(t, choices, g, pset)
        again = build(t, {**choices, **match(tree, t, g)}, g, pset)
        assert str(again) == str(tree)
        assert str(parse_tree(to_text(t, choices), g, pset)) == str(tree)


def test_trees_outside_template_do_not_conform():
    g = load_grammar("aquasurf")
    pset = make_pset(g)
    assert conforms(parse_tree("add(tanh(x), exp(x))", g, pset), "unit", g)
    assert not conforms(parse_tree("tanh(x)", g, pset), "unit", g)  # a function of the space, not a unit tree
    assert not conforms(parse_tree("tanh(tanh(x))", g, pset), "unit", g)
    assert not conforms(parse_tree("add(tanh(tanh(x)), x)", g, pset), "unit", g)
    assert conforms(parse_tree("add(tanh(x), 1)", g, pset), "unit", g)  # "1" is the unary op `one`
    assert not conforms(parse_tree("max(x, add(x, x))", g, pset), "unit", g)
    grafs = load_grammar("grafs")
    gp = make_pset(grafs)
    cell = "add(add(mul(0.5, x), 0.37), tanh(x))"  # b1 = add, u2 = x + beta, b0 = left, u0 = beta*x, u3 = tanh
    assert conforms(parse_tree(cell, grafs, gp), "cell", grafs)
    assert conforms(parse_tree("add(add(mul(x, x), 0.37), tanh(x))", grafs, gp), "cell", grafs)  # b0 = mul
    assert not conforms(parse_tree("add(tanh(tanh(tanh(x))), x)", grafs, gp), "cell", grafs)  # 3 unary deep


def test_enumerate_trees_gives_every_name_inside_the_template():
    g = load_grammar("aquasurf")
    pset = make_pset(g)
    trees = list(enumerate_trees("unit", g, pset))
    assert len(trees) == 5103
    assert len({str(t) for t in trees}) == 5103
    assert all(conforms(t, "unit", g) for t in trees[::97])


def _tiny_grammar():
    return grammar_from_dict({
        "name": "tiny",
        "primitives": {
            "add": {"arity": 2, "sympy": "a + b"}, "mul": {"arity": 2, "sympy": "a * b"},
            "neg": {"arity": 1, "sympy": "-a"}, "tanh": {"arity": 1, "sympy": "tanh(a)"},
            "sq": {"arity": 1, "sympy": "a**2"},
        },
        "terminals": {"ephemeral": {"low": -1, "high": 1}},
        "templates": {
            "ops": {"u": ["a", "neg", "tanh", "sq", "mul(beta, a)"], "b": ["add", "mul", "a", "b"]},
            "cell": {"shape": "b1(u2(b0(u0(x), u1(x))), u3(x))",
                     "slots": {"b0": "b", "b1": "b", "u0": "u", "u1": "u", "u2": "u", "u3": "u"},
                     "constant": 2.0},
        },
    })


def test_distinct_count_matches_brute_force():
    g = _tiny_grammar()
    pset = make_pset(g)
    t = get_template(g, "cell")
    assert t.names == 5**4 * 4**2
    x = equivalence_inputs(300)
    keys = set()
    for tree in enumerate_trees(t, g, pset):
        with torch.no_grad():
            y = compile_expr(tree_to_sympy(tree, g), g)(x)
        keys.add(int(function_keys(y.expand(1, -1).clone())[0]))
    result = count_distinct(t, g, points=300, formulas=True, chunk_elements=5000)  # small chunks: chunking works
    assert result.distinct == len(keys)
    assert len(result.formulas) == result.distinct
    for text in result.formulas[:40]:
        assert conforms(parse_tree(text, g, pset), t, g)


def test_function_keys_equal_for_equal_functions():
    x = equivalence_inputs(200)
    a = torch.stack([x * 2, x + x, torch.tanh(x), x * 2 * (1 + 1e-12), torch.zeros_like(x), x - x + 1e-12])
    k = function_keys(a)
    assert k[0] == k[1] == k[3] and k[4] == k[5] and len(set(k.tolist())) == 3
    assert isinstance(k, np.ndarray)


def test_aquasurf_count_through_enumerate_is_the_documented_one():
    """`gpact enumerate` prints the count the grammar's header explains against the paper's 2,913."""


    from click.testing import CliRunner

    from gpact.cli import main

    out = CliRunner().invoke(main, ["enumerate", "--grammar", "aquasurf", "--template", "unit"])
    assert out.exit_code == 0, out.output
    names, distinct = (int(v.replace(",", "")) for v in re.findall(r"([\d,]+) (?:names|distinct)", out.output))
    header = Path(load_grammar("aquasurf").path).read_text()
    assert names == 5103 and f"counts {distinct:,} distinct" in header


TINY_SPACE = """
name: tiny
primitives:
  neg: {arity: 1, sympy: "-a", cost: 1}
  softplus: {arity: 1, sympy: "log(1 + exp(a))", torch: torch.nn.functional.softplus, cost: 6}
  log_sigmoid: {arity: 1, sympy: "-log(1 + exp(-a))", torch: torch.nn.functional.logsigmoid, cost: 6}
  add: {arity: 2, sympy: "a + b", cost: 1}
  mul: {arity: 2, sympy: "a * b", cost: 1}
terminals:
  constants: [0, 1]
templates:
  unit:
    shape: "b(u1(x), u2(x))"
    slots: {b: [add, mul], u1: [a, neg, softplus], u2: ["0", log_sigmoid]}
"""


def test_enumerate_equality_rule_on_a_small_template(tmp_path):
    """gpact's rule, where it departs from the paper's float32 bit-for-bit key (README, aquasurf space):
    softplus(x) + log_sigmoid(x) = x is one function with x (float32 rounding keeps them apart in the
    paper); x*0, -x*0 and softplus(x)*0 are one zero (the paper's -0.0 splits -x*0 off); x and -x stay
    two functions. 12 names: add gives x, -x, softplus, x + ls, -x + ls; mul gives 0, x ls, -x ls, sp ls."""
    from click.testing import CliRunner

    from gpact.cli import main

    grammar, out = tmp_path / "tiny.yaml", tmp_path / "out.txt"
    grammar.write_text(TINY_SPACE)
    r = CliRunner().invoke(main, ["enumerate", "--grammar", str(grammar), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "12 names" in r.output and "9 distinct functions" in r.output
    formulas = out.read_text().splitlines()
    assert len(formulas) == 9
    assert ("add(softplus(x), log_sigmoid(x))" in formulas) != ("add(x, 0.0)" in formulas)
    assert "add(neg(x), 0.0)" in formulas and "add(x, 0.0)" in formulas
    assert sum(f.endswith(", 0.0)") and f.startswith("mul(") for f in formulas) == 1


def test_aquasurf_hard_sigmoid_is_the_papers_keras_definition():
    g = load_grammar("aquasurf")
    x = torch.tensor([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0], dtype=torch.float64)
    assert torch.allclose(g.primitives["hard_sigmoid"].fn(x), torch.clamp(0.2 * x + 0.5, 0, 1))


def _with_templates(templates):
    prims = {"add": {"arity": 2, "sympy": "a + b"}, "tanh": {"arity": 1, "sympy": "tanh(a)"}}
    return {"name": "t", "primitives": prims, "terminals": {"constants": [1]}, "templates": templates}


@pytest.mark.parametrize("templates, message", [
    ({"c": {"shape": "b(u(x), x)", "slots": {"b": ["add"], "u": ["sin"]}}}, "'sin' is not a primitive"),
    ({"c": {"shape": "b(u(x), u(x))", "slots": {"b": ["add"], "u": ["tanh"]}}}, "occurs twice"),
    ({"c": {"shape": "b(x, x)", "slots": {"b": ["add"], "u": ["tanh"]}}}, "declared but not used"),
    ({"c": {"shape": "b(x, x)", "slots": {"b": ["tanh"]}}}, "takes 1 argument"),
    ({"c": {"shape": "b(x, x)", "slots": {"b": "trinary"}}}, "unknown op list 'trinary'"),
    ({"c": {"shape": "b(x, x)", "slots": {"b": ["add"]}, "colour": 1}}, "unknown key 'colour'"),
    ({"c": {"shape": "u(x)", "slots": {"u": ["tanh(c)"]}}}, "unknown name 'c'"),
    ({"c": {"shape": "u(x)", "slots": {"u": ["tanh", "tanh"]}}}, "listed twice"),
    ({"c": {"shape": "u(x)", "slots": {"u": ["add(a, 0.3)"]}}}, "constant 0.3"),
    ({"c": {"shape": "u(x", "slots": {"u": ["tanh"]}}}, "shape"),
    ({"c": {"slots": {"u": ["tanh"]}}}, "needs 'shape' and 'slots'"),
    ({"c": {"shape": "tanh(x)", "slots": {"tanh": ["tanh"]}}}, "slot name"),
])
def test_template_errors_name_file_and_template(templates, message):
    with pytest.raises(GrammarError) as err:
        grammar_from_dict(_with_templates(templates), name="my.yaml")
    assert "my.yaml" in str(err.value) and "templates.c" in str(err.value) and message in str(err.value)


def test_builtin_groups_and_pick_template():
    g = grammar_from_dict(_with_templates({"c": {"shape": "b(u(x), x)", "slots": {"b": "binary", "u": "unary"}}}))
    t = pick_template(g, None)
    assert [s.labels for s in t.slots.values()] == [("tanh",), ("add",)]
    with pytest.raises(GrammarError, match="no templates"):
        pick_template(load_grammar("full"), None)
    with pytest.raises(GrammarError, match="two_units"):
        pick_template(load_grammar("swish"), None)
