"""Surrogate models (gpact.search.surrogate_model): the k-NN default and the optional UMAP model's hint."""

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from gpact.cli import main
from gpact.errors import ConfigError
from gpact.search.surrogate_model import Features, KNNSurrogate, make_surrogate


def test_knn_predicts_a_neighbours_score_on_the_chosen_feature_blocks():
    rng = np.random.default_rng(0)
    outputs, fisher = rng.normal(size=(40, 100)), rng.normal(size=(40, 5))
    fisher[1] = fisher[0] + 1e-3  # row 1 is row 0's neighbour by Fisher features alone
    feats = Features(outputs, fisher)
    known, query = np.arange(2, 40), np.array([0, 1])
    scores = rng.normal(size=38)
    pred = KNNSurrogate(k=1).predict(feats, known, scores, query)
    assert pred.shape == (2,) and all(np.isclose(scores, p).any() for p in pred)  # k=1: a neighbour's score
    known = np.array([0, 5, 9])  # row 1's nearest among these, by Fisher features, is row 0
    near = KNNSurrogate(k=1, which="fisher").predict(feats, known, np.array([3.0, -1.0, 7.0]), np.array([1]))
    assert np.allclose(near, [3.0])


def test_the_default_surrogate_looks_at_the_output_features_alone():
    """The README's claim: the strategy's k-NN predicts from outputs only (the better predictor on the replay
    table), so scrambling the Fisher block changes nothing, and scrambling the outputs does."""
    from gpact.search.surrogate import SURROGATE_MODEL

    rng = np.random.default_rng(1)
    outputs, fisher = rng.normal(size=(50, 30)), rng.normal(size=(50, 8))
    known, query, scores = np.arange(10, 50), np.arange(10), rng.normal(size=40)
    model = make_surrogate(SURROGATE_MODEL)
    base = model.predict(Features(outputs, fisher), known, scores, query)
    assert np.array_equal(base, model.predict(Features(outputs, rng.permutation(fisher)), known, scores, query))
    assert not np.allclose(base, model.predict(Features(rng.permutation(outputs), fisher), known, scores, query))


def test_missing_umap_learn_is_a_one_line_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "gpact\[surrogate\]"'):
        make_surrogate("umap")
    res = CliRunner().invoke(main, ["bench", "--surrogate", "--model", "umap", "--seeds", "1"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith("gpact: ") and 'gpact[surrogate]' in res.output


def test_bench_surrogate_replays_the_shipped_table_as_json(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the replay's feature cache

    res = CliRunner().invoke(main, ["bench", "--surrogate", "--limit", "80", "--seeds", "2", "--batch", "4",
                                    "--gp-cap", "24", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output.strip().splitlines()[-1])
    assert r["size"] == 80 and r["seeds"] == 2 and set(r["evals"]) == {"random", "surrogate", "surrogate-cold", "gp"}
    for name, ev in r["evals"].items():
        cap = 25 if name == "gp" else 81
        assert 1 <= ev["top1%"] <= ev["best"] <= cap
    assert set(r["spearman"]) == {"outputs", "fisher", "both"} and all(-1 <= v <= 1 for v in r["spearman"].values())
    assert "protocol" in r and "Adam" in r["protocol"]
    assert len(list(tmp_path.rglob("features-*.npz"))) == 2
