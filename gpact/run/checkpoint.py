"""Checkpoints: what a run needs to continue, in one JSON file rewritten atomically after every generation.

JSON because loading it runs no code (no pickle) and a person can read it. It holds the population as tree
text with each member's fitness and crowding distance (NSGA-II's tournament reads both, and the crowding
distance depends on the individuals it was computed among, so it cannot be recomputed from the survivors),
every record, the counters, the reference scores, the random generator states and the LLM operator's state.

Determinism. A resumed run must end with the same front as an uninterrupted one. The checkpoint is taken at
generation boundaries only, so a process killed mid-generation loses that generation and nothing else. The
generator states of python `random` (DEAP draws from it), numpy and torch are captured right after each
generation and put back right before the next one, in uninterrupted and resumed runs alike. Saving states
rather than reseeding every generation from (seed, generation) keeps a run's trajectory the same as before
checkpoints existed; putting them back in both paths means that whatever runs between generations (restoring
the population, sympy, plots, reference scoring) cannot shift them.

Order of writes at the end of a generation: candidates and generation logs are appended, the front is
rewritten, then the checkpoint (the commit point). Log rows of generations the checkpoint does not cover
are dropped on resume (`truncate_logs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpact.config import RunConfig
from gpact.errors import ConfigError, GpactError
from gpact.expr.grammar import Grammar, load_grammar
from gpact.run import rundir
from gpact.search.records import Record, State
from gpact.search.strategy import Strategy
from gpact.train.objective import Objective

FILE = rundir.CHECKPOINT
FORMAT, VERSION = "gpact-checkpoint", 1
MAX_BYTES = 1 << 30  # 1 GiB: about a million evaluated functions; a larger file is damaged or hostile
_SHAPE = {"generation": int, "grammar_name": str, "config": dict, "counters": dict, "population": list,
          "records": list, "references": dict, "rng": dict}

# Config keys that may change when a run is resumed: limits, where it runs, how it is evaluated. Everything
# else (grammar, seed, tasks, training, operators) decides which functions are found and must stay.
RESUMABLE = frozenset({
    "generations", "time_limit", "max_evals", "max_networks", "out_dir", "run_id", "device", "evaluator",
    "backend", "workers", "ray_address", "chunk_timeout", "llm.timeout", "llm.api_key_env", "llm.cache_dir",
})  # fmt: skip


@dataclass
class Checkpoint:
    """A loaded checkpoint: plain data, turned back into a population by `restore_population`."""

    config: dict[str, Any]
    grammar_name: str
    state: State
    population: list[dict[str, Any]]  # {"tree", "fitness": [ood, flops], "crowding_dist"}
    references: dict[str, Record]
    rng: dict[str, Any]
    llm: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    written: str = ""
    objective: dict[str, Any] = field(default_factory=dict)  # {"reference": GELU's networks, "baseline"}
    grammar_sha256: str = ""  # of the run folder's grammar.yaml when written; "" in older checkpoints

    @property
    def generation(self) -> int:
        """Generations completed (generation 0 is the initial population); the next one to run."""
        return self.state.generation


# ---------------------------------------------------------------------------------------------------------
# random generator states as plain data


def _py_state(rng: random.Random | None = None) -> list:
    version, internal, gauss = (rng or random).getstate()
    return [version, list(internal), gauss]


def _set_py_state(data: list, rng: random.Random | None = None) -> None:
    version, internal, gauss = data
    (rng or random).setstate((int(version), tuple(int(v) for v in internal), gauss))


def rng_state() -> dict[str, Any]:
    """The global generators of python, numpy and torch (CPU) as lists, ints and a hex string."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": _py_state(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().numpy().tobytes().hex(),
    }


