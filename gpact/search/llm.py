"""LLM crossover and mutation: an OpenAI-compatible chat model as a variation operator, safe by construction.

The model sees the parents as simplified formulas with their OOD score and FLOPs, a few members of the
current front and the grammar's primitives, and answers with new formulas (a JSON list, or Python
functions). Answers are read by `gpact.expr.llm_parse` with `ast` only and never executed; every child is
mapped onto the grammar, checked by the run's validity rule (gpact.search.accept: limits, templates, FLOP
budget, not constant) and deduplicated by fingerprint. Any failure (HTTP error, 429, timeout, garbage,
unknown primitive, hostile text) returns None so the caller falls back to subtree crossover, and the
reason is counted.

Every answer (errors included) is cached on disk under a hash of the prompt, model, sampling settings
and how many times that prompt was asked before, so a re-run with the same seed replays the same
answers without calling the server. Every request is logged to `llm_calls.jsonl`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deap import gp

from gpact.config import LLMConfig
from gpact.errors import ConfigError, FormulaError
from gpact.expr.fingerprint import is_finite
from gpact.expr.grammar import Grammar
from gpact.expr.llm_parse import MAX_ANSWER_CHARS, CandidateError, extract_candidates, to_formula
from gpact.expr.trees import Analysis, analyse, parse_tree, tree_to_sympy
from gpact.search.accept import Acceptance

CACHE_VERSION = 1
MAX_CACHE_BYTES = 1_000_000  # a cached answer holds at most MAX_ANSWER_CHARS characters, JSON-escaped
_DEADLINE_SLACK = 2.0  # seconds past the client's own timeout before a request is abandoned
_OPERATOR_SPELLING = {"+": "a + b", "-": "a - b", "*": "a * b", "/": "a / b", "neg": "-a", "**2": "a**2",
                      "**3": "a**3"}
# Errors worth replaying from the cache: the server answered (badly). A server that cannot be reached
# at all is not cached, so a re-run after starting it gets real answers.
_UNCACHED_ERRORS = {"connection", "client_error"}


@dataclass(frozen=True)
class Parent:
    """A parent or front member as the model sees it; `key` (fingerprint) is computed from the tree if absent."""

    formula: str
    ood_score: float
    flops: float
    tree_text: str
    key: str | None = None

    @classmethod
    def of(cls, tree: gp.PrimitiveTree, analysis: Analysis, ood_score: float) -> Parent:
        return cls(analysis.formula, float(ood_score), analysis.flops, str(tree), analysis.key)


@dataclass
class _Counts:
    requests: int = 0  # calls answered, live or from the cache
    cached: int = 0
    proposed: int = 0  # candidate formulas read from answers
    accepted: int = 0  # children returned to the search
    tokens: int = 0
    fallbacks: Counter = field(default_factory=Counter)  # requests that gave no child, by reason
    rejected: Counter = field(default_factory=Counter)  # candidates refused, by reason

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.requests, "cached": self.cached, "live": self.requests - self.cached,
                "proposed": self.proposed, "accepted": self.accepted,
                "acceptance": self.accepted / self.proposed if self.proposed else 0.0, "tokens": self.tokens,
                "fallbacks": dict(self.fallbacks), "rejected": dict(self.rejected)}


class LLMOperator:
    """Crossover and mutation by a chat model; see the module docstring. Not thread-safe (one search loop)."""

    def __init__(self, cfg: LLMConfig, grammar: Grammar, pset: gp.PrimitiveSet, log_path: Path,
                 rng: random.Random, cache_dir: Path | None = None, accept: Acceptance | None = None):
        self.cfg, self.grammar, self.pset, self.rng = cfg, grammar, pset, rng
        self.accept = accept or Acceptance(grammar)  # the run's validity rule, the same the search applies
        self.log_path = Path(log_path)
        directory = cfg.cache_dir or cache_dir or self.log_path.parent / "llm_cache"
        self.cache = _Cache(Path(directory))
        self._client = _make_client(cfg) if cfg.enabled else None
        self._gen, self._total = _Counts(), _Counts()
        self._asked: Counter = Counter()  # prompt hash -> times asked, part of the cache key
        self._parent_keys: dict[str, str | None] = {}
        self._generation: int | None = None

    # -- the hooks the search calls ------------------------------------------------------------------------

    def wants_crossover(self) -> bool:
        """Roll the dice for one crossover (draws from `rng` only when the LLM is on)."""
        return self._client is not None and self.cfg.rate > 0 and self.rng.random() < self.cfg.rate

    def wants_mutation(self) -> bool:
        return self._client is not None and self.cfg.mutation_rate > 0 and self.rng.random() < self.cfg.mutation_rate

    def crossover(self, p1: Parent, p2: Parent, front: list[Parent]) -> list[gp.PrimitiveTree] | None:
        """1..n_children new valid trees combining the parents, or None (reason counted): fall back to cxOnePoint."""
        return self._ask("crossover", [p1, p2], front)

    def mutate(self, p: Parent, front: list[Parent]) -> list[gp.PrimitiveTree] | None:
        """1..n_children new valid variations of one parent, or None (reason counted): fall back to a mutation."""
        return self._ask("mutation", [p], front)

    def stats(self, total: bool = False) -> dict[str, Any]:
        """Counts for this generation (since `new_generation`), or for the whole run."""
        return (self._total if total else self._gen).as_dict()

    def new_generation(self, generation: int | None = None) -> None:
        """Reset the per-generation counts; `generation` is written into later log lines."""
        self._gen = _Counts()
        self._generation = generation

    def progress(self, total: bool = False) -> str:
        """One short line for the per-generation progress: calls, acceptance, tokens, fallback reasons."""
        s = self.stats(total)
        line = (f"llm {s['calls']} calls ({s['cached']} cached)  accepted {s['accepted']}/{s['proposed']} "
                f"({100 * s['acceptance']:.0f}%)  tokens {_short(s['tokens'])}")
        if s["fallbacks"]:
            line += "  fallbacks " + " ".join(f"{k} {v}" for k, v in sorted(s["fallbacks"].items()))
        return line

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint, so a resumed run keeps its budget and replays from the cache."""
        return {"requests": self._total.requests, "tokens": self._total.tokens, "asked": dict(self._asked)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._total.requests = int(state.get("requests", 0))
        self._total.tokens = int(state.get("tokens", 0))
        self._asked = Counter({str(k): int(v) for k, v in state.get("asked", {}).items()})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- one request ---------------------------------------------------------------------------------------

    def _ask(self, kind: str, parents: list[Parent], front: list[Parent]) -> list[gp.PrimitiveTree] | None:
        if self._client is None:
            return self._fallback("disabled")
        if self._total.requests >= self.cfg.max_calls:
            return self._fallback("max_calls")
        if self.cfg.max_total_tokens and self._total.tokens >= self.cfg.max_total_tokens:
            return self._fallback("token_budget")
        messages = build_messages(kind, parents, front, self.grammar, self.cfg.n_children, self.cfg.front_size)
        settings = {"model": self.cfg.model, "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        prompt_hash = _sha({"messages": messages, **settings})
        index = self._asked[prompt_hash]
        self._asked[prompt_hash] += 1
        key = _sha({"v": CACHE_VERSION, "prompt": prompt_hash, "index": index})

        t0 = time.perf_counter()
        entry = self.cache.get(key)
        cache_note = self.cache.note
        cached = entry is not None
        if entry is None:
            entry = self._request(messages, seed=int(key[:8], 16))
            if entry.get("error") not in _UNCACHED_ERRORS:
                self.cache.put(key, entry)
        tokens = int((entry.get("usage") or {}).get("total_tokens") or 0)
        for c in (self._gen, self._total):
            c.requests += 1
            c.cached += cached
            c.tokens += tokens

        children, accepted, rejected, reason = [], [], [], entry.get("error")
        if reason is None:
            children, accepted, rejected, reason = self._children(entry.get("content") or "", parents)
        if reason is not None:
            self._fallback(reason)
        self._log({"kind": kind, "generation": self._generation, "call": self._total.requests, "cache_key": key,
                   "cached": cached, "model": self.cfg.model, "settings": settings,
                   "parents": [p.formula for p in parents], "prompt": messages, "response": entry.get("content"),
                   "error": entry.get("error"), "error_detail": entry.get("detail"), "usage": entry.get("usage"),
                   "accepted": accepted, "rejected": rejected, "fallback": reason,
                   "seconds": round(time.perf_counter() - t0, 3), **({"cache_note": cache_note} if cache_note else {})})
        return children or None

    def _request(self, messages: list[dict[str, str]], seed: int) -> dict[str, Any]:
        """One live chat-completions call -> {"content", "usage"} or {"error", "detail"}; never raises."""
        import openai

        def call():
            return self._client.chat.completions.create(
                model=self.cfg.model, messages=messages, temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_tokens, seed=seed, timeout=self.cfg.timeout)

        try:
            resp = _with_deadline(call, self.cfg.timeout + _DEADLINE_SLACK)
            content = resp.choices[0].message.content
            usage = resp.usage.model_dump() if getattr(resp, "usage", None) is not None else None
        except _Deadline:
            return {"error": "timeout", "detail": f"no answer within {self.cfg.timeout + _DEADLINE_SLACK:g} s"}
        except openai.APITimeoutError as exc:
            return {"error": "timeout", "detail": str(exc)[:300]}
        except openai.RateLimitError as exc:
            return {"error": "rate_limited", "detail": str(exc)[:300]}
        except openai.APIStatusError as exc:
            return {"error": f"http_{exc.status_code}", "detail": str(exc)[:300]}
        except openai.APIConnectionError as exc:
            return {"error": "connection", "detail": str(exc)[:300]}
        except (openai.OpenAIError, AttributeError, IndexError, TypeError, ValueError, KeyError) as exc:
            return {"error": "bad_response", "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}
        except Exception as exc:  # the client met something unforeseen: never let it stop the search
            return {"error": "client_error", "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}
        if not isinstance(content, str):
            return {"error": "bad_response", "detail": "the answer has no text content", "usage": usage}
        if len(content) > MAX_ANSWER_CHARS:
            return {"error": "too_long", "detail": f"{len(content)} characters", "usage": usage}
        return {"content": content, "usage": usage}

    # -- answer -> children --------------------------------------------------------------------------------

    def _children(self, content: str, parents: list[Parent]):
        """(trees, accepted log rows, rejected log rows, fallback reason or None)."""
        try:
            snippets = extract_candidates(content)
        except CandidateError as exc:  # nothing to read: counted as the request's fallback reason only
            return [], [], [{"text": content[:200], "reason": exc.reason, "detail": str(exc)}], exc.reason
        seen = {k for k in (self._parent_key(p) for p in parents) if k is not None}
        trees, accepted, rejected = [], [], []
        n = self.cfg.n_children
        for snippet in snippets[: 4 * n]:
            if len(trees) >= n:
                break
            self._gen.proposed += 1
            self._total.proposed += 1
            try:
                tree, an = self._check(snippet)
                if an.key in seen:
                    raise CandidateError("duplicate", f"same function as a parent or sibling: {an.formula}")
            except CandidateError as exc:
                self._gen.rejected[exc.reason] += 1
                self._total.rejected[exc.reason] += 1
                rejected.append({"text": snippet[:500], "reason": exc.reason, "detail": str(exc)[:300]})
                continue
            seen.add(an.key)
            trees.append(tree)
            accepted.append({"formula": an.formula, "tree": str(tree), "flops": an.flops, "key": an.key})
        for c in (self._gen, self._total):
            c.accepted += len(trees)
        return trees, accepted, rejected, None if trees else "no_valid_child"

    def _check(self, snippet: str) -> tuple[gp.PrimitiveTree, Analysis]:
        text = to_formula(snippet, self.grammar)
        try:
            tree = parse_tree(text, self.grammar, self.pset)
        except FormulaError as exc:
            msg = str(exc)
            unknown = "not a primitive" in msg or "unknown name" in msg or "unknown function" in msg
            raise CandidateError("unknown_primitive" if unknown else "grammar", msg) from None
        except (RecursionError, ValueError) as exc:
            raise CandidateError("grammar", f"{type(exc).__name__}: {exc}") from None
        no = self.accept.check(tree)  # limits and templates first: no sympy work on an oversized tree
        if no is None:
            try:
                an = analyse(tree_to_sympy(tree, self.grammar), self.grammar)
            except Exception as exc:  # sympy and torch on a strange but well-formed formula: refuse it, go on
                raise CandidateError("invalid", f"{type(exc).__name__}: {str(exc)[:200]}") from None
            no = self.accept.check(tree, an)
        if no is not None:
            raise CandidateError(no.reason, no.detail)
        if not is_finite(an.expr, self.grammar):
            raise CandidateError("non_finite", f"not finite in float32 on [-6, 6]: {_clip(an.formula, 100)}")
        return tree, an

    def _parent_key(self, p: Parent) -> str | None:
        if p.key is not None:
            return p.key
        if p.tree_text not in self._parent_keys:
            try:
                tree = parse_tree(p.tree_text, self.grammar, self.pset)
                self._parent_keys[p.tree_text] = analyse(tree_to_sympy(tree, self.grammar), self.grammar).key
            except FormulaError:
                self._parent_keys[p.tree_text] = None
        return self._parent_keys[p.tree_text]

    def _fallback(self, reason: str) -> None:
        self._gen.fallbacks[reason] += 1
        self._total.fallbacks[reason] += 1
        return None

    def _log(self, row: dict[str, Any]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------------------------------------------------
# prompts

SYSTEM = ("You design activation functions for neural networks. You answer only with a JSON list of formula "
          "strings in Python syntax over the single input variable x, using only the functions you are given.")


def build_messages(kind: str, parents: list[Parent], front: list[Parent], grammar: Grammar, n: int,
                   front_size: int = 5) -> list[dict[str, str]]:
    """Chat messages for a crossover (two parents) or a mutation (one parent)."""
    lim = grammar.limits
    lines = [
        "We search for pointwise activation functions f(x) for small MLPs. Each is scored by the loss of MLPs "
        "trained with it, measured on inputs outside the training range (OOD loss: lower is better), and by "
        "its cost in FLOPs per element (lower is better).",
        "",
        "Allowed functions: " + ", ".join(_signature(p) for p in grammar.primitives.values()) + ".",
        "Allowed operators: " + (", ".join(_operators(grammar)) or "none") + ".",
        "Numbers are allowed as constants" + ("." if grammar.ephemeral is not None else
                                              f" only from: {', '.join(f'{c:g}' for c in grammar.constants)}."),
        f"Limits: expression tree height <= {lim.max_height}, at most {lim.max_size} nodes, "
        f"at most {lim.max_flops:g} FLOPs.",
    ]
    shown = _context(front, parents, front_size)
    if shown:
        lines += ["", "Current best trade-offs (OOD loss, FLOPs, formula):"]
        lines += [f"- {_num(p.ood_score)}, {p.flops:g}, {_clip(p.formula)}" for p in shown]
    lines.append("")
    if kind == "crossover":
        a, b = parents
        lines += [f"Parent A (OOD loss {_num(a.ood_score)}, {a.flops:g} FLOPs): {_clip(a.formula)}",
                  f"Parent B (OOD loss {_num(b.ood_score)}, {b.flops:g} FLOPs): {_clip(b.formula)}",
                  "",
                  f"Write {n} new activation functions that combine the useful parts of parent A and parent B "
                  "and may beat both."]
    else:
        (a,) = parents
        lines += [f"Parent (OOD loss {_num(a.ood_score)}, {a.flops:g} FLOPs): {_clip(a.formula)}",
                  "",
                  f"Write {n} new variations of the parent: change a constant, replace, add or remove one "
                  "operation, or simplify it, to lower the OOD loss or the FLOPs."]
    lines.append(f'Answer with a JSON list of {n} formula strings and nothing else, for example '
                 f'["gelu(x) + 0.1*sin(x)", "x*sigmoid(1.5*x)"].')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def _signature(p) -> str:
    return f"{p.name}({', '.join('abc'[:p.arity])})"


def _operators(grammar: Grammar) -> list[str]:
    return [spelling for alias, spelling in _OPERATOR_SPELLING.items() if grammar.by_alias(alias) is not None]


def _context(front: list[Parent], parents: list[Parent], size: int) -> list[Parent]:
    """Up to `size` front members (not the parents), spread from cheapest to most accurate."""
    skip = {p.tree_text for p in parents}
    pool = sorted((p for p in front if p.tree_text not in skip), key=lambda p: (p.flops, p.ood_score, p.formula))
    if len(pool) <= size:
        return pool
    step = (len(pool) - 1) / max(size - 1, 1)
    return [pool[round(i * step)] for i in range(size)] if size > 1 else pool[:1]


def _num(v: float) -> str:
    return f"{v:.4g}"


def _clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _short(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


# ---------------------------------------------------------------------------------------------------------
# client, deadline, cache


def _make_client(cfg: LLMConfig):
    try:
        import openai
    except ImportError:
        raise ConfigError("LLM crossover needs the 'openai' package: pip install 'gpact[llm]'") from None
    # Local servers (vLLM, Ollama, llama.cpp) accept any key; the client refuses to start without one.
    key = os.environ.get(cfg.api_key_env) or "not-needed"
    return openai.OpenAI(base_url=cfg.base_url, api_key=key, max_retries=0, timeout=cfg.timeout)


class _Deadline(Exception):
    pass


def _with_deadline(fn, seconds: float):
    """Run `fn` in a daemon thread; give up waiting after `seconds` (the thread is abandoned, not killed:
    it holds only a socket, which the client's own timeout closes)."""
    box: dict[str, Any] = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    t = threading.Thread(target=run, name="gpact-llm-request", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise _Deadline()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class _Cache:
    """One JSON file per answer, `<sha256>.json`, written atomically. Unreadable, oversized or malformed files
    (a full disk's half write, a poisoned cache folder) count as misses; `note` says why, for the call log."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.note: str | None = None  # why the last `get` ignored a file that was there

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.dir / f"{key}.json"
        self.note = None
        try:
            with path.open("rb") as f:
                data = f.read(MAX_CACHE_BYTES + 1)  # no stat: the file may grow between the two
        except OSError:
            return None
        if len(data) > MAX_CACHE_BYTES:
            self.note = f"cache entry {path.name} is over {MAX_CACHE_BYTES} bytes: ignored"
            return None
        try:
            entry = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):  # RecursionError: a file of 100,000 '['
            self.note = f"cache entry {path.name} is not JSON: ignored"
            return None
        if not _entry_ok(entry):
            self.note = f"cache entry {path.name} is not an answer: ignored"
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(entry, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.dir / f"{key}.json")


def _entry_ok(entry: Any) -> bool:
    """Whether a cache file holds what `_request` returns: text fields as text, usage as counts."""
    if not isinstance(entry, dict):
        return False
    text = all(entry.get(k) is None or isinstance(entry.get(k), str) for k in ("content", "error", "detail"))
    usage = entry.get("usage")
    counts = usage is None or (isinstance(usage, dict) and all(
        v is None or (isinstance(v, int) and not isinstance(v, bool)) for k, v in usage.items()
        if k in ("total_tokens", "prompt_tokens", "completion_tokens")))
    return text and counts and len(entry.get("content") or "") <= MAX_ANSWER_CHARS
