"""Structure templates: confine a search to a published space such as b(u1(x), u2(x)) or the GrafS cell.

A grammar's `templates:` section holds named op lists and templates (README "Templates"):

    templates:
      ops:                                   # optional named op lists; "unary" / "binary" / "ternary"
        unary: [a, neg, tanh, "mul(beta, a)"]  # default to every primitive of that arity
        binary: [add, mul, max, b]
      run: [unit]                            # optional: the templates a search stays inside (default all)
      unit:
        shape: "bin(u1(x), u2(x))"           # slots are calls (or bare names, for leaf slots)
        slots: {bin: binary, u1: unary, u2: [sin, tanh]}
        constant: 1.0                        # value of free constants when enumerating (default 1)
        doc: "Swish core unit"

Each slot occurs once in the shape. An alternative for a slot called with n arguments is a primitive
name of arity n (applied to the arguments in order) or a *form*: an expression in the slot's arguments
`a`, `b`, `c` (by position), the input `x`, numbers and free constants `beta`, `beta1`, ... (one value per
name within a form; random in a search, `constant` when enumerating), e.g. `a` (identity), `b` (right),
`add(a, beta)`, `add(mul(sigmoid(beta), a), mul(sigmoid(neg(beta)), b))`. Names in the shape that are
not slots are fixed primitives of the grammar.

A candidate is a DEAP tree; `match` recovers which alternative fills each slot, so the search's in-template
operators (gpact.search.operators) vary slot choices and a child always stays inside the template. The
`run` list names the templates a search stays inside (default: all; `run: []`: an unconfined search).
`count_distinct` counts the distinct functions of a template by outputs on fixed random inputs, bottom-up:
sub-expressions with equal outputs are merged before they are combined, which is exact (the functions are
pointwise) and keeps GrafS's 22.7 million cells tractable.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from deap import gp

from gpact.errors import FormulaError, GrammarError
from gpact.expr.fingerprint import equivalence_inputs, function_keys
from gpact.expr.formula import Call, Node, Num, Var, parse
from gpact.expr.symbolic import NAMED_CONSTANTS

if TYPE_CHECKING:  # grammar.py checks templates on load, so this module must not import it at run time
    from gpact.expr.grammar import Grammar, Primitive

_TEMPLATE_KEYS = {"shape", "slots", "constant", "doc"}
_RESERVED = ("ops", "run")  # keys of `templates:` that are not templates
_GROUP_ARITY = {"unary": 1, "binary": 2, "ternary": 3}
_ARG_NAMES = ("a", "b", "c")
_CONST_NAME = re.compile(r"beta\d*$")


# ---------------------------------------------------------------------------------------------------------
# Patterns: the shape and each slot alternative, compiled once


@dataclass(frozen=True)
class PX:
    """The input x."""


@dataclass(frozen=True)
class PConst:
    value: float | None  # None: a free constant called `name`
    name: str = ""


@dataclass(frozen=True)
class PArg:
    index: int  # the slot's argument a (0), b (1), c (2)


@dataclass(frozen=True)
class PPrim:
    name: str  # a grammar primitive
    args: tuple[Pattern, ...]


@dataclass(frozen=True)
class PSlot:
    name: str
    args: tuple[Pattern, ...]


Pattern = PX | PConst | PArg | PPrim | PSlot


@dataclass(frozen=True)
class Slot:
    name: str
    arity: int  # number of arguments at its call site in the shape (0: a leaf slot)
    labels: tuple[str, ...]  # alternatives as written in the grammar
    patterns: tuple[Pattern, ...]  # alternatives compiled, over PArg / PX / PConst / PPrim
    const_names: tuple[tuple[str, ...], ...]  # free constants of each alternative


@dataclass(frozen=True)
class Choice:
    """Which alternative fills a slot, and the values of its free constants."""

    alt: int
    consts: tuple[tuple[str, float], ...] = ()


Choices = dict[str, Choice]


@dataclass(frozen=True)
class Template:
    name: str
    grammar: str  # path of the grammar it belongs to, for messages
    shape: Pattern
    slots: Mapping[str, Slot]  # in the order their calls end in the shape (innermost first)
    constant: float = 1.0
    doc: str = ""
    nested: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # slot -> slots inside its arguments

    @property
    def names(self) -> int:
        """Number of distinct slot assignments (the papers' count of "names" / cells)."""
        return math.prod(len(s.patterns) for s in self.slots.values())


# ---------------------------------------------------------------------------------------------------------
# Loading and validation


def validate_templates(grammar: Grammar) -> None:
    """Compile every template of `grammar`; a problem is a GrammarError naming the file and template."""
    for name in template_names(grammar):
        get_template(grammar, name)


def template_names(grammar: Grammar) -> list[str]:
    raw = _raw(grammar)
    return [k for k in raw if k not in _RESERVED]


def run_templates(grammar: Grammar) -> list[Template]:
    """The templates a search with `grammar` stays inside: those its `templates.run` list names, else all of
    them; none for a grammar without templates (or with `run: []`), whose search is unconfined."""
    raw = _raw(grammar)
    names = raw.get("run", template_names(grammar))
    return [get_template(grammar, n) for n in names]


def get_template(grammar: Grammar, name: str | Template) -> Template:
    """The compiled template `name` of `grammar` (a Template passes through)."""
    if isinstance(name, Template):
        return name
    raw = _raw(grammar)
    if name in _RESERVED or name not in raw:
        known = ", ".join(template_names(grammar)) or "none"
        raise GrammarError(f"{grammar.path}: no template '{name}' (templates: {known})")
    where = f"{grammar.path}: templates.{name}"
    spec = raw[name]
    if not isinstance(spec, Mapping):
        raise GrammarError(f"{where}: expected a mapping with 'shape' and 'slots'")
    unknown = set(spec) - _TEMPLATE_KEYS
    if unknown:
        allowed = ", ".join(sorted(_TEMPLATE_KEYS))
        raise GrammarError(f"{where}: unknown key '{sorted(unknown)[0]}' (allowed: {allowed})")
    if "shape" not in spec or "slots" not in spec:
        raise GrammarError(f"{where}: needs 'shape' and 'slots'")
    slot_specs = spec["slots"]
    if not isinstance(slot_specs, Mapping) or not slot_specs:
        raise GrammarError(f"{where}: 'slots' must map slot names to op lists")
    for s in slot_specs:
        if not isinstance(s, str) or not s.isidentifier() or s == "x" or s in grammar.primitives:
            raise GrammarError(f"{where}: slot name {s!r} must be an identifier other than x and the primitives")
    constant = spec.get("constant", 1.0)
    if isinstance(constant, bool) or not isinstance(constant, int | float) or not math.isfinite(constant):
        raise GrammarError(f"{where}: 'constant' must be a number")
    try:
        shape_node = parse(str(spec["shape"]))
    except FormulaError as exc:
        raise GrammarError(f"{where}: shape: {exc}") from None
    arities: dict[str, int] = {}
    shape = _shape_pattern(shape_node, grammar, set(slot_specs), arities, where)
    unused = [s for s in slot_specs if s not in arities]
    if unused:
        raise GrammarError(f"{where}: slot '{unused[0]}' is declared but not used in the shape")
    slots = {}
    for s in arities:
        labels = _alternatives(grammar, slot_specs[s], arities[s], f"{where}: slot '{s}'")
        patterns = tuple(_form_pattern(lab, grammar, arities[s], f"{where}: slot '{s}': {lab!r}") for lab in labels)
        slots[s] = Slot(s, arities[s], labels, patterns, tuple(tuple(_const_names(p)) for p in patterns))
    template = Template(name, grammar.path, shape, slots, float(constant), str(spec.get("doc", "")))
    return Template(**{**template.__dict__, "nested": _nested(shape)})


def _raw(grammar: Grammar) -> Mapping[str, Any]:
    raw = grammar.templates or {}
    if not isinstance(raw, Mapping):
        raise GrammarError(f"{grammar.path}: templates: expected a mapping of name -> template")
    ops = raw.get("ops", {})
    if not isinstance(ops, Mapping) or not all(isinstance(v, list) for v in ops.values()):
        raise GrammarError(f"{grammar.path}: templates.ops: expected a mapping of name -> list of ops")
    run = raw.get("run", [])
    if not isinstance(run, list) or not all(isinstance(n, str) and n in raw and n not in _RESERVED for n in run):
        known = ", ".join(k for k in raw if k not in _RESERVED) or "none"
        raise GrammarError(f"{grammar.path}: templates.run: expected a list of this grammar's templates ({known})")
    return raw


def _alternatives(grammar: Grammar, spec: Any, arity: int, where: str) -> tuple[str, ...]:
    ops = _raw(grammar).get("ops", {})
    if isinstance(spec, str):
        if spec in ops:
            spec = ops[spec]
        elif spec in _GROUP_ARITY:
            spec = [p.name for p in grammar.primitives.values() if p.arity == _GROUP_ARITY[spec]]
        else:
            groups = sorted(set(ops) | set(_GROUP_ARITY))
            raise GrammarError(f"{where}: unknown op list '{spec}' (known: {', '.join(groups)}; or give a list)")
    if not isinstance(spec, list) or not spec:
        raise GrammarError(f"{where}: expected a non-empty list of ops")
    labels = []
    for item in spec:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise GrammarError(f"{where}: alternative {item!r} must be a primitive name or a form")
        label = str(item)
        if label in labels:
            raise GrammarError(f"{where}: alternative '{label}' is listed twice")
        labels.append(label)
    return tuple(labels)


def _resolve_prim(name: str, grammar: Grammar, nargs: int, where: str) -> Primitive:
    prim = grammar.primitives.get(name) or grammar.by_alias(name)
    if prim is None:
        raise GrammarError(f"{where}: '{name}' is not a primitive of grammar '{grammar.name}'")
    if prim.arity != nargs:
        raise GrammarError(f"{where}: '{name}' takes {prim.arity} argument(s), got {nargs}")
    return prim


def _check_constant(value: float, grammar: Grammar, where: str) -> None:
    if grammar.ephemeral is None and not any(abs(c - value) <= 1e-12 * max(1.0, abs(c)) for c in grammar.constants):
        raise GrammarError(f"{where}: constant {value:g} is not in the grammar's constants and it has no ephemeral")


def _shape_pattern(node: Node, grammar: Grammar, slot_names: set[str], arities: dict[str, int], where: str) -> Pattern:
    if isinstance(node, Num):
        _check_constant(node.value, grammar, f"{where}: shape")
        return PConst(node.value)
    if isinstance(node, Var):
        if node.name == "x":
            return PX()
        if node.name in NAMED_CONSTANTS:
            return PConst(float(NAMED_CONSTANTS[node.name]))
        if node.name not in slot_names:
            raise GrammarError(f"{where}: shape: unknown name '{node.name}' (not x and not a slot)")
        return _use_slot(node.name, (), arities, where)
    args = tuple(_shape_pattern(a, grammar, slot_names, arities, where) for a in node.args)
    if node.name in slot_names:
        if len(args) > 3:
            raise GrammarError(f"{where}: slot '{node.name}' has more than 3 arguments")
        return _use_slot(node.name, args, arities, where)
    return PPrim(_resolve_prim(node.name, grammar, len(args), f"{where}: shape").name, args)


def _use_slot(name: str, args: tuple[Pattern, ...], arities: dict[str, int], where: str) -> PSlot:
    if name in arities:
        raise GrammarError(f"{where}: slot '{name}' occurs twice in the shape (name each occurrence)")
    arities[name] = len(args)
    return PSlot(name, args)


def _form_pattern(label: str, grammar: Grammar, arity: int, where: str) -> Pattern:
    prim = grammar.primitives.get(label)
    if prim is not None:
        if prim.arity != arity:
            raise GrammarError(f"{where}: takes {prim.arity} argument(s), the slot has {arity}")
        return PPrim(prim.name, tuple(PArg(i) for i in range(arity)))
    known = (*_ARG_NAMES[:arity], "x", *NAMED_CONSTANTS)
    if label.isidentifier() and label not in known and not _CONST_NAME.match(label):
        raise GrammarError(f"{where}: '{label}' is not a primitive of grammar '{grammar.name}'")
    try:
        node = parse(label)
    except FormulaError as exc:
        raise GrammarError(f"{where}: {exc}") from None
    return _form_node(node, grammar, arity, where)


def _form_node(node: Node, grammar: Grammar, arity: int, where: str) -> Pattern:
    if isinstance(node, Num):
        _check_constant(node.value, grammar, where)
        return PConst(node.value)
    if isinstance(node, Var):
        if node.name == "x":
            return PX()
        if node.name in _ARG_NAMES[:arity]:
            return PArg(_ARG_NAMES.index(node.name))
        if _CONST_NAME.match(node.name):
            if grammar.ephemeral is None and not grammar.constants:
                raise GrammarError(f"{where}: free constant '{node.name}' needs constants or an ephemeral range")
            return PConst(None, node.name)
        if node.name in NAMED_CONSTANTS:
            return PConst(float(NAMED_CONSTANTS[node.name]))
        allowed = ", ".join((*_ARG_NAMES[:arity], "x", "beta..."))
        raise GrammarError(f"{where}: unknown name '{node.name}' (a slot with {arity} argument(s) allows {allowed})")
    assert isinstance(node, Call)
    args = tuple(_form_node(a, grammar, arity, where) for a in node.args)
    return PPrim(_resolve_prim(node.name, grammar, len(args), where).name, args)


def _const_names(p: Pattern) -> list[str]:
    if isinstance(p, PConst) and p.value is None:
        return [p.name]
    out: list[str] = []
    for a in getattr(p, "args", ()):
        out += [n for n in _const_names(a) if n not in out]
    return out


def _slots_in(p: Pattern) -> list[str]:
    out = [p.name] if isinstance(p, PSlot) else []
    for a in getattr(p, "args", ()):
        out += _slots_in(a)
    return out


def _nested(shape: Pattern) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}

    def walk(p: Pattern) -> None:
        if isinstance(p, PSlot):
            out[p.name] = tuple(s for a in p.args for s in _slots_in(a))
        for a in getattr(p, "args", ()):
            walk(a)

    walk(shape)
    return out


