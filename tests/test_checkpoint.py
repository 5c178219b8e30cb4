"""Checkpoints: plain JSON, atomic, complete enough that a resumed run is the uninterrupted run."""

import ast
import dataclasses
import itertools
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from gpact.backends.base import SerialBackend
from gpact.config import LLMConfig, RunConfig, TrainConfig
from gpact.errors import ConfigError
from gpact.run import checkpoint
from gpact.run.runner import run
from gpact.run.stopping import Stopper, parse_duration
from gpact.search.gp import Search
from gpact.search.records import State
from gpact.train.tasks import make_suite

CFG = RunConfig(grammar="minimal", generations=3, population=8, seed=4, tasks="smoke", train_seeds=1,
                train=TrainConfig(width=4, steps=5), validation="", test="", evaluator="reference")


def _run(cfg, out, run_id, **kw):
    return run(dataclasses.replace(cfg, out_dir=str(out), run_id=run_id), echo=lambda s: None, live=False, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _run(CFG, tmp_path_factory.mktemp("runs"), "ref").run_dir


def test_checkpoint_is_plain_json_and_restores_the_population_exactly(tmp_path):
    res = _run(dataclasses.replace(CFG, generations=1), tmp_path, "a")
    data = json.loads((res.run_dir / checkpoint.FILE).read_text())
    assert data["format"] == "gpact-checkpoint" and data["generation"] == 2
    assert {"population", "records", "references", "rng", "counters", "config"} <= set(data)
    assert len(data["records"]) == res.state.evaluations and set(data["rng"]) == {"python", "numpy", "torch"}

    ckpt = checkpoint.load(res.run_dir)
    assert ckpt.state.records == res.state.records and ckpt.state.evaluations == res.state.evaluations
    search = Search(ckpt_cfg := RunConfig.from_dict(ckpt.config), checkpoint.run_grammar(res.run_dir),
                    make_suite("smoke", n_train=ckpt_cfg.n_train, n_ood=ckpt_cfg.n_ood), SerialBackend())
    pop = checkpoint.restore_population(search, ckpt)
    assert [str(p) for p in pop] == res.state.population
    for ind, m in zip(pop, data["population"], strict=True):
        assert list(ind.fitness.values) == m["fitness"] and ind.fitness.crowding_dist == m["crowding_dist"]


def test_resume_after_a_finished_part_gives_the_uninterrupted_front(tmp_path, reference):
    first = _run(dataclasses.replace(CFG, generations=1), tmp_path, "b")
    assert first.state.generation == 2
    res = run(dataclasses.replace(CFG, generations=3), echo=lambda s: None, live=False, resume=first.run_dir)
    assert res.state.generation == 4 and res.stopped_by == "generations"
    for name in ("pareto.csv", "candidates.jsonl"):
        assert (res.run_dir / name).read_bytes() == (reference / name).read_bytes(), name
    assert json.loads((res.run_dir / "config.json").read_text())["generations"] == 3


def test_log_rows_of_a_generation_lost_in_a_crash_are_dropped_on_resume(tmp_path, reference):
    first = _run(dataclasses.replace(CFG, generations=1), tmp_path, "c")
    cands = first.run_dir / "candidates.jsonl"
    # what a process killed between its log appends and its checkpoint leaves: rows of generation 2, a torn line
    with open(cands, "a") as f:
        f.write(json.dumps({"key": "lost", "generation": 2}) + "\n" + '{"key": "to')
    with open(first.run_dir / "generations.jsonl", "a") as f:
        f.write(json.dumps({"generation": 2, "evaluated": 99}) + "\n")
    res = run(None, echo=lambda s: None, live=False, resume=first.run_dir)  # None: the run's own config
    assert res.state.generation == 2  # its config says 1 generation: nothing to run, only the finish
    res = run(dataclasses.replace(CFG, generations=3), echo=lambda s: None, live=False, resume=first.run_dir)
    assert cands.read_bytes() == (reference / "candidates.jsonl").read_bytes()
    gens = [json.loads(line)["generation"] for line in (first.run_dir / "generations.jsonl").read_text().splitlines()]
    assert gens == [0, 1, 2, 3]


def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path, reference):
    first = _run(dataclasses.replace(CFG, generations=0), tmp_path, "d")
    (first.run_dir / checkpoint.FILE).unlink()  # as if killed during generation 0
    res = run(dataclasses.replace(CFG, generations=3), echo=lambda s: None, live=False, resume=first.run_dir)
    assert (res.run_dir / "pareto.csv").read_bytes() == (reference / "pareto.csv").read_bytes()


