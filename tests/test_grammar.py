import textwrap

import pytest
import sympy as sp
import torch

from gpact.errors import GrammarError
from gpact.expr.grammar import GRAMMAR_DIR, add_primitive, grammar_from_dict, load_grammar
from gpact.expr.symbolic import ARGS

a, b = ARGS[:2]


def write(tmp_path, text):
    p = tmp_path / "g.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_grammars_load():
    for path in sorted(GRAMMAR_DIR.glob("*.yaml")):
        g = load_grammar(path)
        assert g.primitives, path


def test_full_grammar_has_the_required_primitives():
    g = load_grammar("full")
    required = {"add", "sub", "mul", "div", "exp", "log", "sin", "cos", "sinc", "tanh", "sigmoid", "erf", "relu",
                "gelu", "silu", "softplus", "abs", "max", "min", "square"}
    assert required <= set(g.primitives)
    assert g.constants and g.ephemeral is not None


def test_inline_and_named_primitives():
    g = load_grammar("full")
    assert g.primitives["add"].inline and g.primitives["add"].apply(a, b) == a + b
    assert not g.primitives["gelu"].inline
    assert str(g.primitives["gelu"].apply(sp.Symbol("x"))) == "gelu(x)"
    assert "/" in g.primitives["div"].aliases
    assert g.by_alias("+").name == "add"


def test_lowered_definition_matches_torch_callable():
    g = load_grammar("full")
    z = torch.linspace(-4, 4, 101, dtype=torch.float64)
    for name in ("gelu", "silu", "softplus", "sigmoid"):
        from gpact.expr.torchfn import to_torch

        lowered = to_torch(g.primitives[name].definition, variables=(a,))
        torch.testing.assert_close(lowered(z), g.primitives[name].fn(z), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("body, needle", [
    ("primitives:\n  add: {arity: 2, sympy: 'a + b', colour: red}\n", "unknown key 'colour'"),
    ("primitives:\n  add: {arity: 4, sympy: 'a + b'}\n", "arity must be 1, 2 or 3"),
    ("primitives:\n  f: {arity: 1, sympy: 'a + b'}\n", "arity 1 allows only a"),
    ("primitives:\n  f: {arity: 1, sympy: 'a +* 2'}\n", "cannot parse"),
    ("primitives:\n  f: {arity: 1, sympy: 'bessel(a)'}\n", "unknown function 'bessel'"),
    ("primitives:\n  f: {arity: 1, sympy: 'log(a)'}\n", "non-finite output"),
    ("primitives:\n  f: {arity: 1, sympy: 'exp(a)'}\n", "non-finite output"),
    ("primitives:\n  f: {arity: 1, import: 'nosuchmodule.x:f', cost: 1}\n", "cannot import"),
    ("primitives:\n  f: {arity: 1, import: 'math.sin', cost: 1}\n", "package.module:function"),
    ("primitives:\n  f: {arity: 1, torch: 'os.system', sympy: 'a'}\n", "inside torch"),
    ("primitives:\n  f: {arity: 1}\n", "needs a 'sympy' definition"),
    ("primitives: {}\n", "at least one primitive"),
    ("prims: {}\n", "unknown key 'prims'"),
    ("primitives:\n  add: {arity: 2, sympy: 'a + b'}\nlimits: {max_height: -1}\n", "limits.max_height"),
    ("primitives:\n  add: {arity: 2, sympy: 'a + b'}\nterminals: {ephemeral: {low: 2, high: 1}}\n", "below"),
    ("primitives: [\n", "invalid YAML"),
])
def test_bad_grammar_errors_name_file_line_and_entry(tmp_path, body, needle):
    p = write(tmp_path, body)
    with pytest.raises(GrammarError) as exc:
        load_grammar(p)
    msg = str(exc.value)
    assert needle in msg
    assert str(p) in msg
    assert "\n" not in msg


def test_error_reports_the_line_of_the_entry(tmp_path):
    p = write(tmp_path, "primitives:\n  add: {arity: 2, sympy: 'a + b'}\n  bad: {arity: 1, sympy: 'log(a)'}\n")
    with pytest.raises(GrammarError, match=r"g\.yaml:3: primitive 'bad'"):
        load_grammar(p)


def test_missing_file():
    with pytest.raises(GrammarError, match="not found"):
        load_grammar("no/such/grammar.yaml")


def test_import_primitive_from_python_module(tmp_path, monkeypatch):
    (tmp_path / "myacts.py").write_text("import torch\n\ndef bump(z):\n    return z * torch.exp(-z * z)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = write(tmp_path, """
        primitives:
          add: {arity: 2, sympy: "a + b", cost: 1}
          bump: {arity: 1, import: "myacts:bump", sympy: "a*exp(-a**2)", cost: 7}
          opaque: {arity: 1, import: "myacts:bump", cost: 7}
        """)
    g = load_grammar(p)
    assert g.primitives["bump"].source == "import" and g.primitives["bump"].cost == 7
    assert g.primitives["opaque"].definition is None and not g.primitives["opaque"].inline


def test_python_api_adds_a_primitive():
    g = grammar_from_dict({"primitives": {"add": {"arity": 2, "sympy": "a + b"}}})
    g2 = add_primitive(g, "sq", 1, fn=lambda z: z * z, cost=1)
    assert "sq" in g2.primitives and "sq" not in g.primitives
    with pytest.raises(GrammarError, match="already exists"):
        add_primitive(g2, "sq", 1, fn=lambda z: z)
    with pytest.raises(GrammarError, match="non-finite"):
        add_primitive(g, "bad", 1, fn=lambda z: 1 / z, cost=1)


def test_default_cost_comes_from_definition():
    g = grammar_from_dict({"primitives": {"f": {"arity": 1, "sympy": "sin(a) + a"}}})
    assert g.primitives["f"].cost == 5  # sin 4 + add 1
