"""`gpact` in a subprocess that pauses inside a chosen generation, for the signal and SIGKILL tests.

    python tests/hooked_run.py GENERATION MARKER_DIR gpact-args...

When the search evaluates the functions of GENERATION, this writes MARKER_DIR/paused and waits until
MARKER_DIR/go exists (forever if it never does). A test can then signal or kill the process at a known
point: in the middle of that generation, after its variation has drawn its random numbers and before any
of its results are written. Everything else is the real command line.
"""

import sys
import time
from pathlib import Path

import torch

from gpact.cli import main
from gpact.search.gp import Search
from gpact.search.gradient import GradientSearch

torch.set_num_threads(1)  # the same arithmetic as the in-process runs it is compared with
generation, marker, args = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]


def paused(evaluate):
    def paused_evaluate(self, individuals, state, progress=None):
        if state.generation == generation:
            (marker / "paused").write_text("paused")
            while not (marker / "go").exists():
                time.sleep(0.05)
        return evaluate(self, individuals, state, progress)

    return paused_evaluate


Search.evaluate = paused(Search.evaluate)
GradientSearch.evaluate = paused(GradientSearch.evaluate)  # after its supernets trained, before any result
main(args, prog_name="gpact")
