"""A found activation as a torch module: `Activation("gelu(x) + 0.1*sin(x)")`, `Activation.from_run(run_dir)`.

The text passes gpact's own gate and parser and is compiled through the op registry by `expr.torchfn`, the
same derivation the evaluator and the reference trainer use, so the module computes what gpact scored.
Nothing is evaluated as code. The module pickles by value: its state is the sympy expression and, for each
named primitive in it, the torch function (pickled by reference) or the sympy definition; the torch callable
is rebuilt on load, so no grammar file is needed to unpickle it. It works under torch.jit.trace and
torch.compile; not under torch.jit.script, which cannot run the closures.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path

import sympy as sp
import torch
from torch import nn

from gpact import ops
from gpact.errors import FormulaError
from gpact.expr.gate import excerpt
from gpact.expr.grammar import Grammar, load_grammar
from gpact.expr.symbolic import ARGS, X, is_trainable, start_values, trainables
from gpact.expr.torchfn import to_torch
from gpact.expr.trees import analyse, formula_to_sympy, printed_to_sympy
from gpact.report.export import front_member, starts
from gpact.train.baselines import BASELINE_GRAMMAR, BASELINES

# A named primitive, as the pickled state keeps it: (arity, torch function or None, sympy definition or None).
_Part = tuple[int, Callable | None, sp.Expr | None]


class Activation(nn.Module):
    """An activation function found (or scored) by gpact, as an `nn.Module`.

    `formula`: formula text in any spelling gpact prints or reads (`Max(0.1*x, x)`, `gelu(x) + 0.1*sin(x)`,
    `Heaviside(x, 1/2)`) or a baseline name (`gelu_sine`, always over the `full` grammar); read as `gpact eval`
    reads it, over `grammar` (a shipped grammar's name, a file, or a Grammar), and simplified as the search
    simplifies it.
    `trainable`: each constant (not 0, 1, -1, nor an exponent) becomes an `nn.Parameter` c0, c1, ...,
    initialised to its value.
    Trainable constants of the formula, `p(0.8)`, are always `nn.Parameter`s p0, p1, ... (one set per module
    instance, so each layer learns its own), initialised to their start values; `from_run` may start them at the
    medians the run's networks learned instead.
    """

    def __init__(self, formula: str, trainable: bool = False, grammar: str | Path | Grammar = "full") -> None:
        super().__init__()
        if not isinstance(formula, str):
            raise FormulaError(f"the formula must be text, not {type(formula).__name__}")
        text = formula.strip()
        if text in BASELINES:
            text, grammar = BASELINES[text].formula, BASELINE_GRAMMAR
        g = grammar if isinstance(grammar, Grammar) else load_grammar(grammar)
        an = analyse(_read(text, g), g)
        self._setup(an.expr, an.formula, g, trainable)

    @classmethod
    def from_run(cls, run_dir: str | Path, rank: int | None = None, trainable: bool = False,
                 start: str = "learned") -> Activation:
        """Front member `rank` of a run (1: best search score); None: the run's recommended function.

        Built from the member's tree, as `gpact export` builds it, not from the printed (rounded) formula.
        `start`: its trainable constants, p(c), start at the medians the run's networks learned ("learned", when
        the run recorded them) or at the formula's values ("formula").
        """
        member = front_member(Path(getattr(run_dir, "run_dir", run_dir)), rank)
        act = cls.__new__(cls)
        nn.Module.__init__(act)
        act._setup(member.expr, member.formula, member.grammar, trainable, starts(member, start))
        return act

    def _setup(self, expr: sp.Expr, formula: str, grammar: Grammar, trainable: bool,
               values: tuple[float, ...] | None = None) -> None:
        self.formula, self.expr, self.trainable = formula, expr, trainable
        self._parts = _named_parts(expr, grammar)
        params = trainables(expr)
        symbols = [sp.Symbol(f"p{j}", real=True) for j in range(len(params))]
        lifted = expr.xreplace(dict(zip(params, symbols, strict=True)))
        lifted, constants = _lift_constants(lifted) if trainable else (lifted, [])
        constants = list(zip(symbols, values or start_values(expr), strict=True)) + constants
        self._lifted, self._names = lifted, [s.name for s, _ in constants]
        for s, value in constants:
            self.register_parameter(s.name, nn.Parameter(torch.tensor(float(value))))
        self._compile(grammar.functions)

    def _compile(self, functions: dict[str, Callable]) -> None:
        symbols = tuple(sp.Symbol(n, real=True) for n in self._names)
        self._fn = to_torch(self._lifted, functions, variables=(X, *symbols))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x, *(getattr(self, n) for n in self._names))

    def extra_repr(self) -> str:
        return self.formula + (", trainable" if self._names else "")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_fn"]  # a tree of closures: rebuilt from the expression on load
        for name, (_, fn, definition) in self._parts.items():
            if fn is None and definition is None:
                raise pickle.PicklingError(f"primitive {excerpt(name)} is an imported Python function; an "
                                           "Activation using it cannot be pickled")
        return state

    def __deepcopy__(self, memo: dict) -> Activation:
        """A copy that shares the compiled closures (they hold no state), so a grammar's imported Python
        function, which cannot be pickled, can still be copied (`swap` copies per site)."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items() if k != "_fn"})
        new._fn = self._fn
        return new

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._compile({name: fn if fn is not None else to_torch(definition, variables=ARGS[:arity])
                       for name, (arity, fn, definition) in self._parts.items()})