# ---------------------------------------------------------------------------------------------------------
# Trees from choices


def _constant_node(value: float, grammar: Grammar, pset: gp.PrimitiveSet):
    for c in grammar.constants:
        if abs(c - value) <= 1e-12 * max(1.0, abs(c)):
            return pset.mapping[str(c)]
    eph = next((t for t in pset.terminals[pset.ret] if isinstance(t, gp.MetaEphemeral)), None)
    if eph is None:
        raise FormulaError(f"constant {value:g} is not in grammar '{grammar.name}' and it has no ephemeral")
    node = eph()
    node.value = float(value)
    return node


def build(template: Template, choices: Mapping[str, Choice], grammar: Grammar, pset: gp.PrimitiveSet
          ) -> gp.PrimitiveTree:
    """The tree for one assignment of alternatives (and constant values) to the template's slots."""
    nodes: list = []

    def emit(p: Pattern, args: tuple[Pattern, ...], consts: dict[str, float]) -> None:
        if isinstance(p, PX):
            nodes.append(pset.mapping["x"])
        elif isinstance(p, PConst):
            nodes.append(_constant_node(p.value if p.value is not None else consts[p.name], grammar, pset))
        elif isinstance(p, PArg):
            emit(args[p.index], (), {})
        elif isinstance(p, PPrim):
            nodes.append(pset.mapping[p.name])
            for a in p.args:
                emit(a, args, consts)
        else:
            ch = choices[p.name]
            emit(template.slots[p.name].patterns[ch.alt], p.args, dict(ch.consts))

    emit(template.shape, (), {})
    return gp.PrimitiveTree(nodes)


