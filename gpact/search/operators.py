"""Variation operators, all of one shape (DEAP style): parents in, children out, or None.

An operator has `parents` (1: a mutation, 2: a crossover) and `origin` (written on the record of a function
its child is the first to reach: "gp" or "llm"), and is called as `op(parents, ctx) -> list[tree] | None`.
None means "could not": the strategy then asks the next operator of the same kind (the LLM declines when
its dice say so or its answer is unusable, and subtree crossover takes over). Operators never modify
their parents.

DEAP draws from the global `random` module, which a run seeds once and checkpoints; the in-template
operators draw from it too, so a run is reproduced from its seed alone. The LLM rolls its own generator.

`make_operators` builds a run's list: the LLM first when it is on, then subtree crossover and DEAP's
mutations, or, for a run confined to templates (gpact.expr.templates.run_templates), the in-template
crossover and mutation, which vary slot choices and never leave the template.
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from deap import gp

from gpact.errors import FormulaError
from gpact.expr.grammar import Grammar
from gpact.expr.templates import Choice, Choices, Slot, Template, build, conforms, get_template, match
from gpact.expr.trees import Analysis
from gpact.search.llm import Parent
from gpact.search.records import Record, pareto_front
from gpact.train.fitness import WORST

if TYPE_CHECKING:
    from gpact.search.llm import LLMOperator


@dataclass
class Context:
    """What an operator may look at besides its parents: the analysis of a tree, and what was evaluated."""

    analysis: Callable[[gp.PrimitiveTree], Analysis]
    records: Mapping[str, Record]

    @cached_property
    def front(self) -> list[Record]:
        return pareto_front(self.records.values())


class Operator(Protocol):
    parents: int  # 1: mutation, 2: crossover
    origin: str

    def __call__(self, parents: Sequence[gp.PrimitiveTree], ctx: Context) -> list[gp.PrimitiveTree] | None: ...


def make_operators(grammar: Grammar, pset: gp.PrimitiveSet, templates: Sequence[Template] = (),
                   llm: LLMOperator | None = None) -> list[Operator]:
    """The operators of a run, in the order they are asked."""
    ops: list[Operator] = [LLMCrossover(llm), LLMMutation(llm)] if llm is not None else []
    if templates:
        return [*ops, TemplateCrossover(templates, grammar, pset), TemplateMutation(templates, grammar, pset)]
    return [*ops, SubtreeCrossover(), RandomMutation(grammar, pset)]


# ---------------------------------------------------------------------------------------------------------
# DEAP's subtree operators


class SubtreeCrossover:
    """DEAP's one-point subtree crossover; the child of the first parent (the mate's is dropped)."""

    parents, origin = 2, "gp"

    def __call__(self, parents, ctx):
        child, _ = gp.cxOnePoint(copy.deepcopy(parents[0]), copy.deepcopy(parents[1]))
        return [child]


class RandomMutation:
    """One of DEAP's mutations, drawn uniformly: uniform subtree, node replacement, insertion, shrink, and
    ephemeral-constant redraw when the grammar has an ephemeral range."""

    parents, origin = 1, "gp"

    def __init__(self, grammar: Grammar, pset: gp.PrimitiveSet):
        self.mutations: list[Callable] = [
            functools.partial(gp.mutUniform, expr=functools.partial(gp.genFull, min_=0, max_=2), pset=pset),
            functools.partial(gp.mutNodeReplacement, pset=pset),
            functools.partial(gp.mutInsert, pset=pset),
            gp.mutShrink,
        ]
        if grammar.ephemeral is not None:
            self.mutations.append(functools.partial(gp.mutEphemeral, mode="one"))

    def __call__(self, parents, ctx):
        (child,) = random.choice(self.mutations)(copy.deepcopy(parents[0]))
        return [child]


# ---------------------------------------------------------------------------------------------------------
# Inside a template


class TemplateCrossover:
    """Swap one slot's subtree between two parents of the same template; None if they share none."""

    parents, origin = 2, "gp"

    def __init__(self, templates: Sequence[Template], grammar: Grammar, pset: gp.PrimitiveSet):
        self.templates, self.grammar, self.pset = tuple(templates), grammar, pset

    def __call__(self, parents, ctx):
        a, b = (copy.deepcopy(p) for p in parents)
        t = next((t for t in self.templates if conforms(a, t, self.grammar) and conforms(b, t, self.grammar)), None)
        if t is None:
            return None
        crossover_in_template(a, b, t, self.grammar, self.pset, random)
        return [a]


class TemplateMutation:
    """Another alternative (or new constants) in one slot of the parent's template; None outside them."""

    parents, origin = 1, "gp"

    def __init__(self, templates: Sequence[Template], grammar: Grammar, pset: gp.PrimitiveSet):
        self.templates, self.grammar, self.pset = tuple(templates), grammar, pset

    def __call__(self, parents, ctx):
        child = copy.deepcopy(parents[0])
        t = next((t for t in self.templates if conforms(child, t, self.grammar)), None)
        if t is None:
            return None
        return [mutate_in_template(child, t, self.grammar, self.pset, random)]