def _read(text: str, grammar: Grammar) -> sp.Expr:
    """As `gpact eval` reads it; failing that, as gpact prints a simplified formula (Heaviside, any constant)."""
    try:
        return formula_to_sympy(text, grammar)
    except FormulaError as exc:
        try:
            return printed_to_sympy(text, grammar)
        except FormulaError:
            raise FormulaError(f"formula {excerpt(text)}: {exc}") from None


def _named_parts(expr: sp.Expr, grammar: Grammar) -> dict[str, _Part]:
    """The named primitives in `expr`, as pickling keeps them: a torch function by reference, else the sympy
    definition (the grammar compiled that definition to the same torch callable); a user's imported function
    is neither, and refuses pickling."""
    parts: dict[str, _Part] = {}
    for f in expr.atoms(sp.core.function.AppliedUndef):
        if is_trainable(f):
            continue
        prim = grammar.primitives[str(f.func)]
        parts[prim.name] = (prim.arity, prim.fn if prim.source == "torch" else None,
                            prim.definition if prim.source == "sympy" else None)
    return parts


def _lift_constants(expr: sp.Expr) -> tuple[sp.Expr, list[tuple[sp.Symbol, float]]]:
    """`expr` with each constant (not 0, 1, -1; exponents and fixed op arguments stay) replaced by a new
    symbol c<i>, one per occurrence, and the values they had."""
    found: list[tuple[sp.Symbol, float]] = []

    def walk(e: sp.Expr) -> sp.Expr:
        if not e.free_symbols and not e.atoms(sp.core.function.AppliedUndef):
            value = complex(e.evalf(17))
            if value.imag != 0:
                raise FormulaError(f"constant {excerpt(str(e))} is not real")
            if value.real in (0.0, 1.0, -1.0):
                return e
            s = sp.Symbol(f"c{len(found)}", real=True)
            found.append((s, value.real))
            return s
        if not e.args:
            return e
        if e.is_Pow:
            return sp.Pow(walk(e.base), e.exp, evaluate=False)
        if ops.unary_operand(e) is not None:  # Heaviside(a, 1/2): the 1/2 is the op's convention
            return e.func(walk(e.args[0]), *e.args[1:])
        return e.func(*(walk(a) for a in e.args))

    return walk(expr), found