def enumerate_choices(template: Template) -> Iterator[Choices]:
    """Every assignment of alternatives to slots; free constants take `template.constant`."""
    slots = list(template.slots.values())
    for alts in itertools.product(*(range(len(s.patterns)) for s in slots)):
        yield {s.name: Choice(a, tuple((n, template.constant) for n in s.const_names[a]))
               for s, a in zip(slots, alts, strict=True)}


def enumerate_trees(template: Template | str, grammar: Grammar, pset: gp.PrimitiveSet
                    ) -> Iterator[gp.PrimitiveTree]:
    """Every expression ("name") of the template, in slot order; lazily, as there may be millions."""
    t = get_template(grammar, template)
    for choices in enumerate_choices(t):
        yield build(t, choices, grammar, pset)


def to_text(template: Template, choices: Mapping[str, Choice]) -> str:
    """The formula of one assignment, in primitive names (parse_tree reads it back)."""

    def text(p: Pattern) -> str:
        if isinstance(p, PSlot):
            ch = choices[p.name]
            form = template.slots[p.name].patterns[ch.alt]
            return _form_text(form, tuple(text(a) for a in p.args), dict(ch.consts))
        if isinstance(p, PPrim):
            return f"{p.name}({', '.join(text(a) for a in p.args)})"
        return _form_text(p, (), {})

    return text(template.shape)


