"""Acceptance: the one rule that decides whether a tree may be a candidate of the run.

A tree is accepted when it is within the grammar's height and size limits, inside one of the run's
templates (when the run uses templates), stands for a function (with `--evolve derivative`: sympy integrated
it in closed form within the time box), within the FLOP budget, and not constant in x: neither in its
formula nor on the probe points (a protected div(x, 0) is 0). The search, its initial population and the
LLM operator all ask `Acceptance.check`; nothing else decides validity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deap import gp

from gpact.expr.grammar import Grammar
from gpact.expr.integrate import REASONS
from gpact.expr.symbolic import X
from gpact.expr.templates import Template, conforms
from gpact.expr.trees import Analysis


@dataclass(frozen=True)
class Rejection:
    reason: str  # too_big | template | flops | constant, or why a derivative has no usable integral
    # (gpact.expr.integrate.REASONS); the LLM operator and the run count them by these names
    detail: str


class Acceptance:
    """The run's validity rule: the grammar's limits and the templates the run stays inside (may be none)."""

    def __init__(self, grammar: Grammar, templates: Sequence[Template] = ()):
        self.grammar, self.templates = grammar, tuple(templates)

    def check(self, tree: gp.PrimitiveTree, analysis: Analysis | None = None) -> Rejection | None:
        """None when `tree` is acceptable, else why not. Without `analysis` only the tree's structure is
        checked (limits, template): what variation needs, before any sympy work."""
        lim = self.grammar.limits
        if tree.height > lim.max_height or len(tree) > lim.max_size:
            return Rejection("too_big", f"height {tree.height} (max {lim.max_height}), "
                                        f"size {len(tree)} (max {lim.max_size})")
        if self.templates and not any(conforms(tree, t, self.grammar) for t in self.templates):
            names = ", ".join(t.name for t in self.templates)
            return Rejection("template", f"outside the run's templates ({names}): {tree}")
        if analysis is None:
            return None
        if analysis.failure:
            return Rejection(analysis.failure, f"{analysis.formula}: {REASONS.get(analysis.failure, '')}")
        if analysis.flops > lim.max_flops:
            return Rejection("flops", f"{analysis.flops:g} FLOPs (max {lim.max_flops:g})")
        if X not in analysis.expr.free_symbols or analysis.constant:
            return Rejection("constant", f"does not depend on x: {analysis.formula}")
        return None

    def ok(self, tree: gp.PrimitiveTree, analysis: Analysis | None = None) -> bool:
        return self.check(tree, analysis) is None
