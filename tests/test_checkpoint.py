"""Tests of composer.checkpoint: round trips, safe loading, atomic saves, clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import composer.model.checkpoint as ckpt
from composer.core.messages import ComposerError
from composer.core.rng import get_rng_state, set_rng_state
from composer.model.checkpoint import load_checkpoint, read_info, save_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.model.storage import CheckpointError, to_safe
from composer.tokens.performance import EventConfig

EVENTS = EventConfig().to_dict()
TRAIN = {"lr": 0.001, "batch_size": 8, "betas": [0.9, 0.999], "schedule": {"kind": "cosine"}}
DATA = {"corpus": "datasets/bach-chorales", "files": {"train": 300, "valid": 30, "test": 30}}


def make_model(seed: int = 0) -> ComposerLSTM:
    torch.manual_seed(seed)
    return ComposerLSTM(ModelConfig.preset("tiny"))


def save(path: Path, model: ComposerLSTM, step: int = 10, **kwargs) -> Path:
    return save_checkpoint(
        path, model, model.config, EVENTS, train_config=TRAIN, step=step,
        metrics={"train_loss": 2.5, "valid_loss": 2.75}, data=DATA, **kwargs,
    )


def weights(model: ComposerLSTM) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(model: ComposerLSTM, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


def rehash(folder: Path, name: str) -> None:
    """Record ``name``'s current size and SHA-256 in checkpoint.json (as a forger would)."""
    meta = json.loads((folder / "checkpoint.json").read_text())
    raw = (folder / name).read_bytes()
    meta["files"][name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    (folder / "checkpoint.json").write_text(json.dumps(meta))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith("."))


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ComposerError)
    return message


# ------------------------------------------------------------------------------ round trips


def test_round_trip_gives_identical_model_and_metadata(tmp_path):
    model = make_model()
    path = save(tmp_path / "run" / "ck", model, step=1234)
    assert sorted(p.name for p in path.iterdir()) == ["checkpoint.json", "model.safetensors"]
    loaded = load_checkpoint(path)
    assert_same_weights(loaded.model, weights(model))
    assert loaded.model_config == model.config and not loaded.model.training
    assert loaded.event_config == EVENTS and EventConfig.from_dict(loaded.event_config)
    assert loaded.events.config == EventConfig()  # the typed view of the same dict
    assert (loaded.train_config, loaded.data, loaded.step) == (TRAIN, DATA, 1234)
    assert loaded.metrics == {"train_loss": 2.5, "valid_loss": 2.75}
    assert loaded.train_state is None and loaded.path == path
    assert loaded.composer_version == ckpt.__version__ and loaded.created.endswith("+00:00")
    tokens = torch.randint(0, model.config.vocab_size, (2, 9))  # (B, T)
    with torch.no_grad():
        expected, _ = model.eval()(tokens)
        got, _ = loaded.model(tokens)
    assert torch.equal(got, expected)


def test_read_info_reads_metadata_and_counts_parameters(tmp_path):
    model = make_model()
    path = save(tmp_path / "ck", model, step=7)
    info = read_info(path)
    assert info["parameters"] == model.num_parameters()
    assert (info["step"], info["model"], info["events"]) == (7, model.config.to_dict(), EVENTS)
    assert info["format_version"] == 1 and info["has_train_state"] is False


def test_train_state_round_trip_with_optimizer_and_rng(tmp_path):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        logits, _ = model(torch.randint(0, 388, (2, 5)))
        logits.logsumexp(-1).mean().backward()
        optimizer.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = {
        "optimizer": optimizer.state_dict(),
        "rng": get_rng_state(),
        "data": to_safe({"epoch": 3, "order": np.arange(5, dtype=np.int32), "pos": np.int64(2)}),
    }
    expected_draws = (random.random(), np.random.rand(), torch.rand(1))
    path = save(tmp_path / "ck", model, train_state=state)
    assert read_info(path)["has_train_state"]
    assert load_checkpoint(path).train_state is None  # only read when asked for

    loaded = load_checkpoint(path, with_train_state=True).train_state
    restored = torch.optim.AdamW(make_model(1).parameters(), lr=1.0)
    restored.load_state_dict(loaded["optimizer"])
    original = optimizer.state_dict()
    assert restored.state_dict()["param_groups"] == original["param_groups"]
    for i, s in original["state"].items():
        for key, value in s.items():
            assert torch.equal(restored.state_dict()["state"][i][key], value)
    assert loaded["data"]["epoch"] == 3 and loaded["data"]["pos"] == 2
    assert torch.equal(loaded["data"]["order"], torch.arange(5, dtype=torch.int32))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected_draws


