"""Optimizer parameter groups: weight decay on weight matrices only, and old states mapped on.

AdamW's decoupled weight decay pulls weights towards zero; on biases (the LSTM's forget-gate
bias among them, which is meant to stay positive) and on embedding rows (each seen only when
its token occurs) that is a bias of its own, so only weight matrices are decayed.
"""

from __future__ import annotations

from typing import Any

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on the weight matrices only; biases (the LSTM's forget-gate
    bias among them) and the embedding table are not decayed."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, rest = [], []
    for p in model.parameters():
        (decay if p.dim() >= 2 and id(p) not in embeddings else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


def regroup(saved: dict[str, Any], model: torch.nn.Module, opt: torch.optim.Optimizer
             ) -> dict[str, Any]:
    """An optimizer state saved with one parameter group (before :func:`param_groups`) mapped
    onto this optimizer's groups; any other state is returned as it is."""
    if len(saved["param_groups"]) != 1 or len(opt.param_groups) == 1:
        return saved
    position = {id(p): i for i, p in enumerate(model.parameters())}  # the old numbering
    old, groups, state, n = saved["param_groups"][0], [], {}, 0
    for group in opt.param_groups:
        ids = list(range(n, n + len(group["params"])))
        for new, p in zip(ids, group["params"], strict=True):
            if position[id(p)] in saved["state"]:
                state[new] = saved["state"][position[id(p)]]
        groups.append({**old, "weight_decay": group["weight_decay"], "params": ids})
        n += len(ids)
    return {"state": state, "param_groups": groups}
