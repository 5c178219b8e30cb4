import random

import pytest
import sympy as sp
import torch
from deap import gp

from gpact.errors import FormulaError
from gpact.expr.fingerprint import fingerprint
from gpact.expr.grammar import load_grammar
from gpact.expr.symbolic import X
from gpact.expr.trees import (
    analyse,
    compile_expr,
    formula_to_sympy,
    make_pset,
    parse_tree,
    printed_to_sympy,
    tree_to_sympy,
)

FULL = load_grammar("full")
MINIMAL = load_grammar("minimal")


def test_text_to_tree_to_text_round_trip():
    pset = make_pset(FULL)
    tree = parse_tree("gelu(x) + 0.1*sin(x)", FULL, pset)
    assert str(tree) == "add(gelu(x), mul(0.1, sin(x)))"
    assert str(parse_tree(str(tree), FULL, pset)) == str(tree)


def test_random_trees_round_trip_through_text():
    pset = make_pset(FULL)
    random.seed(3)
    for _ in range(100):
        tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 5))
        again = parse_tree(str(tree), FULL, pset)
        assert str(again) == str(tree)
        assert tree_to_sympy(again, FULL) == tree_to_sympy(tree, FULL)


def test_operators_rewritten_when_the_grammar_lacks_them():
    pset = make_pset(MINIMAL)
    tree = parse_tree("x - x/2", MINIMAL, pset)  # minimal has add and mul only
    assert sp.simplify(tree_to_sympy(tree, MINIMAL) - X / 2) == 0
    assert str(parse_tree("x**2", MINIMAL, pset)) == "mul(x, x)"


@pytest.mark.parametrize("text, needle", [
    ("erf(x)", "not a primitive of grammar 'minimal'"),
    ("sin(x, x)", "takes 1 argument"),
    ("y + 1", "unknown name 'y'"),
    ("__import__('os')", "allowed"),
])
def test_bad_formulas(text, needle):
    with pytest.raises(FormulaError, match=needle):
        parse_tree(text, MINIMAL, make_pset(MINIMAL))


def test_constant_not_in_grammar_without_ephemerals():
    from gpact.expr.grammar import grammar_from_dict

    g = grammar_from_dict({"primitives": {"add": {"arity": 2, "sympy": "a + b"}}, "terminals": {"constants": [1]}})
    with pytest.raises(FormulaError, match="constant 0.3"):
        parse_tree("x + 0.3", g, make_pset(g))
    assert str(parse_tree("x + 1", g, make_pset(g))) == "add(x, 1.0)"


def test_equivalent_formulas_share_a_key_and_simplify():
    a1 = analyse(formula_to_sympy("sub(mul(x, x), square(x)) + x", FULL), FULL)
    a2 = analyse(formula_to_sympy("x", FULL), FULL)
    assert a1.key == a2.key and a1.formula == "x" and a1.flops == 0
    def key(text):
        return analyse(formula_to_sympy(text, FULL), FULL).key

    assert key("max(x, 0)") == key("relu(x)")
    assert key("sin(x)") != key("cos(x)")


def test_simplified_form_never_costs_more():
    pset = make_pset(FULL)
    random.seed(5)
    for _ in range(60):
        tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 4))
        raw = tree_to_sympy(tree, FULL)
        an = analyse(raw, FULL)
        from gpact.expr.flops import count_flops

        assert an.flops <= count_flops(raw, FULL.costs)
        z = torch.linspace(-3, 3, 41, dtype=torch.float64)
        with torch.no_grad():
            a, b = compile_expr(raw, FULL)(z), compile_expr(an.expr, FULL)(z)
        torch.testing.assert_close(a, b, equal_nan=True, rtol=1e-6, atol=1e-8)


def test_display_uses_readable_decimals():
    assert analyse(formula_to_sympy("gelu(x) + 0.1*sin(x)", FULL), FULL).formula == "gelu(x) + 0.1*sin(x)"


def test_fingerprint_is_stable():
    e = formula_to_sympy("tanh(x) * 0.5", FULL)
    assert fingerprint(e, FULL) == fingerprint(e, FULL)


def test_printed_formulas_read_back_with_builtins_and_named_primitives():
    """What gpact prints for a simplified formula: sympy builtins (Heaviside), named primitives, any constant."""
    minimal = load_grammar("minimal")
    expr = printed_to_sympy("Heaviside(x, 1/2) + 0.37*gelu(x) + Max(0.1*x, x)", minimal)
    gelu = sp.Function("gelu")
    assert expr == sp.Heaviside(X, sp.Rational(1, 2)) + sp.Rational(37, 100) * gelu(X) + sp.Max(X / 10, X)
    with pytest.raises(FormulaError, match="not a primitive of grammar 'minimal'"):
        formula_to_sympy("Heaviside(x, 1/2)", minimal)  # not the grammar's terms
    with pytest.raises(FormulaError, match="'gelu' takes 1 argument"):
        printed_to_sympy("gelu(x, x)", minimal)
    with pytest.raises(FormulaError, match="unknown function 'nope'"):
        printed_to_sympy("nope(x)", minimal)
