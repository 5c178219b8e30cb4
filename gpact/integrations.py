"""Found activations in other libraries' activation tables: `register("gpact_act", formula)` makes
`GPT2Config(activation_function="gpact_act")` (any transformers model that reads ACT2FN / ACT2CLS) build
gpact's Activation, until `unregister("gpact_act")` or the end of a `with register(...):` block.

Needs the `hf` extra (transformers). timm's activation factory is not covered: timm needs torchvision, and
PyPI's torchvision (0.28.0) does not import beside gpact's torch 2.13.0 CPU build ("operator torchvision::nms
does not exist"); a torchvision that imports needs torch 2.14.1.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from types import ModuleType

from torch import nn

from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.nn import Activation


class _Factory:
    """A table entry: each call is a fresh copy of one Activation (built and checked once, at register)."""

    def __init__(self, act: Activation):
        self.act = act

    def __call__(self) -> Activation:
        return copy.deepcopy(self.act)

    def __repr__(self) -> str:
        return f"gpact Activation({self.act.formula})"


class Registration:
    """What `register` did; `undo()` (or leaving a `with` block) takes it back."""

    def __init__(self, name: str):
        self.name = name

    def undo(self) -> None:
        unregister(self.name)

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        if is_registered(self.name):
            self.undo()

    def __repr__(self) -> str:
        return f"Registration({self.name!r})"


def register(name: str, formula: str | Activation, trainable: bool = False,
             grammar: str | Path | Grammar = "full") -> Registration:
    """Add `formula` (text, a baseline name, or an Activation) to transformers' activation tables as `name`;
    a name transformers already has is refused. Returns a handle that undoes it."""
    tables = _hf_tables()
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("the activation name must be non-empty text")
    if name in tables.ACT2CLS or name in tables.ACT2FN:
        raise ConfigError(f"transformers already has an activation named {name!r}; pick another name"
                          + (" or unregister it first" if is_registered(name) else ""))
    act = formula if isinstance(formula, Activation) else Activation(formula, trainable, grammar)
    factory = _Factory(act)
    tables.ACT2CLS[name] = factory
    tables.ACT2FN[name] = factory  # a copy of ACT2CLS made at import: both tables take the entry
    return Registration(name)


def unregister(name: str) -> None:
    """Remove an activation `register` added; ConfigError for a name gpact did not register."""
    tables = _hf_tables()
    if not is_registered(name):
        raise ConfigError(f"no activation named {name!r} was registered by gpact")
    del tables.ACT2CLS[name]
    tables.ACT2FN.pop(name, None)


def is_registered(name: str) -> bool:
    """Whether `name` is in transformers' tables as a gpact activation."""
    return isinstance(_hf_tables().ACT2CLS.get(name), _Factory)


# Entries that are not hidden-layer activations: identity, gates and routers, a function with its own weights.
_NOT_HIDDEN = ("linear", "sigmoid", "sqrtsoftplus", "prelu")


def hf_activation_classes() -> tuple[type[nn.Module], ...]:
    """The hidden-layer activation classes of transformers' table (NewGELUActivation, ...), for
    `swap(replace=...)`; not its identity ("linear"), gate ("sigmoid", "sqrtsoftplus") or PReLU entries."""
    found: dict[type, None] = {}
    for key, entry in _hf_tables().ACT2CLS.items():
        cls = entry[0] if isinstance(entry, tuple) else entry
        if key not in _NOT_HIDDEN and isinstance(cls, type) and issubclass(cls, nn.Module):
            found[cls] = None
    return tuple(found)


def _hf_tables() -> ModuleType:
    try:
        return importlib.import_module("transformers.activations")
    except ImportError:
        raise ConfigError("this needs transformers: pip install gpact[hf]") from None
