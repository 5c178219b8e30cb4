"""Shared test setup: tests run on a small shared CPU, so keep torch to one thread for steady timing."""

import torch

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A tiny finished run with a recommended function, made once per session (tests read it, never write it)."""
    import gpact

    out = tmp_path_factory.mktemp("finished_run")
    return gpact.run(grammar="minimal", echo=None, out_dir=str(out), run_id="r", generations=1, population=4,
                     tasks="smoke", train_seeds=1, train={"width": 4, "steps": 5}, validation="validation:1", test="")


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory):
    """`cli_run(args)`: the folder of a finished `gpact run ARGS` in a fresh directory, for a module's fixtures."""
    from click.testing import CliRunner

    from gpact.cli import main

    def make(args, run_id="ref"):
        out = tmp_path_factory.mktemp("runs")
        res = CliRunner().invoke(main, ["run", *args, "--out", str(out), "--run-id", run_id])
        assert res.exit_code == 0, res.output
        return out / run_id

    return make
