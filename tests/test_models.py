"""Models by name: ``composer models`` / ``composer info`` with no argument list the shipped
and local models with what each takes; a shipped model's training corpus is found from the
folders it records (relative to the source repository, one style each)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner
from helpers import copy_chorales

from composer.cli.main import main
from composer.corpus.sources import missing_corpus, open_or_prepare, training_corpus
from composer.model.catalog import local_models, shipped_models
from composer.model.checkpoint import shipped_names
from composer.tokens.beats import NoteEventConfig


def test_models_lists_shipped_and_local_models_with_what_they_take(tmp_path, monkeypatch):
    shipped = shipped_models()
    assert [e.name for e in shipped] == shipped_names() and all(e.shipped for e in shipped)
    run = tmp_path / "runs" / "mine"
    (run / "best").mkdir(parents=True)
    source = shipped[0].path
    for name in ("checkpoint.json", "model.safetensors"):
        (run / "best" / name).write_bytes((source / name).read_bytes())
    (tmp_path / "runs" / "junk").mkdir()
    monkeypatch.chdir(tmp_path)
    local = local_models()
    assert [(e.name, e.path) for e in local] == [(os.path.join("runs", "mine"),
                                                  Path("runs/mine/best"))]
    assert local[0].takes["parameters"] > 100_000 and local[0].takes["vocabulary"]
    for args in (["models"], ["info"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        for name in shipped_names():
            assert f"\n{name}\n" in f"\n{result.output}"
        assert os.path.join("runs", "mine") in result.output
        assert "  controls     " in result.output and "  corpus       " in result.output
    listed = json.loads(CliRunner().invoke(main, ["models", "--json", "runs"]).output)
    assert {e["name"] for e in listed} == {*shipped_names(), os.path.join("runs", "mine")}
    assert all("controls" in e and "instruments" in e for e in listed)
    empty = CliRunner().invoke(main, ["models", str(tmp_path / "runs" / "junk")])
    assert empty.exit_code == 0 and "No local models" in empty.output


def test_a_corpus_of_several_folders_is_linked_one_style_each(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, b = copy_chorales(tmp_path / "a", 3), tmp_path / "b"
    b.mkdir()
    moved = sorted(a.glob("*.mid"))[-1]
    moved.rename(b / moved.name)  # three different pieces: two in x/, one in y/
    data = {"corpus": None, "source": None, "sources": {"x": str(a), "y": str(b)}}
    found, settings = training_corpus(data, NoteEventConfig())
    assert sorted(p.relative_to(found).parts[0] for p in Path(found).rglob("*.mid")) == \
        ["x", "x", "y"]
    corpus = open_or_prepare(found, settings)
    assert len(corpus.paths) == 3 and training_corpus(data, NoteEventConfig())[0] == found
    gone = {"sources": {"x": "datasets/nowhere"}}
    assert training_corpus(gone, NoteEventConfig())[0] is None
    assert "datasets/nowhere as x/" in missing_corpus(gone)
    assert "source repository" in missing_corpus(gone)


def test_a_shipped_model_records_its_corpus_relative_to_the_repository(tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: found from the package's checkout
    from composer.model.checkpoint import load_checkpoint, shipped_model

    for name in shipped_names():
        ckpt = load_checkpoint(shipped_model(name))
        found, _ = training_corpus({**ckpt.data, "corpus": None}, ckpt.events)
        assert found is not None and Path(found).is_dir(), name


def test_evaluate_says_what_to_pass_when_the_corpus_is_not_here(tmp_path, monkeypatch):
    from composer.model.checkpoint import save_checkpoint
    from composer.model.config import ModelConfig
    from composer.model.lstm import ComposerLSTM
    from composer.tokens.vocab import NOTES, Events
    from composer.training.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    events = Events(NOTES, NoteEventConfig())
    config = ModelConfig(vocab_size=events.size, embed_dim=8, hidden=16, layers=1)
    for name, data in (("one", {"source": "datasets/nowhere"}),
                       ("two", {"sources": {"a": "datasets/x", "b": "datasets/y"}})):
        save_checkpoint(tmp_path / name, ComposerLSTM(config), config, events.to_dict(),
                        train_config=TrainConfig().to_dict(), step=0, metrics={}, data=data)
        result = CliRunner().invoke(main, ["evaluate", "--checkpoint", name, "-q"])
        assert result.exit_code == 1, result.output
        line = result.output.strip()
        assert "\n" not in line and "pass --corpus DIR --train-corpus DIR" in line
        assert ("as its style subfolders" in line) == (name == "two")


def test_train_init_from_takes_a_shipped_models_name(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from composer.model.checkpoint import load_checkpoint, shipped_model

    events = load_checkpoint(shipped_model("default")).events  # the corpus is made to fit
    midi = copy_chorales(tmp_path / "midi", 3)
    args = ["train", str(midi), "--out", str(tmp_path / "run"), "--init-from", "default",
            "--steps", "1", "--eval-every", "1", "--batch-size", "2", "--seq-len", "16",
            "--events", events.kind, *["--instruments"] * events.instruments, "-q",
            "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "latest" / "checkpoint.json").is_file()
    missing = CliRunner().invoke(main, [*args[:4], "--init-from", "no-such-model"])
    assert missing.exit_code == 2 and "models shipped by name" in missing.output