def test_incompatible_config_is_refused_naming_every_key_and_limits_may_change(tmp_path, reference):
    changed = dataclasses.replace(CFG, seed=5, tasks="poly_cubic", train=TrainConfig(width=8, steps=5),
                                  generations=9, time_limit=60.0, max_evals=100, device="cpu", evaluator="auto")
    with pytest.raises(ConfigError) as err:
        run(changed, echo=lambda s: None, live=False, resume=reference)
    msg = str(err.value)
    assert "seed: run 4, now 5" in msg and "tasks: run 'smoke', now 'poly_cubic'" in msg
    assert "train.width: run 4, now 8" in msg
    named = msg.split("(only")[0]
    assert not any(k in named for k in ("generations", "time_limit", "max_evals", "device", "evaluator"))
    ok = dataclasses.replace(CFG, generations=9, time_limit=60.0, device="cpu", out_dir="elsewhere", run_id="x")
    assert checkpoint.config_differences(checkpoint.saved_config(reference), ok) == []
    # a key this gpact does not know is a difference; one the run's gpact did not know yet is its default
    saved = dict(checkpoint.saved_config(reference), colour="blue")
    assert checkpoint.config_differences(saved, ok) == ["colour: run 'blue', now (unset)"]
    saved = checkpoint.saved_config(reference)
    del saved["max_evals"], saved["train"]["lr"]
    assert checkpoint.config_differences(saved, ok) == []


def test_generator_states_survive_json(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = json.loads(json.dumps(checkpoint.rng_state()))
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    checkpoint.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch, reference):
    ckpt = checkpoint.load(reference)
    run_dir = tmp_path / "e"
    run_dir.mkdir()
    (run_dir / checkpoint.FILE).write_text("previous")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        checkpoint.save(run_dir, CFG, "minimal", ckpt.state, [], ckpt.references, ckpt.rng)
    assert (run_dir / checkpoint.FILE).read_text() == "previous"
    assert [p.name for p in run_dir.iterdir()] == [checkpoint.FILE]  # no temp file left behind


def test_loading_never_executes_code(tmp_path, reference):
    text = (reference / checkpoint.FILE).read_text()
    assert "__reduce__" not in text and "py/object" not in text
    json.loads(text)  # valid JSON (with Infinity for unbounded crowding distances)
    source = Path(checkpoint.__file__).read_text()
    imported = {n.names[0].name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import)}
    assert not {"pickle", "dill", "marshal", "shelve"} & imported
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / checkpoint.FILE).write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="not a gpact checkpoint"):
        checkpoint.load(tmp_path / "bad")


def test_stop_criteria_are_checked_between_generations():
    clock = [0.0]
    cfg = dataclasses.replace(CFG, generations=5, time_limit=parse_duration("1m30s"), max_evals=10)
    stopper = Stopper(cfg, clock=lambda: clock[0])
    state = State(generation=0, evaluations=50)
    clock[0] = 1000.0
    assert stopper.reason(state) == ""  # generation 0 always runs
    state.generation = 1
    assert stopper.reason(state) == "time limit"
    clock[0] = 89.0
    assert stopper.reason(state) == "max evals"
    state.evaluations = 9
    assert stopper.reason(state) == ""
    state.generation = 6
    assert stopper.reason(state) == "generations"
    assert parse_duration("2h") == 7200 and parse_duration("90") == 90 and parse_duration("") == 0
    with pytest.raises(ConfigError, match="cannot read time limit"):
        parse_duration("soon")


def test_llm_run_resumes_with_its_budget_random_state_and_cache(tmp_path):
    pytest.importorskip("openai")
    from fake_llm import FakeLLM

    pool = ["tanh(x) + 0.1*x", "sin(x)*relu(x)", "gelu(x)*tanh(x)", "relu(x) + 0.1*sin(x)", "tanh(gelu(x))"]
    counter = itertools.count()
    server = FakeLLM(default=lambda body: json.dumps([pool[next(counter) % 5], pool[next(counter) % 5]]))
    try:
        # a call budget that runs out mid-run: a resumed run must know how much of it was spent
        cfg = dataclasses.replace(CFG, llm=LLMConfig(base_url=server.url, model="m", rate=0.5, mutation_rate=0.5,
                                                     max_calls=7, timeout=5.0))
        ref = _run(cfg, tmp_path, "ref")  # answers land in tmp_path/.llm_cache, shared by the runs below
        calls = len(server.requests)
        assert 0 < calls <= 7
        part = _run(dataclasses.replace(cfg, generations=1), tmp_path, "part")
        res = run(cfg, echo=lambda s: None, live=False, resume=part.run_dir)
    finally:
        server.close()
    assert len(server.requests) == calls  # every answer after the resume came from the cache
    for name in ("pareto.csv", "candidates.jsonl"):
        assert (res.run_dir / name).read_bytes() == (ref.run_dir / name).read_bytes(), name
    assert any(json.loads(line)["origin"] == "llm" for line in (res.run_dir / "candidates.jsonl").open())