# ---------------------------------------------------------------------------------------------------------
# Matching a tree against a template


_Nest = tuple[Any, list]  # (DEAP node, children)


def _nest(tree: Sequence) -> _Nest:
    def rec(i: int) -> tuple[_Nest, int]:
        node, kids, j = tree[i], [], i + 1
        for _ in range(node.arity if isinstance(node, gp.Primitive) else 0):
            kid, j = rec(j)
            kids.append(kid)
        return (node, kids), j

    root, end = rec(0)
    if end != len(tree):
        raise FormulaError("malformed tree")
    return root


def _is_x(node) -> bool:
    return isinstance(node, gp.Terminal) and isinstance(node.value, str)


def _const_value(node) -> float | None:
    if isinstance(node, gp.Terminal) and not isinstance(node.value, str | bool) and isinstance(node.value, int | float):
        return float(node.value)
    return None


def _close(u: float, v: float) -> bool:
    return abs(u - v) <= 1e-9 * max(1.0, abs(u), abs(v))


def _match(template: Template, p: Pattern, t: _Nest, env: Choices, args: tuple[Pattern, ...],
           consts: dict[str, float]) -> Iterator[tuple[Choices, dict[str, float]]]:
    node, kids = t
    if isinstance(p, PX):
        if _is_x(node):
            yield env, consts
    elif isinstance(p, PConst):
        v = _const_value(node)
        if v is None:
            return
        if p.value is not None:
            if _close(p.value, v):
                yield env, consts
        elif p.name in consts:
            if _close(consts[p.name], v):
                yield env, consts
        else:
            yield env, {**consts, p.name: v}
    elif isinstance(p, PArg):
        for env2, _ in _match(template, args[p.index], t, env, (), {}):
            yield env2, consts
    elif isinstance(p, PPrim):
        if isinstance(node, gp.Primitive) and node.name == p.name:
            yield from _match_all(template, p.args, kids, env, args, consts)
    else:
        slot = template.slots[p.name]
        fixed = env.get(p.name)
        for i in [fixed.alt] if fixed else range(len(slot.patterns)):
            pre = dict(fixed.consts) if fixed else {}
            for env2, c2 in _match(template, slot.patterns[i], t, env, p.args, pre):
                yield {**env2, p.name: Choice(i, tuple(sorted(c2.items())))}, consts


