"""The shipped default model: it loads, generates, and its model card tells the truth."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import BACH

from composer.cli.main import main
from composer.corpus.cache import CorpusConfig
from composer.corpus.prepare import prepare
from composer.evaluation.likelihood import evaluate_model
from composer.midi.io import load
from composer.model.checkpoint import load_checkpoint, read_info
from composer.model.storage import FORMAT_VERSION
from composer.tokens.beats import NoteEventConfig, NoteVocabulary
from composer.tokens.performance import EventConfig, Vocabulary
from composer.tokens.vocab import vocabulary_of

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "checkpoints" / "default"
CARD = ROOT / "checkpoints" / "README.md"


def test_shipped_checkpoint_loads_with_the_default_beat_vocabulary_and_its_guards():
    info = read_info(DEFAULT)
    assert info["format_version"] == FORMAT_VERSION
    ckpt = load_checkpoint(DEFAULT)
    assert ckpt.events == vocabulary_of(NoteEventConfig())
    assert ckpt.model_config.vocab_size == NoteVocabulary(NoteEventConfig()).size == 264
    assert ckpt.data["guards"]["max_polyphony"] == 4  # the chorales' four voices
    size = sum(f.stat().st_size for f in DEFAULT.iterdir())
    assert size < 50 << 20


def test_the_previous_shipped_model_still_loads_and_generates(tmp_path):
    old = ROOT / "checkpoints" / "bach-performance-2x256"
    ckpt = load_checkpoint(old)
    assert ckpt.event_config == EventConfig().to_dict()
    assert ckpt.model_config.vocab_size == Vocabulary(EventConfig()).size == 388
    args = ["generate", "--checkpoint", str(old), "--length", "4", "--rng-seed", "0", "-q",
            "--out", str(tmp_path), "--copy-warn", "0", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(load(tmp_path / "composer-001.mid").notes) > 5


def test_generate_without_arguments_uses_the_shipped_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPOSER_CHECKPOINT", raising=False)
    result = CliRunner().invoke(main, ["generate", "--length", "4", "--rng-seed", "0", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("composer-001.mid")
    notes = load(tmp_path / "composer-001.mid").notes
    assert len(notes) > 5 and 3.0 < notes["end"].max() < 10.0


def test_model_card_test_nll_is_what_evaluate_reports(tmp_path):
    card = CARD.read_text()
    stated = float(re.search(r"Test NLL \(nats/event\)\s*\|\s*([0-9.]+)", card)[1])
    ckpt = load_checkpoint(DEFAULT)
    splits = ckpt.data["splits"]
    cache = prepare(BACH, tmp_path / "cache", CorpusConfig(vocabulary="notes", **splits)).cache_dir
    result = evaluate_model(DEFAULT, cache, "test", train_corpus=cache, device="cpu")
    assert result["models"]["LSTM"]["loss"] == pytest.approx(stated, abs=6e-4)
    assert result["models"]["LSTM"]["loss"] < result["models"]["5-gram KN"]["loss"] - 0.3


def test_the_shipped_controls_model_is_found_by_name_and_steered(tmp_path):
    from composer.model.checkpoint import find_checkpoint, shipped_names

    assert {"default", "bach-folk-controls"} <= set(shipped_names())
    path = find_checkpoint("bach-folk-controls")
    assert path.parent.name == "shipped"
    spec = load_checkpoint(path).model_config.controls
    assert spec.names == ("density", "pitch-classes", "style", "tempo")
    assert spec.styles == ("bach", "folk")
    source = ROOT / "checkpoints" / "bach-folk-controls"
    assert (path / "model.safetensors").read_bytes() == \
        (source / "model.safetensors").read_bytes()
    assert (path / "checkpoint.json").read_text() == (source / "checkpoint.json").read_text()
    args = ["generate", "--checkpoint", "bach-folk-controls", "--length", "4", "-q",
            "--rng-seed", "0", "--density", "4", "--key", "D minor", "--style", "folk",
            "--out", str(tmp_path), "--copy-warn", "0", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(load(tmp_path / "composer-001.mid").notes) > 3
    bad = CliRunner().invoke(main, [*args[:-6], "--style", "jazz"])
    assert bad.exit_code == 1 and "bach, folk" in bad.output
    shown = CliRunner().invoke(main, ["info", "bach-folk-controls"])
    assert shown.exit_code == 0 and "controls     density, pitch-classes, style" in shown.output
    missing = CliRunner().invoke(main, ["generate", "--checkpoint", "no-such-model"])
    assert missing.exit_code == 2 and "bach-folk-controls" in missing.output
