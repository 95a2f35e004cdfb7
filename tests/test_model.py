"""Tests of composer.model: config, shapes, where dropout goes, carried state, learning."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from composer.core.messages import ComposerError
from composer.model.config import ModelConfig, ModelError
from composer.model.lstm import ComposerLSTM
from composer.tokens.performance import EventConfig, Vocabulary

V = Vocabulary(EventConfig()).size  # 388


def tiny(**overrides) -> ComposerLSTM:
    """A tiny model with a fixed seed (2 layers x 32 unless overridden)."""
    torch.manual_seed(0)
    return ComposerLSTM(replace(ModelConfig.preset("tiny", vocab_size=V), **overrides))


def test_defaults_and_presets():
    assert ModelConfig() == ModelConfig.preset("default")
    assert (ModelConfig.vocab_size, ModelConfig.hidden, ModelConfig.layers) == (V, 512, 3)
    small = ModelConfig.preset("small", vocab_size=100)
    assert (small.vocab_size, small.embed_dim, small.hidden, small.layers) == (100, 128, 256, 2)
    t = ModelConfig.preset("tiny")
    assert t.hidden == 32 and t.embed_dim == 16 and t.layers in (1, 2)
    with pytest.raises(ModelError, match="unknown model preset 'huge'"):
        ModelConfig.preset("huge")


def test_config_round_trip_through_json():
    config = ModelConfig(vocab_size=300, embed_dim=8, hidden=24, layers=4, dropout=0.35)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ModelConfig.from_dict({}) == ModelConfig()  # missing keys take defaults


@pytest.mark.parametrize(
    "bad",
    [{"hidden": 0}, {"layers": -1}, {"vocab_size": 2.5}, {"embed_dim": True},
     {"dropout": 1.0}, {"dropout": -0.1}, {"dropout": float("nan")}, {"dropout": "0.2"}],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ComposerError, match=next(iter(bad))):
        ModelConfig(**bad)


def test_config_rejects_unknown_keys():
    with pytest.raises(ModelError, match="unknown keys hiden"):
        ModelConfig.from_dict({"hiden": 3})


def test_shapes_and_state():
    model = tiny()
    tokens = torch.randint(0, V, (3, 7))  # (B, T)
    logits, (h, c) = model(tokens)
    assert logits.shape == (3, 7, V)
    assert h.shape == c.shape == (2, 3, 32)
    step_logits, _ = model.step(tokens[:, 0], model.init_state(3))
    assert step_logits.shape == (3, V)
    zero = model.init_state(3)
    assert all(s.shape == (2, 3, 32) and not s.any() for s in zero)
    with pytest.raises(ModelError, match="batch, time"):
        model(tokens[0])


def test_parameter_count_and_forget_bias():
    model = tiny(layers=1)
    e, h = 16, 32
    lstm = 4 * h * (e + h) + 2 * 4 * h
    assert model.num_parameters() == V * e + lstm + h * V + V
    bias = model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0  # (4H,) gates i, f, g, o
    assert torch.all(bias[h : 2 * h] == 1.0)
    assert not torch.all(bias[:h] == 1.0)


def test_carried_state_equals_full_sequence_in_eval_mode():
    model = tiny(dropout=0.5).eval()
    tokens = torch.randint(0, V, (2, 12))  # (B, T)
    with torch.no_grad():
        full, (h_full, c_full) = model(tokens)
        state, steps = None, []
        for t in range(tokens.shape[1]):
            logits, state = model.step(tokens[:, t], state)  # (B, V)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-6)
    torch.testing.assert_close(state[0], h_full, rtol=0, atol=1e-6)
    torch.testing.assert_close(state[1], c_full, rtol=0, atol=1e-6)


def test_dropout_only_between_layers_and_on_the_output():
    model = tiny(dropout=0.5)
    assert model.lstm.dropout == 0.5  # inter-layer dropout inside nn.LSTM
    assert type(model.lstm) is nn.LSTM  # the cuDNN/ATen LSTM: no hook on h/c
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [model.drop]  # the only Dropout module: on the last layer's output
    # One layer: nothing between layers, and PyTorch's warning is avoided.
    assert tiny(layers=1, dropout=0.5).lstm.dropout == 0.0


def test_recurrent_path_has_no_dropout_in_train_mode():
    """Train and eval mode must give the same recurrence wherever no layer boundary lies.

    With dropout on h or c (say variational dropout), train-mode outputs would differ.
    """
    tokens = torch.randint(0, V, (4, 20))  # (B, T)
    one = tiny(layers=1, dropout=0.5)
    x = one.embed(tokens)  # (B, T, E)
    train_out, _ = one.train().lstm(x)  # (B, T, H)
    eval_out, _ = one.eval().lstm(x)
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)

    two = tiny(dropout=0.5).train()
    x = two.embed(tokens)
    _, (h_train, c_train) = two.lstm(x)  # h, c: (L, B, H)
    _, (h_eval, c_eval) = two.eval().lstm(x)
    # Layer 0's final state sees no dropout at all; layer 1's input is dropped in train mode.
    torch.testing.assert_close(h_train[0], h_eval[0], rtol=0, atol=0)
    torch.testing.assert_close(c_train[0], c_eval[0], rtol=0, atol=0)
    assert not torch.equal(h_train[1], h_eval[1])


def test_dropout_is_active_in_train_mode_only():
    model = tiny(dropout=0.5)
    tokens = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        a, _ = model.train()(tokens)
        b, _ = model.train()(tokens)
        c, _ = model.eval()(tokens)
        d, _ = model.eval()(tokens)
    assert not torch.equal(a, b)
    assert torch.equal(c, d)


def test_tiny_model_overfits_a_repeated_sequence():
    """Memorise a loop in which the token after 356 depends on the one 3 steps back.

    One layer: with the forget-gate bias of 1, the 2-layer tiny model needs more than 100 steps
    on this memory-light toy.
    """
    model = tiny(layers=1, dropout=0.0)
    seq = torch.tensor([60, 356, 64, 260, 60, 356, 67, 260] * 8)[None]  # (1, 64)
    inputs, targets = seq[:, :-1], seq[:, 1:]  # (1, 63) each
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(100):
        logits, _ = model(inputs)  # (1, 63, V)
        # Score from the second loop on, where the next token is fully determined.
        loss = nn.functional.cross_entropy(logits[0, 8:], targets[0, 8:])
        losses.append(loss.item())
        if losses[-1] < 0.1:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[0] > 5 and losses[-1] < 0.1, losses[-5:]
