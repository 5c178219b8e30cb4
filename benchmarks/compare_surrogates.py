"""Which surrogate predicts gpact's own scores better: k-NN (default) or AQuaSurF's UMAP model (issue 16).

    python benchmarks/compare_surrogates.py [--splits 3] [--share 0.2]

On the replay table (gpact/report/data/aquasurf_replay.csv): fit each model on a random `share` of the
functions, predict the rest, Spearman correlation with the true log score; median over `splits` splits.
The UMAP model needs umap-learn (pip install "gpact[surrogate]").
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gpact.expr.grammar import load_grammar
from gpact.report.replay import load_table, spearman, table_features
from gpact.search.surrogate_model import KNNSurrogate, UMAPSurrogate, target


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.2)
    args = ap.parse_args()
    table = load_table()
    feats = table_features(table, load_grammar("aquasurf"))
    y = target(table.scores)
    for model in (KNNSurrogate(), UMAPSurrogate()):
        vals, t0 = [], time.perf_counter()
        for s in range(args.splits):
            perm = np.random.default_rng(s).permutation(table.size)
            cut = int(args.share * table.size)
            fit, test = np.sort(perm[:cut]), np.sort(perm[cut:])
            vals.append(spearman(model.predict(feats, fit, y[fit], test), y[test]))
        print(f"{model.name:5s} Spearman median {np.median(vals):.3f} (splits: {', '.join(f'{v:.3f}' for v in vals)}); "
              f"{(time.perf_counter() - t0) / args.splits:.1f} s per fit+predict", flush=True)


if __name__ == "__main__":
    main()
