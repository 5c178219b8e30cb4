"""End to end: `gpact run --llm-rate 0.5` against a loopback chat-completions server with good and bad answers."""

from __future__ import annotations

import csv
import itertools
import json

import pytest

pytest.importorskip("openai")

from click.testing import CliRunner  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402

from gpact.cli import main  # noqa: E402

# Good on the smoke tasks at these settings (checked by scoring them): the first dominates part of the
# front that the GP finds by itself in a few generations.
GOOD = ["sigmoid(relu(x) + 1)", "min(abs(x), 1)", "relu(x)*sinc(x)", "sigmoid(abs(x))", "tanh(abs(x))",
        "sigmoid(0.5*x)"]


def _server(marker) -> FakeLLM:
    counter = itertools.count()

    def good(body):
        i = next(counter)
        return json.dumps([GOOD[(2 * i) % len(GOOD)], GOOD[(2 * i + 1) % len(GOOD)]])

    server = FakeLLM(default=good)
    server.script = [
        good,
        ("status", 500),
        f"__import__('os').system('touch {marker}')",
        ("status", 429),
        ("sleep", 2.0, '["tanh(x)"]'),
        "I am not sure what you mean.",
        '["foo(x)", "tf.nn.relu(x)", "lambda x: x"]',
        ("raw", b"<html>502 bad gateway</html>"),
        "```python\ndef activation(x):\n    import os\n    os.system('touch " + str(marker) + "')\n    return x\n```",
    ]
    return server


def _run(server, out, run_id, extra=()):
    args = ["run", "--grammar", "full", "--generations", "4", "--population", "12", "--steps", "40",
            "--train-seeds", "1", "--tasks", "smoke", "--validation", "", "--test", "", "--seed", "3",
            "--out", str(out),
            "--run-id", run_id, "--llm-base-url", server.url, "--llm-model", "fake-model", "--llm-rate", "0.5",
            "--llm-timeout", "0.5", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_with_llm_crossover_survives_bad_answers_and_replays(tmp_path):
    marker = tmp_path / "pwned"
    server = _server(marker)
    try:
        result = _run(server, tmp_path / "runs", "a")
        assert result.exit_code == 0, result.output
        n = len(server.requests)
        run = tmp_path / "runs" / "a"
        assert n > 12 and "llm " in result.output and "accepted" in result.output

        # every scripted failure was survived, counted, and logged; nothing was executed
        fallbacks = {}
        for gen in _jsonl(run / "generations.jsonl"):
            for reason, k in gen["llm"].get("fallbacks", {}).items():
                fallbacks[reason] = fallbacks.get(reason, 0) + k
        assert {"http_500", "unsafe", "rate_limited", "timeout", "no_candidates", "no_valid_child",
                "bad_response"} <= set(fallbacks)
        assert not marker.exists()
        calls = _jsonl(run / "llm_calls.jsonl")
        assert len(calls) == n and all(c["prompt"] and "cached" in c for c in calls)

        # the good proposals reached the front
        records = {r["key"]: r for r in _jsonl(run / "candidates.jsonl")}
        front = list(csv.DictReader((run / "pareto.csv").open()))
        assert any(records[r["key"]]["origin"] == "llm" for r in front), [r["formula"] for r in front]
        assert all(r["origin"] == records[r["key"]]["origin"] for r in front)  # the front says who made what
        assert "origin" in result.output and " llm " in result.output  # and so does the printed table

        # the same seed again: every answer from the cache, no new request, the same front
        again = _run(server, tmp_path / "runs", "b")
        assert again.exit_code == 0, again.output
        assert len(server.requests) == n
        assert (tmp_path / "runs" / "b" / "pareto.csv").read_text() == (run / "pareto.csv").read_text()
        assert all(c["cached"] for c in _jsonl(tmp_path / "runs" / "b" / "llm_calls.jsonl"))
    finally:
        server.close()


def test_llm_rate_without_a_server_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["run", "--llm-rate", "0.5", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--llm-base-url" in result.output
