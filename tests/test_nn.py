"""gpact.nn: a formula as an nn.Module computes what the evaluator trained, pickles, traces, and `swap` puts it
into real model trees (a ResNet block, an MLP with a functional relu, a Hugging Face GPT-2)."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gpact
from gpact.errors import ConfigError, FormulaError
from gpact.expr.grammar import load_grammar
from gpact.nn import DEFAULT_REPLACE, Activation, swap
from gpact.report.export import ExportError, Member, torch_source
from gpact.run.front import read_front
from gpact.train.baselines import BASELINES
from gpact.train.interpreters import run_programs
from gpact.train.program import lower
from gpact.train.scoring import formula_analysis

ROOT = Path(__file__).resolve().parents[1]
X64 = torch.cat([torch.linspace(-6, 6, 241, dtype=torch.float64), torch.tensor([0.0, 1e-3, -1e-3],
                                                                                  dtype=torch.float64)])


def _value_and_slope(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = fn(x)
    (slope,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), slope


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_matches_the_evaluator_in_float64(name, tmp_path):
    """Values and autograd slopes equal the batched evaluator's dual-number program and the exported module."""
    grammar = load_grammar("full")
    _, an = formula_analysis(name, grammar)
    act = Activation(name)
    assert act.formula == an.formula
    value, slope = _value_and_slope(act, X64)
    v, d = run_programs([lower(an.expr, grammar)], X64)
    tol = 1e-6 if an.key.startswith("t") else 1e-12  # trainable constants are float32 nn.Parameters
    torch.testing.assert_close(value, v[0], rtol=tol, atol=tol)
    torch.testing.assert_close(slope, d[0], rtol=max(tol, 1e-9), atol=max(tol, 1e-9))
    namespace: dict = {}  # the export module: a second derivation of torch from the same tree
    source = torch_source(Member(1, an.formula, an.expr, None, None, None, grammar, tmp_path))
    exec(compile(source, str(tmp_path / "act.py"), "exec"), namespace)  # noqa: S102 - our own generated file
    exported_value, exported_slope = _value_and_slope(namespace["Activation"](), X64)
    torch.testing.assert_close(value, exported_value, rtol=tol, atol=tol)
    away = X64 != 0  # at a kink, export's torch.clamp takes one side where the evaluator splits ties evenly
    torch.testing.assert_close(slope[away], exported_slope[away], rtol=tol, atol=tol)
    trainable = Activation(name, trainable=True).double()  # its parameters were made in float32, then widened
    torch.testing.assert_close(trainable(X64), value, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_the_printed_formula_reads_back(name):
    """What gpact prints (4 significant digits) builds the same function, up to that rounding."""
    act = Activation(name)
    again = Activation(act.formula)
    torch.testing.assert_close(again(X64), act(X64), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(("text", "want"), [
    ("Max(0.1*x, x)", lambda x: torch.maximum(0.1 * x, x)),
    ("gelu(x) + 0.1*sin(x)", lambda x: F.gelu(x) + 0.1 * torch.sin(x)),
    ("0.5*(sinc(x) + 2)*gelu(x)", lambda x: 0.5 * (torch.sinc(x) + 2) * F.gelu(x)),
    ("Heaviside(x, 1/2)", lambda x: torch.heaviside(x, torch.tensor(0.5, dtype=x.dtype))),
    ("0.1234567*x + relu(x)", lambda x: 0.1234567 * x + torch.relu(x)),
    ("gelu_sine", lambda x: F.gelu(x) + 0.1 * torch.sin(x)),
])
def test_spellings_gpact_prints(text, want):
    torch.testing.assert_close(Activation(text)(X64), want(X64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("text", ["gelu(x", "foo(x)", "y + 1", "__import__('os').system('true')", "x.real",
                                  "lambda: 1", "x" * 100_000, "relu(x, x)"])
def test_bad_formulas_are_one_line_errors(text):
    with pytest.raises(FormulaError) as info:
        Activation(text)
    assert "\n" not in str(info.value) and len(str(info.value)) < 600


def test_trainable_constants_are_parameters_that_learn():
    act = Activation("gelu(x) + 0.1*sin(x)", trainable=True)
    (param,) = act.parameters()
    assert param.item() == pytest.approx(0.1)
    x = torch.linspace(-3, 3, 64)
    act(x).sum().backward()
    torch.testing.assert_close(param.grad, torch.sin(x).sum())
    assert not list(Activation("gelu(x) + 0.1*sin(x)").parameters())
    # exponents and Heaviside's value at 0 stay fixed; 0, 1 and -1 are not constants to learn
    assert [n for n, _ in Activation("x**2 - x + Heaviside(x, 1/2)", trainable=True).named_parameters()] == []


def _model(act: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), act, nn.Linear(8, 1))


def test_a_model_holding_it_pickles():
    torch.manual_seed(0)
    model = _model(Activation("gelu(x) + 0.1*sin(x)", trainable=True))
    with torch.no_grad():
        model[1].c0.fill_(0.3)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(5, 3)
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded[1].c0.item() == pytest.approx(0.3) and loaded[1].formula == model[1].formula
    fresh = _model(Activation("gelu(x) + 0.1*sin(x)", trainable=True))
    fresh.load_state_dict(model.state_dict())  # the constants are ordinary state: "1.c0"
    torch.testing.assert_close(fresh(x), model(x))
    again = pickle.loads(pickle.dumps(Activation("selu")))
    torch.testing.assert_close(again(X64), Activation("selu")(X64))


def test_unpickling_needs_no_grammar_file(tmp_path):
    grammar_file = tmp_path / "g.yaml"
    shutil.copy(load_grammar("full").path, grammar_file)
    act = Activation("exp(x) + gelu(x)", grammar=grammar_file)
    data = pickle.dumps(act)
    grammar_file.unlink()
    torch.testing.assert_close(pickle.loads(data)(X64), act(X64))


def test_an_imported_primitive_copies_but_refuses_pickling():
    grammar = gpact.add_primitive(load_grammar("minimal"), "bump", arity=1, fn=lambda z: z * torch.exp(-z * z), cost=7)
    act = Activation("bump(x) + 0.3*x", trainable=True, grammar=grammar)
    model = _model(nn.ReLU())
    assert swap(model, act) == ["1"]
    assert model[1] is not act and model[1].c0 is not act.c0
    torch.testing.assert_close(model[1](X64.float()), act(X64.float()))
    with pytest.raises(pickle.PicklingError, match="'bump' is an imported Python function"):
        pickle.dumps(act)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated, still widely used
def test_jit_trace_and_torch_compile():
    model = _model(Activation("0.5*(sinc(x) + 2)*gelu(x)", trainable=True))
    x = torch.randn(7, 3)
    traced = torch.jit.trace(model, x)
    torch.testing.assert_close(traced(x), model(x))
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    torch.testing.assert_close(torch.jit.load(buf)(x), model(x))
    # dynamo captures the whole forward in one graph (no breaks); the eager backend keeps this test fast on CPU
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))


# ---------------------------------------------------------------------------------------------------------
# swap


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written out: one ReLU module called twice, a downsampling shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _resnet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), BasicBlock(4, 4),
                         BasicBlock(4, 8, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def test_swap_a_resnet():
    torch.manual_seed(0)
    model = _resnet().eval()
    act = Activation("gelu(x) + 0.1*sin(x)", trainable=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model traces and has no functional activation: no warning
        names = swap(model, act)
    assert names == ["2", "3.relu", "4.relu"]
    assert all(isinstance(model.get_submodule(n), Activation) for n in names)
    assert len({id(model.get_submodule(n)) for n in names} | {id(act)}) == 4  # a fresh copy per site
    assert not any(isinstance(m, DEFAULT_REPLACE) for m in model.modules())
    x = torch.randn(2, 3, 8, 8)
    block = model[3]
    want = F.gelu(block.bn1(block.conv1(x := model[2](model[1](model[0](x)))))) + 0.1 * torch.sin(
        block.bn1(block.conv1(x)))
    got = block.relu(block.bn1(block.conv1(x)))
    torch.testing.assert_close(got, want)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)
    assert swap(model, act) == []  # nothing left to replace


class FunctionalMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(3, 8), nn.GELU(), nn.Linear(8, 1)

    def forward(self, x):
        return self.fc2(F.relu(self.act(self.fc1(x))).tanh())


def test_swap_warns_about_functional_activations():
    model = nn.Sequential(FunctionalMLP())
    with pytest.warns(UserWarning, match=r"2 activation\(s\) called as functions .*0: relu, 0: tanh"):
        assert swap(model, Activation("relu")) == ["0.act"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        swap(model, Activation("relu"), check=False)


def test_swap_says_when_it_cannot_check():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.SiLU()

        def forward(self, x):
            return self.act(x) if x.sum() > 0 else x  # data-dependent: torch.fx cannot trace it

    with pytest.warns(UserWarning, match="were not checked .*torch.fx could not trace Branchy"):
        assert swap(Branchy(), Activation("gelu")) == ["act"]


def test_swap_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="nn.Module classes"):
        swap(_model(nn.ReLU()), Activation("gelu"), replace=("ReLU",))
    with pytest.raises(ConfigError, match="the model itself"):
        swap(nn.ReLU(), Activation("gelu"))
    model = _model(nn.Tanh())
    assert swap(model, Activation("gelu"), replace=nn.ReLU) == []
    assert swap(model, Activation("gelu"), replace=nn.Tanh) == ["1"]


def test_swap_gpt2():
    transformers = pytest.importorskip("transformers")
    from gpact.integrations import hf_activation_classes

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64, n_positions=16,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    before = model(ids).logits
    assert swap(model, Activation("gelu"), check=False) == []  # NewGELUActivation is not an nn.GELU
    names = swap(model, Activation("gelu_sine"), replace=(*DEFAULT_REPLACE, *hf_activation_classes()), check=False)
    assert names == ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"]
    after = model(ids).logits
    assert after.shape == before.shape and not torch.allclose(after, before)
    with pytest.warns(UserWarning, match="not checked"):
        swap(model, Activation("gelu"))


# ---------------------------------------------------------------------------------------------------------
# from a run, through the public API


def test_from_run_is_the_recommended_function(finished_run):
    result = finished_run
    rows = read_front(result.run_dir)
    (picked,) = [r for r in rows if r.get("recommended")]
    act = gpact.nn.Activation.from_run(result.run_dir)
    assert act.formula == picked["formula"]
    grammar = load_grammar("minimal")
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    torch.testing.assert_close(act(x), Activation(picked["tree"], grammar=grammar)(x))
    first = Activation.from_run(str(result.run_dir), rank=1, trainable=True)
    assert first.formula == rows[0]["formula"]
    with pytest.raises(ExportError, match="no rank 99"):
        Activation.from_run(result.run_dir, rank=99)


def test_gpact_nn_loads_on_first_use():
    code = ("import sys, gpact; assert 'torch' not in sys.modules; "
            "assert gpact.nn.Activation('relu').formula == 'relu(x)' and callable(gpact.integrations.register); "
            "assert 'nn' in dir(gpact)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
