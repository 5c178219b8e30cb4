"""How noisy is the tail objective, and does its tail term carry the signal? (issue 13)

    python benchmarks/objective_noise.py collect --seeds 0,1,2 --out noise.json   # about 10 min on 2 CPU cores
    python benchmarks/objective_noise.py analyse noise.json

`collect` trains eight activations and their sign mirrors -f(x) on the search, validation and test parts of the
default runs of the given seeds, keeping every network's OOD loss. An MLP whose weights and biases are drawn
symmetrically about 0 trains f and -f alike in distribution (the next layer absorbs the sign), so the gap between
their scores is pure initialisation noise. `analyse` rescores the saved losses under several (tail fraction,
tail weight) settings: the median mirror gap (noise) against the Spearman correlation of search and test scores
over the 16 functions (signal), per seed.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

BASE = ["gelu(x)", "silu(x)", "relu(x)", "tanh(x)", "softplus(x)", "silu(2*x)", "gelu(x) + 0.1*sin(x)", "abs(gelu(x))"]
SETTINGS = [(0.25, 1.0), (0.25, 0.5), (0.5, 1.0), (0.5, 0.5), (1.0, 0.0)]
PARTS = ("search", "validation", "test")


def collect(seeds: list[int], out: str) -> None:
    from gpact.backends import make_backend
    from gpact.config import RunConfig
    from gpact.expr.grammar import load_grammar
    from gpact.run.verdict import yardstick
    from gpact.search.records import score_on_suite
    from gpact.train.partition import partition
    from gpact.train.tasks import make_suite

    functions = BASE + [f"-({f})" for f in BASE]
    grammar, data = load_grammar("full"), {}
    for seed in seeds:
        cfg = RunConfig(seed=seed)
        backend = make_backend(cfg.backend, cfg.workers, cfg.ray_address, cfg.chunk_timeout, cfg.device, cfg.seed)
        plan = partition(cfg.tasks, cfg.validation, cfg.test, cfg.seed)
        for part in PARTS:
            tasks = make_suite(plan.tasks[part], n_train=cfg.n_train, n_ood=cfg.n_ood, seed=cfg.seed)
            objective, own = yardstick(cfg, tasks, backend)
            scored = score_on_suite(functions, grammar, tasks, cfg, backend, objective)
            data[f"{seed}/{part}"] = {"reference": dict(objective.reference), "own": dict(own.per_run),
                                      "f": {f: dict(r.per_run) for f, r in zip(functions, scored, strict=True)}}
            print(f"seed {seed} {part}: done", flush=True)
        backend.close()
    with open(out, "w") as fh:
        json.dump(data, fh)


def analyse(path: str) -> None:
    from gpact.train.objective import spearman, tail_score

    with open(path) as fh:
        data = json.load(fh)
    seeds = sorted({k.split("/")[0] for k in data})
    for q, w in SETTINGS:
        def score(key: str, f: str, q=q, w=w) -> float:
            p = data[key]
            return (tail_score(p["f"][f], p["reference"], q, w).score
                    - tail_score(p["own"], p["reference"], q, w).score)

        gaps, rho = [], []
        for s in seeds:
            scores = {part: {f: score(f"{s}/{part}", f) for f in data[f"{s}/{part}"]["f"]} for part in PARTS}
            gaps += [abs(scores[p][f] - scores[p][f"-({f})"]) for p in PARTS for f in BASE]
            fs = list(scores["search"])
            rho.append(spearman([scores["search"][f] for f in fs], [scores["test"][f] for f in fs]))
        print(f"tail {q:g} weight {w:g}: mirror gap median x{np.exp(np.median(gaps)):.2f} "
              f"(mean x{np.exp(np.mean(gaps)):.2f}); "
              f"Spearman search-test per seed {', '.join(f'{r:.2f}' for r in rho)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--seeds", default="0,1,2")
    c.add_argument("--out", default="noise.json")
    a = sub.add_parser("analyse")
    a.add_argument("path")
    args = ap.parse_args()
    if args.cmd == "collect":
        collect([int(s) for s in args.seeds.split(",")], args.out)
    else:
        analyse(args.path)


if __name__ == "__main__":
    main()
