"""Score every distinct function of grammars/aquasurf.yaml's `unit` template once, for `gpact bench --surrogate`.

    nice python benchmarks/build_replay_table.py [--out gpact/report/data/aquasurf_replay.csv]

Protocol (fixed, cheap, CPU): the functions `gpact enumerate --grammar aquasurf --template unit` lists, each
trained on TASKS (three library tasks of three families, from the default run's search part), one seed,
the run's default MLP (1 -> 16 -> 16 -> 1) for STEPS full-batch Adam steps on N_TRAIN points, scored by
the geometric mean of the OOD losses (gpact's `geomean` objective; lower is better; a diverged network
scores WORST). The table has one row per function: fingerprint key, formula, score, per-task OOD loss.
Rows are appended in chunks, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from gpact.config import ProtocolDist, TrainConfig
from gpact.expr.fingerprint import fingerprint
from gpact.expr.grammar import load_grammar
from gpact.expr.templates import count_distinct
from gpact.expr.trees import formula_to_sympy
from gpact.train.batched import evaluate_batched
from gpact.train.tasks import make_suite

TASKS = ["kink/658879", "feynman/II.13.17", "harmonic/922676"]
STEPS, N_TRAIN, N_OOD, WIDTH, DEPTH, LR, SEED = 100, 128, 128, 16, 2, 1e-2, 0
CHUNK = 128


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parents[1] / "gpact/report/data/aquasurf_replay.csv"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N functions (a quick check)")
    args = ap.parse_args()
    g = load_grammar("aquasurf")
    formulas = count_distinct("unit", g, formulas=True).formulas
    if args.limit:
        formulas = formulas[: args.limit]
    tasks = make_suite(TASKS, n_train=N_TRAIN, n_ood=N_OOD)
    cfg = TrainConfig(width=WIDTH, depth=DEPTH, steps=STEPS, lr=LR)
    out = Path(args.out)
    done = set()
    if out.exists():
        with out.open() as fh:
            done = {row["formula"] for row in csv.DictReader(line for line in fh if not line.startswith("#"))}
    else:
        with out.open("w") as fh:
            fh.write(f"# gpact replay table: grammars/aquasurf.yaml template unit, {len(formulas)} distinct functions\n"
                     f"# protocol: tasks {','.join(TASKS)}; seed {SEED}; MLP 1-{WIDTH}x{DEPTH}-1; {STEPS} Adam steps "
                     f"lr {LR}; n_train {N_TRAIN}; n_ood {N_OOD}; score = geometric mean OOD loss (lower is better)\n"
                     "# rebuilt by: nice python benchmarks/build_replay_table.py\n")
            csv.writer(fh).writerow(["key", "formula", "score", *TASKS])
    todo = [f for f in formulas if f not in done]
    t0 = time.perf_counter()
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start: start + CHUNK]
        exprs = [formula_to_sympy(f, g) for f in chunk]
        fits = evaluate_batched(exprs, g, tasks, [SEED], cfg, device="cpu", protocol=ProtocolDist.fixed())
        with out.open("a") as fh:
            w = csv.writer(fh)
            for f, e, fit in zip(chunk, exprs, fits, strict=True):
                w.writerow([fingerprint(e, g), f, f"{fit.ood_score:.6g}", *(f"{fit.per_task[t]:.6g}" for t in TASKS)])
        print(f"{start + len(chunk)}/{len(todo)} in {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
