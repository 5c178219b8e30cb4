"""LLM crossover against a loopback chat-completions server with scripted good, bad and hostile answers."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time

import pytest

pytest.importorskip("openai")

from fake_llm import FakeLLM  # noqa: E402

from gpact.config import LLMConfig  # noqa: E402
from gpact.errors import ConfigError  # noqa: E402
from gpact.expr.grammar import load_grammar  # noqa: E402
from gpact.expr.llm_parse import CandidateError, extract_candidates, to_formula  # noqa: E402
from gpact.expr.trees import analyse, make_pset, parse_tree, tree_to_sympy  # noqa: E402
from gpact.search.llm import LLMOperator, Parent, build_messages  # noqa: E402

GRAMMAR = load_grammar("full")
PSET = make_pset(GRAMMAR)


@pytest.fixture
def server():
    s = FakeLLM()
    yield s
    s.close()


def parent(text: str, score: float = 0.5) -> Parent:
    tree = parse_tree(text, GRAMMAR, PSET)
    an = analyse(tree_to_sympy(tree, GRAMMAR), GRAMMAR)
    return Parent(an.formula, score, an.flops, str(tree))  # no key: the operator computes it


P1, P2 = parent("gelu(x)", 0.3), parent("sin(x)", 0.9)
FRONT = [parent("relu(x)", 0.6), parent("x", 1.0), P1]


def operator(server, tmp_path, seed=0, **kw) -> LLMOperator:
    cfg = LLMConfig(**{"base_url": server.url, "model": "test-model", "rate": 1.0, "timeout": 2.0, **kw})
    return LLMOperator(cfg, GRAMMAR, PSET, tmp_path / "run" / "llm_calls.jsonl", random.Random(seed),
                       cache_dir=tmp_path / "cache")


def log_rows(tmp_path):
    return [json.loads(line) for line in (tmp_path / "run" / "llm_calls.jsonl").read_text().splitlines()]


def formulas(trees):
    return [analyse(tree_to_sympy(t, GRAMMAR), GRAMMAR).formula for t in trees]


# -- good answers ------------------------------------------------------------------------------------------


def test_good_json_list_gives_children_and_logs_the_call(server, tmp_path):
    server.script = ['["gelu(x) + 0.1*sin(x)", "x*sigmoid(1.5*x)"]']
    op = operator(server, tmp_path)
    kids = op.crossover(P1, P2, FRONT)
    assert formulas(kids) == ["gelu(x) + 0.1*sin(x)", "x*sigmoid(1.5*x)"]
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "test-model"
    prompt = req["body"]["messages"][-1]["content"]
    for needle in ("Parent A (OOD loss 0.3", "gelu(x)", "sin(x)", "relu(x)", "softplus(a)", "max(a, b)",
                   "JSON list of 2", "at most 60 FLOPs"):
        assert needle in prompt
    s = op.stats()
    assert (s["calls"], s["cached"], s["accepted"], s["proposed"], s["tokens"]) == (1, 0, 2, 2, 120)
    assert s["acceptance"] == 1.0 and not s["fallbacks"]
    (row,) = log_rows(tmp_path)
    assert row["kind"] == "crossover" and row["response"].startswith('["gelu')
    assert row["usage"]["total_tokens"] == 120 and len(row["accepted"]) == 2 and row["rejected"] == []
    assert row["prompt"][-1]["content"] == prompt
    assert "llm 1 calls (0 cached)  accepted 2/2 (100%)  tokens 120" in op.progress()
    op.new_generation(1)
    assert op.stats()["calls"] == 0 and op.stats(total=True)["calls"] == 1


def test_python_function_and_fenced_answers(server, tmp_path):
    server.script = [
        "Here you go:\n```python\nimport torch\n\ndef activation(x):\n    g = torch.nn.functional.gelu(x)\n"
        "    return g * (1 + 0.5 * torch.sinc(x))\n```\n",
        'Sure!\n```json\n["scipy.special.expit(x) * x", {"formula": "np.maximum(x, 0.1*x)"}]\n```\nThese should work.',
    ]
    op = operator(server, tmp_path, n_children=1)
    assert formulas(op.mutate(P1, FRONT)) == ["0.5*(sinc(x) + 2)*gelu(x)"]
    assert "Parent (OOD loss 0.3" in server.requests[0]["body"]["messages"][-1]["content"]
    kids = op.crossover(P1, P2, FRONT)
    assert len(kids) == 1 and formulas(kids) == ["x*sigmoid(x)"]


def test_duplicates_and_limits_are_refused_per_child(server, tmp_path):
    big = " + ".join(f"sin({i}*x)" for i in range(1, 9))
    costly = "gelu(gelu(gelu(x)))*gelu(gelu(gelu(2*x))) + gelu(3*x)"  # 67 FLOPs, within size and height
    server.script = [json.dumps(["0.5*x*(1 + erf(0.7071067811865476*x))", "tanh(x)", "tanh(x)", big, costly, "0.5",
                                 "foo(x)"])]
    op = operator(server, tmp_path, n_children=3)
    kids = op.crossover(P1, P2, FRONT)
    assert formulas(kids) == ["tanh(x)"]
    rejected = op.stats()["rejected"]
    assert rejected["duplicate"] == 2  # gelu written out (same function as parent 1), tanh twice
    assert rejected == {"duplicate": 2, "too_big": 1, "flops": 1, "constant": 1, "unknown_primitive": 1}
    assert op.stats()["proposed"] == 7 and op.stats()["fallbacks"] == {}
    reasons = [r["reason"] for r in log_rows(tmp_path)[0]["rejected"]]
    assert reasons == ["duplicate", "duplicate", "too_big", "flops", "constant", "unknown_primitive"]


# -- bad answers -------------------------------------------------------------------------------------------

BAD = [
    ("malformed", "I think a good activation is something smooth, maybe like a wave?", "no_candidates"),
    ("empty", "", "empty"),
    ("unknown", '["tf.nn.gelu(x)", "bessel_j0(x)", "y + 1"]', "no_valid_child"),
    ("import", "__import__('os').system('touch {marker}')", "unsafe"),
    ("json_import", '["__import__(\'os\').system(\'touch {marker}\')", "exec(\'import os\')", "eval(\'1\')"]',
     "no_valid_child"),
    ("lambda", '["lambda x: x", "(lambda: 0)()", "[c for c in ().__class__.__bases__[0].__subclasses__()]"]',
     "no_valid_child"),
    ("dunder", '["x.__class__.__init__.__globals__", "getattr(x, \'__dict__\')", "x.real"]', "no_valid_child"),
    ("def_side_effect", "```python\ndef activation(x):\n    import os\n    os.system('touch {marker}')\n"
                        "    return x\n```", "no_valid_child"),
    ("def_loop", "def activation(x):\n    while True:\n        pass\n    return x", "no_valid_child"),
    ("def_exponential", "def activation(x):\n" + "    x = x*x + x\n" * 40 + "    return x", "no_valid_child"),
    ("deep", "[" * 3000 + "]" * 3000 + "(" * 3000 + "x" + ")" * 3000, "no_candidates"),
    ("huge", "x + " * 30000 + "x", "too_long"),
    ("pow_bomb", '["9**9**9**9*x", "x**99999999"]', "no_valid_child"),
]


@pytest.mark.parametrize("name,answer,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_answers_fall_back_and_execute_nothing(server, tmp_path, monkeypatch, name, answer, reason):
    marker = tmp_path / "pwned"
    ran = []
    monkeypatch.setattr(os, "system", lambda *a: ran.append(a) or 0)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: ran.append(a))
    server.script = [answer.replace("{marker}", str(marker))]
    op = operator(server, tmp_path)
    t0 = time.perf_counter()
    assert op.crossover(P1, P2, FRONT) is None
    assert time.perf_counter() - t0 < 10
    assert op.stats()["fallbacks"] == {reason: 1}
    assert not marker.exists() and not ran
    (row,) = log_rows(tmp_path)
    assert row["fallback"] == reason and row["accepted"] == []


@pytest.mark.parametrize("reply,reason", [
    (("status", 500), "http_500"),
    (("status", 429), "rate_limited"),
    (("status", 404), "http_404"),
    (("raw", b"<html>not json</html>"), "bad_response"),
    (("json", {"id": "x", "object": "chat.completion", "choices": []}), "bad_response"),
    (("sleep", 3.0, '["tanh(x)"]'), "timeout"),
], ids=["500", "429", "404", "garbage_body", "no_choices", "slow"])
def test_server_failures_fall_back_fast(server, tmp_path, reply, reason):
    server.script = [reply]
    op = operator(server, tmp_path, timeout=0.5)
    t0 = time.perf_counter()
    assert op.crossover(P1, P2, FRONT) is None
    assert time.perf_counter() - t0 < 0.5 + 2.5
    assert op.stats()["fallbacks"] == {reason: 1}
    assert len(server.requests) == 1  # no retries
    assert log_rows(tmp_path)[0]["error"] == reason


def test_unreachable_server_is_not_cached(tmp_path):
    dead = FakeLLM()
    dead.close()  # the port is closed now
    cfg = LLMConfig(base_url=dead.url, model="m", rate=1.0, timeout=1.0)
    op = LLMOperator(cfg, GRAMMAR, PSET, tmp_path / "log.jsonl", random.Random(0), tmp_path / "cache")
    assert op.crossover(P1, P2, FRONT) is None
    assert op.stats()["fallbacks"] == {"connection": 1}
    assert not any((tmp_path / "cache").glob("*.json"))


# -- cache, budget, config ---------------------------------------------------------------------------------


def _session(server, tmp_path, seed):
    """A fixed sequence of LLM uses driven by a seeded rng, as a search would make them."""
    op = operator(server, tmp_path, seed=seed)
    out = []
    for i in range(6):
        if op.wants_crossover():
            out.append(formulas(op.crossover(P1, P2, FRONT) or []))
        if i % 2:
            out.append(formulas(op.mutate(P2, FRONT) or []))
    return out, op


def test_rerun_with_same_seed_replays_from_cache_without_calls(server, tmp_path):
    answers = iter(range(1000))
    server.default = lambda body: json.dumps([f"tanh({next(answers) + 1}*x)", "gelu(x)*cos(x)"])
    server.script = [("status", 500)]  # an error is replayed too
    first, op1 = _session(server, tmp_path, seed=1)
    n = len(server.requests)
    assert n == 9 and op1.stats()["fallbacks"] == {"http_500": 1}
    assert len({tuple(f) for f in first}) == len(first)  # the same prompt asked again is a new request
    second, op2 = _session(server, tmp_path, seed=1)
    assert second == first and len(server.requests) == n
    assert op2.stats()["cached"] == 9 and op2.stats()["fallbacks"] == {"http_500": 1}
    assert sum(r["cached"] for r in log_rows(tmp_path)) == 9
    # other sampling settings are other cache entries
    operator(server, tmp_path, temperature=0.2).crossover(P1, P2, FRONT)
    assert len(server.requests) == n + 1


def test_max_calls_and_token_budget(server, tmp_path):
    server.default = lambda body: f'["tanh({len(server.requests)}*x)"]'
    op = operator(server, tmp_path, max_calls=2)
    results = [op.mutate(P1, FRONT) for _ in range(4)]
    assert [r is not None for r in results] == [True, True, False, False]
    assert len(server.requests) == 2 and op.stats()["fallbacks"] == {"max_calls": 2}
    op = operator(server, tmp_path, max_total_tokens=100, temperature=0.1)
    op.mutate(P1, FRONT)
    assert op.mutate(P1, FRONT) is None and op.stats()["fallbacks"] == {"token_budget": 1}
    # a resumed run keeps its budget
    op2 = operator(server, tmp_path, max_calls=2)
    op2.load_state_dict(json.loads(json.dumps(op.state_dict())) | {"requests": 2})
    assert op2.mutate(P1, FRONT) is None and op2.stats()["fallbacks"] == {"max_calls": 1}


def test_disabled_and_config_errors(tmp_path):
    op = LLMOperator(LLMConfig(), GRAMMAR, PSET, tmp_path / "log.jsonl", random.Random(0))
    assert not op.wants_crossover() and not op.wants_mutation()
    assert op.crossover(P1, P2, FRONT) is None and op.stats()["fallbacks"] == {"disabled": 1}
    with pytest.raises(ConfigError, match="--llm-base-url"):
        LLMConfig(rate=0.5)
    with pytest.raises(ConfigError):
        LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", rate=1.5)


def test_rate_draws_from_the_given_rng(server, tmp_path):
    op = operator(server, tmp_path, rate=0.5, seed=3)
    rolls = [op.wants_crossover() for _ in range(200)]
    assert 70 < sum(rolls) < 130
    assert rolls == [operator(server, tmp_path, rate=0.5, seed=3).wants_crossover() for _ in range(1)] + rolls[1:]
    assert not server.requests


def test_api_key_comes_from_the_named_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GPACT_TEST_KEY", "sk-test-123")
    server.script = ['["tanh(x)"]']
    operator(server, tmp_path, api_key_env="GPACT_TEST_KEY").crossover(P1, P2, FRONT)
    assert server.requests[0]["auth"] == "Bearer sk-test-123"
    assert "sk-test-123" not in (tmp_path / "run" / "llm_calls.jsonl").read_text()


# -- parsing (no server) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("scipy.special.expit(x)", "sigmoid(x)"),
    ("F.softplus(x) - 1", "softplus(x) - 1"),
    ("np.maximum(x, 0)", "Max(0, x)"),
    ("torch.special.erf(x) * x", "x*erf(x)"),
    ("jax.nn.gelu(x) + 0.1*jnp.sin(x)", "gelu(x) + 0.1*sin(x)"),
    ("torch.clamp(x, min=-1, max=1)", "Min(1, Max(-1, x))"),
    ("np.clip(x, 0, None) + np.pi", "Max(0, x) + 3.142"),
    ("F.mish(x)", "x*tanh(softplus(x))"),
    ("torch.log1p(torch.exp(x))", "log(exp(x) + 1)"),
    ("def act(z):\n    '''doc'''\n    y = torch.tanh(z)\n    y *= 2\n    return y + z", "x + 2*tanh(x)"),
])
def test_to_formula_maps_library_names(text, expected):
    tree = parse_tree(to_formula(text, GRAMMAR), GRAMMAR, PSET)
    assert analyse(tree_to_sympy(tree, GRAMMAR), GRAMMAR).formula == expected


def test_rewrites_reach_smaller_grammars():
    minimal = load_grammar("minimal")
    assert to_formula("F.silu(x)", minimal) == "(x * (1.0 / (1.0 + exp((-x)))))"  # no sigmoid: written out
    with pytest.raises(CandidateError):
        to_formula("x.sigmoid()", minimal)


@pytest.mark.parametrize("answer,expected", [
    ('["a(x)", "b(x)"]', ["a(x)", "b(x)"]),
    ("['a(x)', 'b(x)']", ["a(x)", "b(x)"]),
    ('{"children": [{"expression": "a(x)"}, "b(x)"]}', ["a(x)", "b(x)"]),
    ("1. gelu(x) + x\n2) f(x) = `tanh(x)`\n- y = sin(x)\nExplanation follows.", ["gelu(x) + x", "tanh(x)", "sin(x)"]),
    ("<think>maybe [\"no(x)\"]</think>\n[\"yes(x)\"]", ["yes(x)"]),
    ("def a(x):\n    return x\n\ndef b(x):\n    return -x", ["def a(x):\n    return x", "def b(x):\n    return -x"]),
])
def test_extract_candidates(answer, expected):
    assert extract_candidates(answer) == expected


def test_prompt_lists_primitives_and_context():
    msgs = build_messages("crossover", [P1, P2], FRONT * 3, GRAMMAR, 3, front_size=2)
    text = msgs[-1]["content"]
    assert msgs[0]["role"] == "system" and "gelu(a)" in text and "a / b" in text and "JSON list of 3" in text
    assert text.count("\n- ") == 2  # two front members, parents left out


def test_strange_constants_are_refused_not_crashing(server, tmp_path):
    server.script = ['["1e999*x", "x*1e308*1e308", "tanh(x) + 0*x"]']
    op = operator(server, tmp_path, n_children=3)
    kids = op.crossover(P1, P2, FRONT)
    assert formulas(kids) == ["tanh(x)"]
    assert op.stats()["rejected"] == {"syntax": 1, "non_finite": 1}  # 1e999 is no float: the parser refuses it


def test_missing_openai_package_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "openai", None)  # `import openai` now fails
    cfg = LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", rate=0.5)
    with pytest.raises(ConfigError, match="gpact\\[llm\\]"):
        LLMOperator(cfg, GRAMMAR, PSET, tmp_path / "log.jsonl", random.Random(0))