def test_save_refuses_train_state_that_weights_only_cannot_load(tmp_path):
    with pytest.raises(CheckpointError, match=r"train_state\['pos'\] is a numpy.*to_safe"):
        save(tmp_path / "ck", make_model(), train_state={"pos": np.int64(3)})
    assert not any(tmp_path.iterdir())


class _Evil:
    """Unpickling this calls _pwn: what a malicious train_state.pt would do."""

    def __reduce__(self):
        return (_pwn, ("pwned",))


_PWNED: list[str] = []


def _pwn(word: str) -> str:
    _PWNED.append(word)
    return word


def test_train_state_is_loaded_with_weights_only(tmp_path):
    path = save(tmp_path / "ck", make_model(), train_state={"step": 1})
    torch.save({"step": 1, "payload": _Evil()}, path / "train_state.pt")
    rehash(path, "train_state.pt")  # a forged checkpoint passes the checksum
    message = error_of(path, with_train_state=True)
    assert "train_state.pt" in message and "refused" in message and "_pwn" in message
    assert _PWNED == []  # nothing in the file ran
    assert load_checkpoint(path).step == 10  # the weights alone are still fine


# --------------------------------------------------------------------------- atomic saves


def test_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old = make_model(0)
    path = save(tmp_path / "ck", old, step=1)

    def broken_save_file(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ckpt, "safetensors_bytes", broken_save_file)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save(path, make_model(1), step=2)
    loaded = load_checkpoint(path)
    assert loaded.step == 1
    assert_same_weights(loaded.model, weights(old))
    assert leftovers(path) == []  # no tmp folder, no backup


def test_failed_swap_rolls_back_to_the_old_checkpoint(tmp_path, monkeypatch):
    path = save(tmp_path / "ck", make_model(0), step=1)
    real_rename = os.rename

    def rename(src, dst):
        if ".tmp-" in str(src):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(CheckpointError, match="(?i)no space left"):
        save(path, make_model(1), step=2)
    assert load_checkpoint(path).step == 1 and leftovers(path) == []


def test_some_complete_checkpoint_exists_at_every_rename(tmp_path, monkeypatch):
    path = save(tmp_path / "ck", make_model(0), step=1)
    seen = []
    real_rename, real_rmtree = os.rename, shutil.rmtree

    def probe():
        seen.append(load_checkpoint(path).step)

    def rename(src, dst):
        probe()
        real_rename(src, dst)
        probe()

    def rmtree(target, *args, **kwargs):
        probe()
        real_rmtree(target, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    save(path, make_model(1), step=2)
    monkeypatch.undo()
    assert set(seen) == {1, 2} and seen == sorted(seen)  # old, then new, never missing
    assert load_checkpoint(path).step == 2 and leftovers(path) == []


def test_hard_crash_between_renames_leaves_a_loadable_backup(tmp_path, monkeypatch):
    old = make_model(0)
    path = save(tmp_path / "ck", old, step=1)
    real_rename = os.rename
    renamed = []

    def dying_rename(src, dst):
        if renamed:  # the process "died" after its first rename (NAME -> backup)
            raise KeyboardInterrupt
        renamed.append(dst)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", dying_rename)
    with pytest.raises(KeyboardInterrupt):
        save(path, make_model(1), step=2)
    monkeypatch.undo()
    (tmp_path / ".ck.tmp-999999999").mkdir()  # a crashed writer's half-written folder
    (tmp_path / ".ck.tmp-999999999" / "model.safetensors").write_bytes(b"\0" * 10)
    assert not path.exists() and renamed == [tmp_path / ".ck.bak"]

    loaded = load_checkpoint(path)  # falls back to the backup
    assert loaded.step == 1 and loaded.path == tmp_path / ".ck.bak"
    assert_same_weights(loaded.model, weights(old))
    assert read_info(path)["step"] == 1
    save(path, make_model(2), step=3)
    assert load_checkpoint(path).step == 3 and leftovers(path) == []


def test_save_refuses_to_replace_a_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="todo.txt.*refusing"):
        save(tmp_path / "notes", make_model())
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_save_checks_its_arguments(tmp_path):
    model = make_model()
    with pytest.raises(CheckpointError, match="does not match"):
        save_checkpoint(tmp_path / "a", model, ModelConfig(), EVENTS, train_config={}, step=0,
                        metrics={}, data={})
    with pytest.raises(CheckpointError, match="388 token ids, the event vocabulary 380"):
        save_checkpoint(tmp_path / "a", model, model.config, {**EVENTS, "max_shift_steps": 92},
                        train_config={}, step=0, metrics={}, data={})
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "a", model, model.config, EVENTS, train_config={}, step=0,
                        metrics={"loss": np.float32(1)}, data={})
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------ damaged checkpoints