def _match_all(template, pats, kids, env, args, consts):
    if len(pats) != len(kids):
        return
    if not pats:
        yield env, consts
        return
    for env2, c2 in _match(template, pats[0], kids[0], env, args, consts):
        yield from _match_all(template, pats[1:], kids[1:], env2, args, c2)


def match(tree: Sequence, template: Template | str, grammar: Grammar) -> Choices | None:
    """The slot choices that produce `tree`, or None if it is outside the template.

    Only slots that appear in the tree are assigned (a form such as `b` drops its other argument).
    """
    t = get_template(grammar, template)
    try:
        nested = _nest(tree)
    except (FormulaError, IndexError):
        return None
    return next((env for env, _ in _match(t, t.shape, nested, {}, (), {})), None)


def conforms(tree: Sequence, template: Template | str, grammar: Grammar) -> bool:
    """True when `tree` is one of the template's expressions (any free-constant values)."""
    return match(tree, template, grammar) is not None


def bounds(template: Template) -> tuple[int, int]:
    """Largest height and size (DEAP's measures) of any of the template's trees."""

    def walk(p: Pattern, args: tuple[tuple[int, int], ...]) -> tuple[int, int]:
        if isinstance(p, PX | PConst):
            return 0, 1
        if isinstance(p, PArg):
            return args[p.index]
        inner = tuple(walk(a, args) for a in p.args)
        if isinstance(p, PPrim):
            return 1 + max(h for h, _ in inner), 1 + sum(s for _, s in inner)
        outs = [walk(f, inner) for f in template.slots[p.name].patterns]
        return max(h for h, _ in outs), max(s for _, s in outs)

    return walk(template.shape, ())


