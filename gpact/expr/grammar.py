"""Grammar files (YAML) -> a validated, immutable Grammar of primitives, terminals and limits.

A grammar is data: each primitive has a sympy definition in its arguments `a`, `b` (`c`), a FLOP
cost, and optionally a faster torch callable (`torch: torch.nn.functional.gelu`) or a user function
(`import: "pkg.mod:func"`). Every primitive is probed at load time for finite outputs on zeros,
negatives and large inputs, so a bad primitive fails here with its name, not mid-run as a NaN.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sympy as sp
import torch
import yaml

from gpact import ops
from gpact.errors import FormulaError, GrammarError
from gpact.expr.flops import count_flops
from gpact.expr.formula import parse
from gpact.expr.gate import MAX_DIGITS, excerpt
from gpact.expr.symbolic import ARGS, TRAINABLE_NAME, node_to_sympy, trainables
from gpact.expr.templates import validate_templates
from gpact.expr.torchfn import to_torch
from gpact.expr.yamltext import compose, read_yaml

# The shipped grammars are package data (gpact/grammars/*.yaml, see setup.cfg), so they come with any install;
# the repository's top-level grammars/ is a link to this folder.
GRAMMAR_DIR = Path(str(resources.files("gpact") / "grammars"))
PROBE_VALUES = (0.0, -0.0, 1e-7, -1e-7, -1.0, -3.5, -50.0, -100.0, 0.5, 3.0, 50.0, 100.0)

_TOP_KEYS = {"name", "description", "primitives", "terminals", "limits", "templates"}
_PRIM_KEYS = {"arity", "sympy", "cost", "torch", "import", "inline", "aliases", "doc"}
_TERM_KEYS = {"constants", "ephemeral"}
_EPH_KEYS = {"low", "high", "decimals", "trainable"}
_LIMIT_KEYS = {"max_height", "max_size", "max_flops", "init_min_height", "init_max_height"}


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: int
    cost: float
    definition: sp.Expr | None  # in ARGS[:arity]; None for an imported function without a sympy form
    fn: Callable[..., torch.Tensor]  # torch implementation, takes `arity` tensors
    inline: bool  # expand the definition into formulas (a + b) or keep it as a named function (gelu)
    aliases: tuple[str, ...] = ()  # formula spellings that mean this primitive: "+", "sin", "/", ...
    source: str = "sympy"  # "sympy" | "torch" | "import"

    def apply(self, *args: sp.Expr) -> sp.Expr:
        """This primitive applied to sympy arguments, as it appears in a candidate's formula."""
        if self.inline:
            args = tuple(_inexact_if_huge(a) for a in args)
            return self.definition.xreplace(dict(zip(ARGS, args, strict=False)))
        return sp.Function(self.name)(*args)


@dataclass(frozen=True)
class Ephemeral:
    low: float
    high: float
    decimals: int = 2
    trainable: bool = False  # drawn as trainable constants, `p(value)`, learned per layer by each network


@dataclass(frozen=True)
class Limits:
    max_height: int = 6
    max_size: int = 24
    max_flops: float = 80.0
    init_min_height: int = 1
    init_max_height: int = 3


@dataclass(frozen=True)
class Grammar:
    name: str
    path: str
    primitives: Mapping[str, Primitive]
    constants: tuple[float, ...] = ()
    ephemeral: Ephemeral | None = None
    limits: Limits = Limits()
    templates: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def functions(self) -> dict[str, Callable[..., torch.Tensor]]:
        """torch callables of the named (non-inline) primitives, for `to_torch`."""
        return {p.name: p.fn for p in self.primitives.values() if not p.inline}

    @property
    def costs(self) -> dict[str, float]:
        """FLOP cost per formula operation: defaults, overridden by this grammar's primitives."""
        costs = ops.costs()
        for p in self.primitives.values():
            for key in (*p.aliases, p.name) if p.inline else (p.name,):
                costs[key] = p.cost
        return costs

    def by_alias(self, alias: str) -> Primitive | None:
        for p in self.primitives.values():
            if alias in p.aliases:
                return p
        return None


def _inexact_if_huge(value: sp.Expr) -> sp.Expr:
    """A float in place of an exact number of over MAX_DIGITS digits: square(square(...(9))) doubles the digits
    with each exact step, so 30 nested squares of a constant would never finish; as floats they are instant."""
    if value.is_Rational and value.p.bit_length() + value.q.bit_length() > MAX_DIGITS * 10 // 3:
        return sp.Float(value)
    return value