def set_rng_state(data: dict[str, Any]) -> None:
    _set_py_state(data["python"])
    name, keys, pos, has_gauss, cached = data["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(list(bytes.fromhex(data["torch"])), dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------------------
# save, load, restore


def save(run_dir: Path, cfg: RunConfig, grammar_name: str, state: State, population: list,
         references: dict[str, Record], rng: dict[str, Any], llm=None, started: str = "",
         objective: Objective | None = None) -> Path:
    """Write `run_dir/checkpoint.json` atomically (temp file + rename): a crash leaves the previous one."""
    members = [{"tree": str(ind), "fitness": list(ind.fitness.values),
                "crowding_dist": getattr(ind.fitness, "crowding_dist", 0.0)} for ind in population]
    data = {
        "format": FORMAT, "version": VERSION, "written": _now(), "started": started,
        "generation": state.generation, "grammar_name": grammar_name, "config": cfg.to_dict(),
        "counters": {"evaluations": state.evaluations, "cache_hits": state.cache_hits, "elapsed": state.elapsed,
                     "networks": state.networks, "rejections": dict(state.rejections)},
        "population": members,
        "records": [dataclasses.asdict(r) for r in state.records.values()],  # a list: keeps insertion order
        "references": {k: dataclasses.asdict(r) for k, r in references.items()},
        "rng": rng,
        "llm": {"state": llm.state_dict(), "rng": _py_state(llm.rng)} if llm is not None else {},
        "objective": {"reference": dict(objective.reference or {}), "baseline": objective.baseline}
        if objective is not None else {},
        "grammar_sha256": grammar_sha256(run_dir),
    }
    path = Path(run_dir) / FILE
    # Non-finite floats (an infinite crowding distance) are written as Infinity/NaN, which json reads back.
    rundir.write_text(path, json.dumps(data, separators=(",", ":")) + "\n")
    return path


def load(run_dir: Path) -> Checkpoint | None:
    """The run's checkpoint, or None if it has none yet (stopped during generation 0).

    Every part is checked for shape here, so a damaged or hostile file is one ConfigError naming it.
    """
    path = Path(run_dir) / FILE
    if not path.exists():
        return None
    data = rundir.read_json(path, MAX_BYTES)
    if data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a gpact checkpoint")
    if data.get("version") != VERSION:
        raise ConfigError(f"{path}: checkpoint version {rundir.one_line(data.get('version'))}, "
                          f"this gpact reads {VERSION}")
    rundir.check_shape(path, data, required=_SHAPE,
                       optional={"llm": dict, "started": str, "written": str, "grammar_sha256": str,
                                 "objective": dict})
    try:
        records = [_record(r) for r in data["records"]]
        c = rundir.check_shape(path, data["counters"],
                               required={"evaluations": int, "cache_hits": int, "elapsed": (int, float)},
                               optional={"networks": int, "rejections": dict})
        rejections = c.get("rejections", {})
        if not all(isinstance(k, str) and isinstance(n, int) for k, n in rejections.items()):
            raise ValueError("rejection counts are not reasons and whole numbers")
        population = [_member(m) for m in data["population"]]
        references = {str(k): _record(r) for k, r in data["references"].items()}
        _check_rng(data["rng"], data.get("llm") or {})
        if data["generation"] < 0:
            raise ValueError("negative generation")
        saved_objective = _objective(data.get("objective") or {})
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, RuntimeError) as exc:
        raise ConfigError(f"{path}: not a valid checkpoint ({type(exc).__name__}: {rundir.one_line(exc)})") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: not a valid checkpoint ({str(exc).removeprefix(f'{path}: ')})") from None
    state = State(generation=data["generation"], population=[m["tree"] for m in population],
                  records={r.key: r for r in records}, evaluations=c["evaluations"],
                  cache_hits=c["cache_hits"], elapsed=float(c["elapsed"]), networks=c.get("networks", 0),
                  rejections=dict(rejections))
    return Checkpoint(config=data["config"], grammar_name=data["grammar_name"], state=state,
                      population=population, references=references, rng=data["rng"],
                      llm=data.get("llm") or {}, started=data.get("started", ""), written=data.get("written", ""),
                      grammar_sha256=data.get("grammar_sha256", ""), objective=saved_objective)