def _draw_constant(grammar: Grammar, rng: random.Random) -> float:
    e = grammar.ephemeral
    if e is not None:
        return round(rng.uniform(e.low, e.high), e.decimals)
    return rng.choice(grammar.constants)


def _random_choice(slot: Slot, grammar: Grammar, rng: random.Random, exclude: int | None = None) -> Choice:
    options = [i for i in range(len(slot.patterns)) if i != exclude] or [exclude]
    alt = rng.choice(options)
    return Choice(alt, tuple((n, _draw_constant(grammar, rng)) for n in slot.const_names[alt]))


def random_choices(template: Template, grammar: Grammar, rng: random.Random) -> Choices:
    return {name: _random_choice(s, grammar, rng) for name, s in template.slots.items()}


def random_tree(template: Template | str, grammar: Grammar, pset: gp.PrimitiveSet, rng: random.Random
                ) -> gp.PrimitiveTree:
    """A tree with a uniformly random alternative in every slot and random free constants."""
    t = get_template(grammar, template)
    return build(t, random_choices(t, grammar, rng), grammar, pset)


def _choices_of(tree, t: Template, grammar: Grammar) -> Choices:
    choices = match(tree, t, grammar)
    if choices is None:
        raise FormulaError(f"tree {tree} is outside template '{t.name}'")
    return choices


def mutate_in_template(tree: gp.PrimitiveTree, template: Template | str, grammar: Grammar, pset: gp.PrimitiveSet,
                       rng: random.Random) -> gp.PrimitiveTree:
    """Change one slot of `tree`: another alternative of the same slot, or (half the time, when the slot
    has free constants) new constant values. Modifies `tree` in place (its class is kept) and returns it."""
    t = get_template(grammar, template)
    active = _choices_of(tree, t, grammar)
    choices = {**random_choices(t, grammar, rng), **active}
    name = rng.choice(sorted(active))
    slot, current = t.slots[name], active[name]
    if current.consts and rng.random() < 0.5:
        choices[name] = Choice(current.alt, tuple((n, _draw_constant(grammar, rng)) for n, _ in current.consts))
    else:
        choices[name] = _random_choice(slot, grammar, rng, exclude=current.alt)
    tree[0:len(tree)] = build(t, choices, grammar, pset)
    return tree


def crossover_in_template(tree1: gp.PrimitiveTree, tree2: gp.PrimitiveTree, template: Template | str,
                          grammar: Grammar, pset: gp.PrimitiveSet, rng: random.Random
                          ) -> tuple[gp.PrimitiveTree, gp.PrimitiveTree]:
    """Swap the subtree under one slot (that slot and every slot inside its arguments) between two trees.
    Both are modified in place and returned; the children stay inside the template."""
    t = get_template(grammar, template)
    c1, c2 = _choices_of(tree1, t, grammar), _choices_of(tree2, t, grammar)
    active = sorted(set(c1) | set(c2))
    fill = random_choices(t, grammar, rng)
    c1, c2 = {**fill, **c1}, {**fill, **c2}
    name = rng.choice(active)
    for s in (name, *t.nested.get(name, ())):
        c1[s], c2[s] = c2[s], c1[s]
    tree1[0:len(tree1)] = build(t, c1, grammar, pset)
    tree2[0:len(tree2)] = build(t, c2, grammar, pset)
    return tree1, tree2


# ---------------------------------------------------------------------------------------------------------
# The LLM


class _LLMAdapter:
    origin = "llm"

    def __init__(self, llm: LLMOperator):
        self.llm = llm

    def new_generation(self, generation: int) -> None:
        self.llm.new_generation(generation)

    def report(self) -> dict:
        return self.llm.stats()

    def _parent(self, ind, ctx: Context) -> Parent:
        score = ind.fitness.values[0] if ind.fitness.valid else WORST
        return Parent.of(ind, ctx.analysis(ind), score)

    def _front(self, ctx: Context) -> list[Parent]:
        return [Parent(r.formula, r.ood_score, r.flops, r.tree, r.key) for r in ctx.front]


class LLMCrossover(_LLMAdapter):
    """A share (`llm.rate`) of the crossovers asks the model for children of both parents."""

    parents = 2

    def __call__(self, parents, ctx):
        if not self.llm.wants_crossover():
            return None
        a, b = parents
        return self.llm.crossover(self._parent(a, ctx), self._parent(b, ctx), self._front(ctx))


class LLMMutation(_LLMAdapter):
    """A share (`llm.mutation_rate`) of the mutations asks the model for variations of the parent."""

    parents = 1

    def __call__(self, parents, ctx):
        if not self.llm.wants_mutation():
            return None
        return self.llm.mutate(self._parent(parents[0], ctx), self._front(ctx))