# ---------------------------------------------------------------------------------------------------------
# Counting distinct functions


@dataclass(frozen=True)
class Enumeration:
    template: str
    names: int  # slot assignments (expressions as named by the papers)
    distinct: int  # distinct functions by outputs on the probe inputs
    points: int
    formulas: list[str]  # one formula per distinct function (empty unless asked for)


@dataclass
class _Level:
    values: torch.Tensor | None  # [n, points] float64 outputs of the distinct sub-expressions
    texts: list[str]


def count_distinct(template: Template | str, grammar: Grammar, points: int = 1000, seed: int = 0,
                   formulas: bool = False, chunk_elements: int = 4_000_000) -> Enumeration:
    """Count the template's names and its distinct functions by outputs on `equivalence_inputs(points, seed)`.

    Bottom-up: each slot's distinct outputs are computed from its arguments' distinct outputs, so equal
    sub-functions are combined once. With `formulas`, also return one formula per distinct function (the
    first in enumeration order, free constants at `template.constant`).
    """
    t = get_template(grammar, template)
    x = equivalence_inputs(points, seed)
    step = max(1, chunk_elements // points)

    def evaluate(p: Pattern, argvals: tuple[torch.Tensor | None, ...], consts: dict[str, float]) -> torch.Tensor:
        if isinstance(p, PX):
            return x[None, :]
        if isinstance(p, PConst):
            return torch.full((1, points), p.value if p.value is not None else consts[p.name], dtype=torch.float64)
        if isinstance(p, PArg):
            return argvals[p.index]
        vals = [evaluate(a, argvals, consts) for a in p.args]
        n = max(v.shape[0] for v in vals)
        with torch.no_grad():
            return grammar.primitives[p.name].fn(*(v.expand(n, points) for v in vals))

    def level(p: Pattern, root: bool) -> _Level:
        """Distinct functions of a shape-level pattern, with their outputs and formulas."""
        if isinstance(p, PPrim | PSlot):
            inner = [level(a, False) for a in p.args]
            if isinstance(p, PPrim):
                forms = [(PPrim(p.name, tuple(PArg(i) for i in range(len(p.args)))), {})]
            else:
                slot = t.slots[p.name]
                forms = [(f, {n: t.constant for n in names})
                         for f, names in zip(slot.patterns, slot.const_names, strict=True)]
        else:
            inner, forms = [], [(p, {})]

        def values(form: Pattern, consts: dict, used: list[int], sizes: list[int], idx: np.ndarray) -> torch.Tensor:
            argvals: list[torch.Tensor | None] = [None] * len(inner)
            for k, i in enumerate(used):
                argvals[i] = inner[i].values[torch.from_numpy(np.unravel_index(idx, sizes)[k])]
            return evaluate(form, tuple(argvals), consts).expand(len(idx), points)

        blocks, keys, offset = [], [], 0
        for form, consts in forms:  # pass 1: a key for every combination, in enumeration order
            used = _used_args(form)
            sizes = [inner[i].values.shape[0] for i in used]
            total = math.prod(sizes)
            blocks.append((form, consts, used, sizes, offset, total))
            for start in range(0, total, step):
                idx = np.arange(start, min(total, start + step))
                keys.append(function_keys(values(form, consts, used, sizes, idx)))
            offset += total
        _, first = np.unique(np.concatenate(keys), return_index=True)
        first.sort()
        if root and not formulas:
            return _Level(None, [""] * len(first))
        vals, texts = [], []
        for form, consts, used, sizes, off, total in blocks:  # pass 2: the first of each distinct function
            sel = first[(first >= off) & (first < off + total)] - off
            if not len(sel):
                continue
            if not root:
                vals.append(torch.cat([values(form, consts, used, sizes, sel[s:s + step])
                                       for s in range(0, len(sel), step)]))
            grid = np.unravel_index(sel, sizes) if sizes else ()
            for j in range(len(sel)):
                argtexts = [""] * len(inner)
                for k, i in enumerate(used):
                    argtexts[i] = inner[i].texts[int(grid[k][j])]
                texts.append(_form_text(form, tuple(argtexts), consts))
        return _Level(torch.cat(vals) if vals else None, texts)

    top = level(t.shape, True)
    return Enumeration(t.name, t.names, len(top.texts), points, top.texts if formulas else [])


def _used_args(p: Pattern) -> list[int]:
    if isinstance(p, PArg):
        return [p.index]
    return sorted({i for a in getattr(p, "args", ()) for i in _used_args(a)})


def _form_text(p: Pattern, argtexts: tuple[str, ...], consts: Mapping[str, float]) -> str:
    if isinstance(p, PX):
        return "x"
    if isinstance(p, PConst):
        return repr(p.value if p.value is not None else consts[p.name])
    if isinstance(p, PArg):
        return argtexts[p.index]
    return f"{p.name}({', '.join(_form_text(a, argtexts, consts) for a in p.args)})"


def pick_template(grammar: Grammar, name: str | None) -> Template:
    """Template `name`, or the grammar's only template when `name` is None."""
    names = template_names(grammar)
    if not names:
        raise GrammarError(f"{grammar.path}: the grammar has no templates (see grammars/aquasurf.yaml for an example)")
    if name is None:
        if len(names) != 1:
            raise GrammarError(f"{grammar.path}: choose a template with --template ({', '.join(names) or 'none'})")
        name = names[0]
    return get_template(grammar, name)


def describe_enumeration(result: Enumeration, template: Template, grammar: Grammar) -> str:
    sizes = " x ".join(str(len(s.patterns)) for s in template.slots.values())
    return (f"{grammar.name}/{template.name}: {result.names:,} names ({sizes} alternatives), "
            f"{result.distinct:,} distinct functions by outputs on {result.points:,} N(0,1) inputs clipped to "
            f"[-5, 5] (to ~6 significant digits; free constants = {template.constant:g})")