def objective(ckpt: Checkpoint, cfg: RunConfig) -> Objective:
    """The run's objective as it was saved: GELU's yardstick networks are not trained again on resume."""
    saved = ckpt.objective
    return Objective(cfg.objective, cfg.tail, cfg.tail_weight,
                     reference={k: float(v) for k, v in saved.get("reference", {}).items()} or None,
                     baseline=float(saved.get("baseline", 0.0)))


def _objective(saved: dict[str, Any]) -> dict[str, Any]:
    """The saved yardstick: GELU's network losses by key, and GELU's own tail score."""
    reference, baseline = saved.get("reference", {}), saved.get("baseline", 0.0)
    if not isinstance(reference, dict) or not all(isinstance(v, int | float) for v in reference.values()) \
            or not isinstance(baseline, int | float):
        raise ValueError("the saved objective is not GELU's network losses and a baseline")
    return saved


# Record fields by the type their annotation names; a checkpoint's records must match.
_TYPES = {"str": str, "float": (int, float), "int": int, "dict": dict, "list": list}
_RECORD = {f.name: _TYPES.get(str(f.type).split("[")[0], object) for f in dataclasses.fields(Record)}


def _record(data: Any) -> Record:
    if not isinstance(data, dict):
        raise TypeError(f"a record is {type(data).__name__}, not an object")
    for key, value in data.items():
        kind = _RECORD.get(key)
        if kind is None:
            raise ValueError(f"unknown record field {key!r}"[:100])
        if not isinstance(value, kind):
            raise TypeError(f"record field {key!r} is {type(value).__name__}")
    return Record(**data)


def _member(m: Any) -> dict[str, Any]:
    """A population member as `restore_population` reads it: tree text, two fitness values, a distance."""
    if not isinstance(m, dict) or not isinstance(m.get("tree"), str):
        raise TypeError("a population member lacks its tree text")
    fitness = m.get("fitness")
    if not isinstance(fitness, list) or not all(isinstance(v, int | float) for v in fitness):
        raise TypeError("a population member's fitness is not a list of numbers")
    if not isinstance(m.get("crowding_dist", 0.0), int | float):
        raise TypeError("a population member's crowding distance is not a number")
    return m


def _check_rng(rng: dict[str, Any], llm: dict[str, Any]) -> None:
    """Generator states load into fresh generators (never the global ones), so a bad one fails here."""
    _set_py_state(rng["python"], random.Random())
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.RandomState().set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.Generator().set_state(torch.tensor(list(bytes.fromhex(rng["torch"])), dtype=torch.uint8))
    if llm:
        if not isinstance(llm.get("state"), dict):
            raise TypeError("llm state is not an object")
        _set_py_state(llm["rng"], random.Random())


def grammar_sha256(run_dir: Path) -> str:
    """sha256 of the run folder's grammar copy ("" without one): a resume checks it is still the same."""
    copy = Path(run_dir) / rundir.GRAMMAR_COPY
    return hashlib.sha256(copy.read_bytes()).hexdigest() if copy.is_file() else ""


def restore_population(strategy: Strategy, ckpt: Checkpoint) -> list:
    """The population as it was after the checkpoint's generation: same order, fitness and crowding distance."""
    try:
        return strategy.restore(ckpt.population)
    except (GpactError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{FILE}: population cannot be restored ({type(exc).__name__}: {rundir.one_line(exc)})"
                          ) from None


def restore_llm(llm, ckpt: Checkpoint) -> None:
    """Budget counters, prompt counts (part of the cache key) and the LLM operator's random state."""
    if llm is not None and ckpt.llm:
        try:
            llm.load_state_dict(ckpt.llm["state"])
            _set_py_state(ckpt.llm["rng"], llm.rng)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{FILE}: the LLM operator's state cannot be restored ({type(exc).__name__}: "
                              f"{rundir.one_line(exc)})") from None