@pytest.fixture
def saved(tmp_path) -> Path:
    return save(tmp_path / "ck", make_model(), train_state={"step": 10})


def test_missing_folder(tmp_path):
    assert "no such checkpoint folder" in error_of(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    assert "not a checkpoint folder" in error_of(tmp_path / "file")


def test_truncated_or_missing_weights(saved):
    weights_file = saved / "model.safetensors"
    raw = weights_file.read_bytes()
    weights_file.write_bytes(raw[: len(raw) // 2])
    assert error_of(saved).startswith(f"{weights_file}: ") and "truncated" in error_of(saved)
    weights_file.unlink()
    assert error_of(saved) == f"{weights_file}: missing"


def test_random_bytes_as_weights_even_with_a_matching_checksum(saved):
    size = (saved / "model.safetensors").stat().st_size
    (saved / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(size))
    assert "corrupted" in error_of(saved)
    rehash(saved, "model.safetensors")
    message = error_of(saved)
    assert "model.safetensors: not a readable safetensors file" in message


def test_weights_that_do_not_fit_the_config(saved):
    meta = json.loads((saved / "checkpoint.json").read_text())
    meta["model"]["hidden"] = 16
    (saved / "checkpoint.json").write_text(json.dumps(meta))
    message = error_of(saved)
    assert "model.safetensors: tensor" in message and "(64, 16)" in message


def test_truncated_train_state(saved):
    file = saved / "train_state.pt"
    file.write_bytes(file.read_bytes()[:50])
    rehash(saved, "train_state.pt")
    assert error_of(saved, with_train_state=True).startswith(f"{file}: cannot be read")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\xff garbage", "not valid JSON"),
        (b'{"format_version": 1, "name": "someone else\'s file"}', "not a composer checkpoint"),
        (b"[1, 2, 3]", "not a composer checkpoint"),
    ],
)
def test_bad_checkpoint_json(saved, content, problem):
    (saved / "checkpoint.json").write_bytes(content)
    message = error_of(saved)
    assert message.startswith(f"{saved / 'checkpoint.json'}: ") and problem in message
    with pytest.raises(CheckpointError, match=problem):
        read_info(saved)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"step": "ten"}, "'step' is missing or not a JSON int"),
        ({"model": {"hidden": 32, "depth": 9}}, "unknown keys depth"),
        ({"events": {"velocity_bins": 0}}, "velocity_bins"),
    ],
)
def test_invalid_metadata(saved, change, problem):
    meta = json.loads((saved / "checkpoint.json").read_text())
    (saved / "checkpoint.json").write_text(json.dumps({**meta, **change}))
    message = error_of(saved)
    assert "checkpoint.json: " in message and problem in message
