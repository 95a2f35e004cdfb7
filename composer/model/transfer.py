"""Start a model from another one's weights where the two differ in vocabulary or controls
(a fine-tune, ``composer train --init-from``).

A fine-tune keeps the base model's sizes (embedding, units, layers) and takes the new
corpus's vocabulary and controls, which may differ from the base's by the instrument option
(PROGRAM and DRUM tokens) and by the control slots (another set of styles, a control more or
less). What the two share is matched **by name**:

- an event of the same name (``PITCH_60``, ``SHIFT_1/2``) keeps its embedding row and its
  output row; an event the base lacks starts as the base's average event (the mean
  embedding row, the mean output row and bias);
- a control slot of the same name (``density``, ``pitch-classes:7``, ``style:bach``) keeps
  its LSTM input column and its learned unset value; a new slot starts with a zero column
  (no effect until trained) and unset 0;
- a slot the base has and the new model lacks is folded into the first layer's bias as
  unset: ``b += W[:, slot] * unset[slot]``, so the network computes exactly what the base did
  with that control not given.

The vocabularies must be of the same kind with the same settings apart from the instrument
option (a name means the same event in both only then).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from composer.controls.features import PITCH_CLASSES, STYLE, ControlSpec
from composer.model.config import ModelConfig, ModelError
from composer.tokens.vocab import Events

Weights = Mapping[str, torch.Tensor]


def transferable(base: Events, events: Events) -> bool:
    """Whether a model of vocabulary ``base`` can start one of ``events``: the same kind
    and the same settings apart from the instrument option."""
    a, b = base.to_dict(), events.to_dict()
    a.pop("instruments", None)
    b.pop("instruments", None)
    return a == b


def slot_names(spec: ControlSpec) -> list[str]:
    """A name for each slot of the control vector, in slot order: ``density``,
    ``pitch-classes:0`` .. ``pitch-classes:11``, ``style:LABEL`` per style, ``tempo``."""
    names: list[str] = []
    for name, width in spec.widths().items():
        if name == PITCH_CLASSES:
            names += [f"{name}:{i}" for i in range(width)]
        elif name == STYLE:
            names += [f"{name}:{s}" for s in spec.styles]
        else:
            names.append(name)
    return names


def transfer_weights(weights: Weights, base_config: ModelConfig, base_events: Events,
                     config: ModelConfig, events: Events) -> dict[str, torch.Tensor]:
    """The state dict of a :class:`~composer.model.lstm.ComposerLSTM` of ``config`` (the
    base's sizes, its own vocabulary ``events`` and controls) started from ``weights``, a
    model of ``base_config`` over ``base_events``: see the module docs."""
    sizes = ("embed_dim", "hidden", "layers")
    if any(getattr(config, s) != getattr(base_config, s) for s in sizes):
        raise ModelError("a fine-tune keeps the base model's sizes")
    if not transferable(base_events, events) or config.vocab_size != events.size:
        raise ModelError(f"cannot start a model of {events.describe()} from one of "
                         f"{base_events.describe()}")
    out = {k: v.clone() for k, v in weights.items() if k != "unset"}
    _rows(out, base_events, events)
    _slots(out, weights, base_config.controls, config.controls, config.embed_dim)
    return out


def _rows(out: dict[str, torch.Tensor], base_events: Events, events: Events) -> None:
    """Embedding and output rows by event name; new events as the base's average one."""
    base = {base_events.vocab.token_str(i): i for i in range(base_events.size)}
    source = [base.get(events.vocab.token_str(i), -1) for i in range(events.size)]
    index = torch.tensor(source)  # (V,) base row of each event, -1: none
    known = index >= 0
    for key in ("embed.weight", "head.weight", "head.bias"):
        old = out[key]  # (V0, E) / (V0, H) / (V0,)
        new = old.mean(0, keepdim=True).expand(len(source), *old.shape[1:]).clone()
        new[known] = old[index[known]]
        out[key] = new


def _slots(out: dict[str, torch.Tensor], weights: Weights, base_spec: ControlSpec,
           spec: ControlSpec, embed: int) -> None:
    """The first layer's control columns by slot name (see the module docs)."""
    w = weights["lstm.weight_ih_l0"]  # (4H, E + C0)
    unset = weights["unset"] if base_spec.width else torch.zeros(0)  # (C0,)
    old = {name: i for i, name in enumerate(slot_names(base_spec))}
    names = slot_names(spec)
    columns = torch.zeros(w.shape[0], len(names), dtype=w.dtype)  # (4H, C)
    values = torch.zeros(len(names), dtype=w.dtype)  # (C,)
    for j, name in enumerate(names):
        if name in old:
            columns[:, j], values[j] = w[:, embed + old[name]], unset[old[name]]
    dropped = [i for name, i in old.items() if name not in names]
    if dropped:  # as unset from now on: fold into the bias
        out["lstm.bias_ih_l0"] = out["lstm.bias_ih_l0"] + w[:, embed + torch.tensor(dropped)] \
            @ unset[dropped]  # (4H,)
    out["lstm.weight_ih_l0"] = torch.cat([w[:, :embed], columns], 1)  # (4H, E + C)
    if names:
        out["unset"] = values