# ---------------------------------------------------------------------------------------------------------
# resuming: config, grammar, logs


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 5}} -> {"train.steps": 5}: nested configs compared key by key."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict[str, Any], cfg: RunConfig) -> list[str]:
    """Keys that differ between a run's saved config and `cfg`, outside RESUMABLE, as 'key: run X, now Y'.

    A key the saved config lacks (a field added to gpact since the run started) counts as its default,
    which is how new fields keep old behaviour; a key this gpact does not know is a difference.
    """
    try:
        saved = RunConfig.from_dict(saved).to_dict()
    except (ConfigError, TypeError):
        pass  # unknown keys: compare as saved, so that they are named
    old = flat(json.loads(json.dumps(saved)))
    new = flat(json.loads(json.dumps(cfg.to_dict())))
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key not in RESUMABLE and old.get(key, _UNSET) != new.get(key, _UNSET):
            diffs.append(f"{key}: run {_show(old.get(key, _UNSET))}, now {_show(new.get(key, _UNSET))}")
    return diffs


_UNSET = object()


def _show(v: Any) -> str:
    return "(unset)" if v is _UNSET else repr(v)


def check_compatible(saved: dict[str, Any], cfg: RunConfig, run_dir: Path) -> None:
    """Refuse a resume whose config would change what the run finds, naming every differing key."""
    diffs = config_differences(saved, cfg)
    if diffs:
        allowed = ", ".join(sorted(k for k in RESUMABLE if k not in ("out_dir", "run_id")))
        raise ConfigError(f"cannot resume {run_dir}: config differs from the run's in {'; '.join(diffs)} "
                          f"(only {allowed} may change on resume)")


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The config a run was started with (its checkpoint's, else config.json)."""
    run_dir = Path(run_dir)
    path = rundir.config_path(run_dir)
    ckpt = load(run_dir)
    if ckpt is not None:
        return ckpt.config
    return rundir.read_json(path)


def resume_config(run_dir: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The run's saved config with `overrides` ({"generations": 20, "train.steps": 50}) applied.

    Overrides outside RESUMABLE are applied too, so that `check_compatible` can name them in its refusal.
    The folder fields point at `run_dir` wherever the run was started from.
    """
    run_dir = Path(run_dir)
    data = json.loads(json.dumps(saved_config(run_dir)))
    for key, value in (overrides or {}).items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    data["out_dir"], data["run_id"] = str(run_dir.parent), run_dir.name
    try:
        return RunConfig.from_dict(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{run_dir}: the run's saved config is not valid ({rundir.one_line(exc)})") from None


def run_grammar(run_dir: Path, cfg_grammar: str | None = None, name: str | None = None) -> Grammar:
    """The grammar a run used: its copy in the run folder (the original file may have changed since).

    A checkpoint records the copy's sha256; a copy that no longer matches (swapped or edited) is refused,
    since the run would go on searching another space than the one its population came from.
    """
    copy = Path(run_dir) / rundir.GRAMMAR_COPY
    ckpt = load(run_dir)
    if ckpt is not None and ckpt.grammar_sha256 and grammar_sha256(run_dir) != ckpt.grammar_sha256:
        raise ConfigError(f"{copy}: {'changed' if copy.is_file() else 'missing'} since the run's checkpoint was "
                          "written (its sha256 differs); put the run's own grammar back")
    if copy.exists():
        grammar = load_grammar(copy)
        return dataclasses.replace(grammar, name=name) if name else grammar
    if cfg_grammar is None:
        cfg_grammar = rundir.read_json(rundir.config_path(run_dir), required={"grammar": str})["grammar"]
    return load_grammar(cfg_grammar)


def truncate_logs(run_dir: Path, generation: int) -> None:
    """Drop log rows of generations >= `generation` (written by a process that died before its checkpoint)."""
    for name in (rundir.CANDIDATES, rundir.GENERATIONS):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        rows = rundir.read_jsonl(path)
        keep = [r for r in rows if isinstance(r.get("generation", 0), int) and r.get("generation", 0) < generation]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)
        if text != path.read_text(encoding="utf-8", errors="replace"):
            rundir.write_text(path, text)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
