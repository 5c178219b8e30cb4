"""Plots: drawn from a run folder alone, PNG files of a readable size, curves clipped to show shapes."""

import json
import shutil

import matplotlib.image as mpimg
import numpy as np
import pytest

from gpact.expr.grammar import resolve_path
from gpact.run import plots, rundir
from gpact.run.front import front_rows, to_csv
from gpact.search.records import Record

FRONT = [("gelu(x) + 0.1*sin(x)", 14.0, 0.5), ("relu(x)", 1.0, 0.9), ("x*x*x + x", 3.0, 0.7), ("x", 0.0, 1.2)]


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as a finished run leaves it, written by hand: no training needed."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copyfile(resolve_path("minimal"), out / rundir.GRAMMAR_COPY)
    rundir.write_json(out / rundir.CONFIG, {"grammar": "minimal", "generations": 2})
    recs = [Record(key=f"k{i}", formula=f, tree=f, flops=fl, ood_score=s, id_loss=0.1, generation=0)
            for i, (f, fl, s) in enumerate(FRONT)]
    recs.sort(key=lambda r: r.ood_score)
    gelu = Record(key="g", formula="gelu(x)", tree="gelu(x)", flops=9.0, ood_score=1.0, id_loss=0.1, generation=-1)
    rundir.write_text(out / rundir.PARETO, to_csv(front_rows(recs, gelu)))
    cloud = [{"key": f"c{i}", "flops": float(i % 9), "ood_score": 1.0 + i / 10, "generation": 0} for i in range(20)]
    rundir.append_jsonl(out / rundir.CANDIDATES, cloud + [{"key": "bad", "flops": 2.0, "ood_score": 1e6}])
    rundir.write_json(out / rundir.SUMMARY, {"references": {"gelu(x)": 1.0, "relu(x)": 0.9},
                                             "reference_flops": {"gelu(x)": 9.0, "relu(x)": 1.0}})
    return out


def test_plots_are_written_into_the_run_folder(run_dir):
    paths = plots.write_plots(run_dir)
    assert [p.name for p in paths] == ["pareto.png", "curves.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        h, w = mpimg.imread(p).shape[:2]
        assert w >= 900 and h >= 600  # big enough to read the labels
    assert paths[1].stat().st_size > 20_000  # lines were drawn, not an empty frame


def test_only_missing_plots_are_redrawn(run_dir):
    paths = plots.write_plots(run_dir)
    before = [p.stat().st_mtime_ns for p in paths]
    assert plots.write_plots(run_dir, only_missing=True) == paths
    assert [p.stat().st_mtime_ns for p in paths] == before
    paths[1].unlink()
    plots.write_plots(run_dir, only_missing=True)
    assert paths[1].exists()


def test_plot_data_comes_from_the_run_folder(run_dir):
    assert plots._references(run_dir) == {"gelu": (9.0, 1.0), "relu": (1.0, 0.9)}
    cloud = plots._cloud(run_dir)
    assert len(cloud) == 20  # the failed candidate (worst score) is left out


def test_curve_limits_show_shapes_despite_a_fast_growing_curve():
    x = np.linspace(-5, 5, 801)
    relu, gelu_like = np.maximum(x, 0), np.maximum(x, -0.2)
    lo, hi = plots._limits([x**3 + x, np.full_like(x, np.nan), 0.5 * x], [relu, gelu_like])
    assert -7 < lo < -2.5 and 5 < hi < 12  # every curve's middle in view, the cubic's ends clipped, NaN ignored
    lo, hi = plots._limits([0.1 * x], [relu])
    assert lo < -0.5 and 5 < hi < 5.5  # nothing beyond what the curves need
    lo, hi = plots._limits([np.zeros_like(x)], [np.zeros_like(x)])
    assert lo < 0 < hi  # a flat line still gets a range


def test_run_without_a_front_draws_nothing(tmp_path):
    (tmp_path / rundir.CONFIG).write_text(json.dumps({"grammar": "minimal"}))
    assert plots.write_plots(tmp_path) == []
