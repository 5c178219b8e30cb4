"""gpact: genetic-programming search for activation functions, scored out of distribution.

The public API (README, "From Python"):

    import gpact
    grammar = gpact.add_primitive(gpact.load_grammar("minimal"), "bump", arity=1, sympy="a*exp(-a**2)")
    result = gpact.run(grammar=grammar, generations=5, tasks="smoke")    # what `gpact run` does
    table = gpact.score(["gelu(x) + 0.1*sin(x)", "mish"], tasks="smoke")  # `gpact eval`
    source = gpact.export("runs/<id>", rank=1, path="act.py")             # `gpact export`
    act = gpact.nn.Activation.from_run("runs/<id>")                        # the found function as an nn.Module

Names load on first use (PEP 562), so `import gpact` does not import torch, and modules inside the package
can import from each other without going through this file's names.
"""

import importlib

import gpact.run as _run_package  # before `run` below: importing the subpackage sets `gpact.run` once, here

__version__ = "0.1.0"
__all__ = ["run", "load_grammar", "add_primitive", "score", "export"]

_LAZY = {"load_grammar": "gpact.expr.grammar", "add_primitive": "gpact.expr.grammar",
         "score": "gpact.api", "export": "gpact.api"}


class _Run:
    """gpact.run(config=None, *, grammar=None, resume=None, echo=print, live=None, **options) -> RunResult

    Runs a search: see gpact.api.run. `gpact.run` is also the name of the subpackage gpact/run/, which Python
    would bind here on its first import; it is imported above, before this object takes the name, and this
    object answers attribute lookups for it, so `gpact.run.runner` and `import gpact.run.runner as r` work too.
    """

    def __call__(self, *args, **kwargs):
        from gpact.api import run

        return run(*args, **kwargs)

    def __getattr__(self, name: str):
        if name == "__wrapped__":  # for help() and inspect.signature: the function this stands for
            return importlib.import_module("gpact.api").run
        return getattr(_run_package, name)

    def __repr__(self) -> str:
        return "<function gpact.run (gpact.api.run); also the package gpact.run>"


run = _Run()


def __getattr__(name: str):
    if name in ("nn", "integrations"):  # subpackages with torch inside: imported on first use
        return importlib.import_module(f"gpact.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gpact' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "nn", "integrations"])
