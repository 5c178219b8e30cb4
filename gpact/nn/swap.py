"""Put an activation into an existing model: every activation module of the given classes, anywhere in the
module tree, becomes its own copy of the new one.

Activations called as functions in a `forward` (`F.relu(x)`, `x.tanh()`) are not modules and cannot be
swapped from outside; `swap` finds them with torch.fx when the model traces, and says so in a warning. Models
that do not trace (most Hugging Face models) get a warning that the check could not run.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from gpact.errors import ConfigError

# The usual hidden-layer activations. Not Sigmoid, Softmax or Softplus: models use them for gates,
# probabilities and positive outputs, where a different function would change what the model means.
DEFAULT_REPLACE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Hardswish,
)
# The same activations called as functions, as torch.fx records them (call_function targets, call_method names).
_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_,
              F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish, torch.tanh, F.tanh}
_METHODS = {"relu", "relu_", "tanh", "tanh_"}


def swap(model: nn.Module, act: nn.Module, replace: type | tuple[type, ...] = DEFAULT_REPLACE,
         check: bool = True) -> list[str]:
    """Replace, in place, every submodule of `model` that is an instance of `replace` by a fresh deep copy of
    `act` (trainable constants are then learned per site); returns the qualified names replaced.

    `replace`: module classes; for Hugging Face models add transformers' own activation classes, e.g.
    `replace=(*DEFAULT_REPLACE, *gpact.integrations.hf_activation_classes())` (GPT-2 uses NewGELUActivation).
    `check`: warn about activations called as functions in `forward`, which no swap can reach.
    """
    classes = replace if isinstance(replace, tuple) else (replace,)
    if not classes or not all(isinstance(c, type) and issubclass(c, nn.Module) for c in classes):
        raise ConfigError("replace= takes nn.Module classes, e.g. (nn.ReLU, nn.GELU)")
    if isinstance(model, classes):
        raise ConfigError("the model itself is an activation: use the new activation in its place")
    done: list[str] = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, classes) and child is not act:
                setattr(module, child_name, copy.deepcopy(act))
                done.append(f"{name}.{child_name}" if name else child_name)
    if check:
        _warn_functional(model, type(act))
    return done


def functional_calls(model: nn.Module, leaf: type[nn.Module] | None = None) -> list[str]:
    """Activations `model` calls as functions, as `module path: function` (torch.fx); ConfigError when the
    model does not trace. `leaf`: a module class not to look inside (the new activation's own ops)."""

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return (leaf is not None and isinstance(m, leaf)) or super().is_leaf_module(m, qualname)

    try:
        graph = Tracer().trace(model)
    except Exception as exc:  # fx fails in many ways on data-dependent code; the reason is in the message
        raise ConfigError(f"torch.fx could not trace {type(model).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    found = []
    for node in graph.nodes:
        hit = ((node.op == "call_function" and node.target in _FUNCTIONS)
               or (node.op == "call_method" and node.target in _METHODS))
        if hit:
            stack = node.meta.get("nn_module_stack") or {}
            where = next(reversed(stack), "") or "<model>"
            fn = getattr(node.target, "__name__", str(node.target))
            found.append(f"{where}: {fn}")
    return found


def _warn_functional(model: nn.Module, leaf: type[nn.Module]) -> None:
    try:
        calls = functional_calls(model, leaf)
    except ConfigError as exc:
        warnings.warn(f"gpact.nn.swap: activations called as functions in forward() were not checked ({exc}); "
                      "pass check=False to skip this check", stacklevel=3)
        return
    if calls:
        warnings.warn(f"gpact.nn.swap: {len(calls)} activation(s) called as functions in forward() were not "
                      f"replaced: {', '.join(calls)}", stacklevel=3)
