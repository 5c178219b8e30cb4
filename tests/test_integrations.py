"""gpact.integrations: a found activation registered in transformers' tables by name, and taken back out."""

from __future__ import annotations

import sys

import pytest
import torch

from gpact.errors import ConfigError
from gpact.nn import Activation


@pytest.fixture
def hf():
    """transformers' activation tables; after each test, no gpact entry may be left in them."""
    activations = pytest.importorskip("transformers.activations")
    before = _tables(activations)
    yield activations
    assert _tables(activations) == before, "a registration leaked"


def _tables(activations) -> tuple[dict, dict]:
    # the raw entries: reading ACT2FN[name] would build a new module each time
    return (dict(activations.ACT2CLS), {k: dict.__getitem__(activations.ACT2FN, k) for k in activations.ACT2FN})


def _gpt2(activation_function: str):
    import transformers

    config = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64, n_positions=16,
                                     bos_token_id=0, eos_token_id=0, activation_function=activation_function)
    return transformers.GPT2Model(config).eval()


def test_register_builds_gpt2_with_the_formula_and_undo_removes_it(hf):
    from gpact.integrations import is_registered, register

    handle = register("gpact_test_act", "gelu(x) + 0.1*sin(x)", trainable=True)
    try:
        model = _gpt2("gpact_test_act")
        acts = [block.mlp.act for block in model.h]
        assert all(isinstance(a, Activation) and a.formula == "gelu(x) + 0.1*sin(x)" for a in acts)
        assert acts[0] is not acts[1] and acts[0].c0 is not acts[1].c0  # a fresh copy per layer
        assert isinstance(hf.ACT2CLS["gpact_test_act"](), Activation)  # some models call the class table
        assert model(torch.tensor([[1, 2, 3]])).last_hidden_state.shape == (1, 3, 16)
    finally:
        handle.undo()
    assert not is_registered("gpact_test_act") and "gpact_test_act" not in hf.ACT2FN
    with pytest.raises(KeyError):
        _gpt2("gpact_test_act")


def test_register_as_a_context_manager(hf):
    from gpact.integrations import register, unregister

    with register("gpact_ctx", "gmtu") as handle:
        assert hf.ACT2FN["gpact_ctx"].formula == Activation("gmtu").formula
        unregister(handle.name)  # undone inside the block: leaving it must not fail
    act = Activation("relu")
    with register("gpact_obj", act):
        assert isinstance(hf.ACT2FN["gpact_obj"], Activation) and hf.ACT2FN["gpact_obj"] is not act
    with pytest.raises(RuntimeError), register("gpact_ctx", "relu"):
        raise RuntimeError("the block failed")
    assert "gpact_ctx" not in hf.ACT2CLS


def test_register_refuses_names_it_does_not_own(hf):
    from gpact.integrations import register, unregister

    with pytest.raises(ConfigError, match="already has an activation named 'gelu'"):
        register("gelu", "relu")
    with pytest.raises(ConfigError, match="was registered by gpact"):
        unregister("gelu")
    with register("gpact_twice", "relu"), pytest.raises(ConfigError, match="unregister it first"):
        register("gpact_twice", "gelu")
    with pytest.raises(Exception, match="not a primitive"):
        register("gpact_bad", "nope(x)")
    assert "gpact_bad" not in hf.ACT2CLS


def test_hf_activation_classes_include_gpt2s(hf):
    from gpact.integrations import hf_activation_classes

    classes = hf_activation_classes()
    assert hf.NewGELUActivation in classes and torch.nn.ReLU in classes
    assert not {hf.LinearActivation, torch.nn.Sigmoid, torch.nn.PReLU} & set(classes)  # identity, gates, weights


def test_missing_transformers_is_a_one_line_hint(monkeypatch):
    from gpact import integrations

    monkeypatch.setitem(sys.modules, "transformers.activations", None)  # what an import of a missing module does
    for call in (lambda: integrations.register("a", "relu"), lambda: integrations.unregister("a"),
                 integrations.hf_activation_classes):
        with pytest.raises(ConfigError, match=r"^this needs transformers: pip install gpact\[hf\]$"):
            call()


def test_three_lines_from_a_finished_run_to_a_training_gpt2(hf, finished_run):
    """The README's promise: the recommended function of a finished run, in a Hugging Face GPT-2, in three lines."""
    import gpact

    run = finished_run
    torch.manual_seed(0)
    # the three lines (with the run folder in place of "runs/<id>", and a small config)
    import transformers
    with gpact.integrations.register("found", gpact.nn.Activation.from_run(run.run_dir)):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(activation_function="found", n_layer=2,
                                                                     n_embd=16, n_head=2, vocab_size=32))
    recommended = gpact.nn.Activation.from_run(run.run_dir).formula
    assert [block.mlp.act.formula for block in model.transformer.h] == [recommended] * 2
    ids = torch.arange(32).repeat(4, 1)  # train as usual: a short fixed sequence, learned in a few steps
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach().item())
    assert losses[-1] < 0.5 * losses[0]
