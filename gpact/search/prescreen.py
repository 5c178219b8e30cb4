"""`--prescreen K` for the GP strategy: predict children's scores from the features of trained functions.

The children and the trained records get the surrogate features (gpact.train.features) of their trees as
written (no sympy simplification: cheap), kept per tree text for the run's life; the default surrogate
(k-NN on standardised output features, gpact.search.surrogate_model) is fitted on the records' log scores.
The Fisher block is computed only for a model that reads it.
"""

from __future__ import annotations

import numpy as np

from gpact.config import TrainConfig
from gpact.expr.grammar import Grammar
from gpact.expr.trees import formula_to_sympy
from gpact.search.records import State
from gpact.search.surrogate_model import Features, KNNSurrogate, target, uses_fisher
from gpact.train.features import fisher_features, output_features
from gpact.train.tasks import Task


def _rows(trees: list[str], grammar: Grammar, task: Task, cfg: TrainConfig, cache: dict,
          fisher: bool) -> list[tuple]:
    missing = [t for t in dict.fromkeys(trees) if t not in cache]
    if missing:
        exprs = [formula_to_sympy(t, grammar) for t in missing]
        outs = output_features(exprs, grammar)
        fis = (fisher_features(exprs, grammar, task.x_train, task.y_train, cfg) if fisher
               else np.zeros((len(exprs), 0)))
        for t, o, f in zip(missing, outs, fis, strict=True):
            cache[t] = (o, f)
    return [cache[t] for t in trees]


def predict_children(children: list, state: State, grammar: Grammar, task: Task, cfg: TrainConfig,
                     cache: dict) -> np.ndarray:
    """Predicted log score of each child (lower is better), from the records trained so far."""
    recs = list(state.records.values())
    trees = [r.tree for r in recs] + [str(c) for c in children]
    model = KNNSurrogate()
    rows = _rows(trees, grammar, task, cfg, cache, uses_fisher(model))
    feats = Features(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]))
    known = np.arange(len(recs))
    query = np.arange(len(recs), len(rows))
    return model.predict(feats, known, target([r.ood_score for r in recs]), query)
