import pytest

from gpact.errors import FormulaError
from gpact.expr.formula import Call, Num, Var, parse, to_text


def test_operators_become_calls():
    assert parse("x + 2*x") == Call("+", (Var("x"), Call("*", (Num(2.0), Var("x")))))
    assert parse("-x") == Call("neg", (Var("x"),))
    assert parse("-0.5") == Num(-0.5)
    assert parse("+x") == Var("x")


def test_namespaced_calls_keep_last_name():
    assert parse("torch.nn.functional.gelu(x)") == Call("gelu", (Var("x"),))
    assert parse("np.maximum(x, 0)") == Call("maximum", (Var("x"), Num(0.0)))


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",
    "x.__class__",
    "os.system('ls')(x)",
    "(lambda y: y)(x)",
    "[x for x in y]",
    "'abc'",
    "x if x else 1",
    "f(x, k=1)",
    "f(*x)",
    "x < 1",
    "True",
    "",
    "x +",
    "a" * 5000,
])
def test_hostile_or_invalid_text_is_rejected(text):
    with pytest.raises(FormulaError):
        parse(text)


def test_round_trip_through_text():
    node = parse("gelu(x) + 0.1*sin(-x)")
    assert parse(to_text(node)) == node
