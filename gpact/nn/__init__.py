"""Found activations where models live: `Activation` (a formula as an nn.Module) and `swap` (put it into a model).

    from gpact.nn import Activation, swap
    act = Activation.from_run("runs/<id>")        # the run's recommended function
    swap(model, act)                               # every nn.ReLU, nn.GELU, ... in `model` becomes a copy of it
"""

from gpact.nn.activation import Activation
from gpact.nn.swap import DEFAULT_REPLACE, swap

__all__ = ["DEFAULT_REPLACE", "Activation", "swap"]