def with_trainable_constants(grammar: Grammar) -> Grammar:
    """The grammar with its ephemeral constants drawn as trainable constants, p(c) (`--trainable-constants`)."""
    if grammar.ephemeral is None:
        raise GrammarError(f"{grammar.path}: grammar '{grammar.name}' has no ephemeral constants to make trainable")
    return dataclasses.replace(grammar, ephemeral=dataclasses.replace(grammar.ephemeral, trainable=True))


def resolve_path(path: str | Path) -> Path:
    """A grammar path as given, else a shipped grammar of that name: `minimal`, `full.yaml`, `grammars/full.yaml`.

    `grammars/NAME` is the spelling of the README and of RunConfig's default; it finds the shipped grammar from
    any folder, not only from the repository root.
    """
    p = Path(path)
    if p.exists():
        return p
    if p.parent in (Path("."), Path("grammars")):
        for candidate in (GRAMMAR_DIR / p.name, GRAMMAR_DIR / f"{p.name}.yaml"):
            if candidate.is_file():
                return candidate
    raise GrammarError(f"{path}: grammar file not found")


def load_grammar(path: str | Path) -> Grammar:
    """Load and validate a grammar file; every problem is a GrammarError naming file, line and key."""
    p = resolve_path(path)
    return build_grammar(_Doc(read_yaml(p), str(p)), str(p))


def grammar_from_dict(data: Mapping[str, Any], name: str = "<dict>") -> Grammar:
    """Build a grammar from plain data (same schema as the YAML files), for the Python API."""
    try:
        text = yaml.safe_dump(dict(data))
    except (yaml.YAMLError, TypeError, ValueError) as exc:
        raise GrammarError(f"{name}: not plain data: {excerpt(str(exc))}") from None
    node = compose(text, name)
    return build_grammar(_Doc(node, name), name)


def add_primitive(grammar: Grammar, name: str, arity: int, fn: Callable | None = None,
                  sympy: str | None = None, cost: float | None = None, inline: bool | None = None) -> Grammar:
    """A copy of `grammar` with one more primitive, given as a Python callable and/or a sympy form."""
    if name in grammar.primitives:
        raise GrammarError(f"{grammar.path}: primitive {excerpt(name)} already exists")
    prim = _make_primitive(grammar.path, name, {"arity": arity, "sympy": sympy, "cost": cost, "inline": inline},
                           fn=fn, line=0)
    return Grammar(**{**grammar.__dict__, "primitives": {**grammar.primitives, name: prim}})


# ---------------------------------------------------------------------------------------------------------
# YAML with line numbers


class _Doc:
    """A YAML node with the file it came from, so errors can say `file:line: key: problem`."""

    def __init__(self, node: yaml.Node | None, path: str):
        self.node, self.path = node, path

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1 if self.node is not None else 0

    def error(self, where: str, msg: str) -> GrammarError:
        return GrammarError(f"{self.path}:{self.line}: {where}: {msg}")

    def mapping(self, where: str, allowed: set[str]) -> dict[str, _Doc]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(where, "expected a mapping")
        out = {}
        for key, v in self.entries(where):
            if key not in allowed:
                raise _Doc(v.node, self.path).error(
                    where, f"unknown key {excerpt(key)} (allowed: {', '.join(sorted(allowed))})")
            out[key] = v
        return out

    def entries(self, where: str) -> list[tuple[str, _Doc]]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(where, "expected a mapping of name -> entry")
        for k, _ in self.node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise _Doc(k, self.path).error(where, "a key must be a plain name, not a list or mapping")
        return [(k.value, _Doc(v, self.path)) for k, v in self.node.value]

    def value(self) -> Any:
        """The node as plain data; `yamltext.check` has bounded its size and tags already."""
        if self.node is None:
            return None
        try:
            return yaml.safe_load(yaml.serialize(self.node))
        except yaml.YAMLError as exc:
            raise self.error("value", excerpt(str(exc).splitlines()[0], 200)) from None


def build_grammar(doc: _Doc, path: str) -> Grammar:
    top = doc.mapping("grammar", _TOP_KEYS)
    if "primitives" not in top:
        raise doc.error("grammar", "missing 'primitives'")
    prims: dict[str, Primitive] = {}
    for name, entry in top["primitives"].entries("primitives"):
        spec = {k: v.value() for k, v in entry.mapping(f"primitive {excerpt(name)}", _PRIM_KEYS).items()}
        if name in prims:
            raise entry.error(f"primitive {excerpt(name)}", "defined twice")
        prims[name] = _make_primitive(path, name, spec, line=entry.line)
    if not prims:
        raise doc.error("primitives", "a grammar needs at least one primitive")
    constants, ephemeral = _terminals(top.get("terminals"))
    limits = _limits(top.get("limits"))
    for key in ("name", "description"):
        if key in top and not isinstance(top[key].node, yaml.ScalarNode):
            raise top[key].error(key, "expected text")
    grammar = Grammar(
        name=str(top["name"].value()) if "name" in top else Path(path).stem,
        path=path,
        primitives=prims,
        constants=constants,
        ephemeral=ephemeral,
        limits=limits,
        templates=top["templates"].value() or {} if "templates" in top else {},
        description=str(top["description"].value()) if "description" in top else "",
    )
    validate_templates(grammar)
    return grammar


def _terminals(doc: _Doc | None) -> tuple[tuple[float, ...], Ephemeral | None]:
    if doc is None:
        return (), None
    spec = doc.mapping("terminals", _TERM_KEYS)
    constants: tuple[float, ...] = ()
    if "constants" in spec:
        raw = spec["constants"].value()
        if not isinstance(raw, list) or not all(_is_number(c) for c in raw):
            bad = next((c for c in raw if not _is_number(c)), None) if isinstance(raw, list) else raw
            raise spec["constants"].error("terminals.constants",
                                          f"expected a list of finite numbers, got {excerpt(bad)}")
        constants = tuple(float(c) for c in raw)
    ephemeral = None
    if "ephemeral" in spec:
        e = {k: v.value() for k, v in spec["ephemeral"].mapping("terminals.ephemeral", _EPH_KEYS).items()}
        if not {"low", "high"} <= set(e) or not all(_is_number(e[k]) for k in ("low", "high")):
            raise spec["ephemeral"].error("terminals.ephemeral", "needs finite numeric 'low' and 'high'")
        if not float(e["low"]) < float(e["high"]):
            raise spec["ephemeral"].error("terminals.ephemeral", "'low' must be below 'high'")
        decimals = e.get("decimals", 2)
        if not _is_int(decimals) or not 0 <= decimals <= 12:
            raise spec["ephemeral"].error("terminals.ephemeral.decimals",
                                          f"expected a whole number from 0 to 12, got {excerpt(decimals)}")
        trainable = e.get("trainable", False)
        if not isinstance(trainable, bool):
            raise spec["ephemeral"].error("terminals.ephemeral.trainable",
                                          f"expected true or false, got {excerpt(trainable)}")
        ephemeral = Ephemeral(float(e["low"]), float(e["high"]), decimals, trainable)
    return constants, ephemeral


def _limits(doc: _Doc | None) -> Limits:
    if doc is None:
        return Limits()
    spec = {k: (v, v.value()) for k, v in doc.mapping("limits", _LIMIT_KEYS).items()}
    for key, (d, v) in spec.items():
        if key == "max_flops" and (not _is_number(v) or v <= 0):
            raise d.error(f"limits.{key}", f"expected a positive finite number, got {excerpt(v)}")
        if key != "max_flops" and (not _is_int(v) or not 0 < v <= 1000):
            raise d.error(f"limits.{key}", f"expected a whole number from 1 to 1000, got {excerpt(v)}")
    kw = {k: (float(v) if k == "max_flops" else int(v)) for k, (_, v) in spec.items()}
    limits = Limits(**kw)
    if limits.init_min_height > limits.init_max_height or limits.init_max_height > limits.max_height:
        raise doc.error("limits", "need init_min_height <= init_max_height <= max_height")
    return limits


def _is_number(v: Any) -> bool:
    """A finite int or float: NaN compares false with every bound, so it would pass any range check."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    """An int, not a bool (YAML `true` is 1 to Python) and not a float (`1.0`, `.inf`)."""
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------------------
# Primitives

def _alias_forms() -> dict[str, sp.Expr]:
    """Formula operations as sympy forms in (a, b): a primitive defined as one of them is also its alias."""
    a, b = ARGS[:2]
    forms = {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "**": a**b, "neg": -a, "**2": a**2, "**3": a**3}
    for name in ops.formula_names():
        op = ops.for_formula(name)
        forms.setdefault(name, op.sympy(a) if op.arity == 1 else op.sympy(a, b))
    return forms


def _make_primitive(path: str, name: str, spec: dict[str, Any], line: int, fn: Callable | None = None) -> Primitive:
    where = f"{path}:{line}: primitive {excerpt(name)}"
    if not isinstance(name, str) or not name.isidentifier():
        raise GrammarError(f"{where}: name must be an identifier")
    if name == TRAINABLE_NAME:
        raise GrammarError(f"{where}: the name {TRAINABLE_NAME!r} is reserved for trainable constants, p(0.8)")
    arity = spec.get("arity")
    if not _is_int(arity) or arity not in (1, 2, 3):
        raise GrammarError(f"{where}: arity must be 1, 2 or 3, got {excerpt(arity)}")
    _check_types(where, spec)
    args = ARGS[:arity]
    definition = None
    if spec.get("sympy") is not None:
        try:
            definition = node_to_sympy(parse(str(spec["sympy"])), {s.name: s for s in ARGS})
        except FormulaError as exc:
            raise GrammarError(f"{where}: sympy: {exc}") from None
        if trainables(definition):
            raise GrammarError(f"{where}: sympy: a primitive has no trainable constants (a formula may: p(0.8))")
        if definition.free_symbols - set(args):
            raise GrammarError(f"{where}: sympy uses {excerpt(sorted(map(str, definition.free_symbols)))}, "
                               f"but arity {arity} allows only {', '.join(s.name for s in args)}")
    source = "sympy"
    if spec.get("torch") and spec.get("import"):
        raise GrammarError(f"{where}: give 'torch' or 'import', not both")
    if spec.get("torch"):
        fn, source = _resolve(where, str(spec["torch"]), torch_only=True), "torch"
    elif spec.get("import"):
        fn, source = _resolve(where, str(spec["import"]), torch_only=False), "import"
    elif fn is not None:
        source = "import"
    elif definition is not None:
        fn = to_torch(definition, variables=args)
    else:
        raise GrammarError(f"{where}: needs a 'sympy' definition or an 'import' function")
    inline = spec.get("inline")
    if inline is None:
        inline = definition is not None and _is_simple(definition)
    if inline and definition is None:
        raise GrammarError(f"{where}: inline needs a 'sympy' definition")
    cost = spec.get("cost")
    if cost is None:
        if definition is None:
            raise GrammarError(f"{where}: an imported primitive without 'sympy' needs a 'cost'")
        cost = count_flops(definition)
    if not _is_number(cost) or cost < 0:
        raise GrammarError(f"{where}: cost must be a non-negative finite number, got {excerpt(cost)}")
    aliases = tuple(spec.get("aliases") or ())
    if definition is not None:
        aliases += tuple(k for k, form in _alias_forms().items() if form == definition and k not in aliases)
    prim = Primitive(name, arity, float(cost), definition, fn, bool(inline), aliases, source)
    _probe(where, prim)
    return prim


def _check_types(where: str, spec: dict[str, Any]) -> None:
    """Refuse values of the wrong kind that Python would silently coerce (`inline: "no"` is true, `aliases: 5`)."""
    for key in ("sympy", "torch", "import", "doc"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise GrammarError(f"{where}: {key} must be text, got {excerpt(value)}")
    if spec.get("inline") is not None and not isinstance(spec["inline"], bool):
        raise GrammarError(f"{where}: inline must be true or false, got {excerpt(spec['inline'])}")
    aliases = spec.get("aliases")
    if aliases is not None and (not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases)):
        raise GrammarError(f"{where}: aliases must be a list of names, got {excerpt(aliases)}")


def _is_simple(definition: sp.Expr) -> bool:
    """One operation on the arguments (a + b, sin(a), a**2): expand it into formulas, don't name it."""
    return sp.count_ops(definition) <= 1 and len(definition.atoms(sp.Function)) <= 1


def _resolve(where: str, target: str, torch_only: bool) -> Callable:
    if torch_only:
        if not target.startswith("torch."):
            raise GrammarError(f"{where}: 'torch' must be a dotted path inside torch, got {excerpt(target)}")
        module_name, _, attr = target.rpartition(".")
    else:
        module_name, sep, attr = target.partition(":")
        if not sep or not module_name or not attr:
            raise GrammarError(f"{where}: 'import' must look like 'package.module:function', got {excerpt(target)}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise GrammarError(f"{where}: cannot import {excerpt(target)}: {excerpt(str(exc), 200)}") from None
    if not callable(obj):
        raise GrammarError(f"{where}: {excerpt(target)} is not callable")
    return obj


def _probe(where: str, prim: Primitive) -> None:
    """Finite outputs on zeros, negatives and large inputs, for every argument combination."""
    combos = list(itertools.product(PROBE_VALUES, repeat=prim.arity))
    cols = [torch.tensor([c[i] for c in combos], dtype=torch.float32) for i in range(prim.arity)]
    try:
        with torch.no_grad():
            out = prim.fn(*cols)
    except Exception as exc:  # a user function can raise anything; report it as a grammar problem
        raise GrammarError(f"{where}: raised {type(exc).__name__} on probe inputs: {excerpt(str(exc), 200)}") from None
    if not isinstance(out, torch.Tensor) or out.shape != cols[0].shape:
        raise GrammarError(f"{where}: must return a tensor shaped like its input")
    bad = ~torch.isfinite(out)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise GrammarError(f"{where}: non-finite output {out[i].item()} at input {combos[i]}; "
                           "use a safe form (e.g. log(abs(a) + 1e-6), exp(Min(a, 20)))")
