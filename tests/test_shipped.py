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
from composer.tokens.beats import NoteEventConfig
from composer.tokens.performance import EventConfig, Vocabulary
from composer.tokens.vocab import vocabulary_of

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "checkpoints" / "default"
CARD = ROOT / "checkpoints" / "README.md"


def test_shipped_checkpoint_takes_every_control_instruments_and_drums():
    info = read_info(DEFAULT)
    assert info["format_version"] == FORMAT_VERSION
    ckpt = load_checkpoint(DEFAULT)
    assert ckpt.events == vocabulary_of(NoteEventConfig(instruments=True))
    spec = ckpt.model_config.controls
    assert spec.names == ("density", "pitch-classes", "style", "tempo")
    assert spec.styles == ("bach", "dance", "ensemble", "irish", "keyboard")
    assert ckpt.data["drums"] is True and {0, 32, 40, 42, 52} <= set(ckpt.data["programs"])
    assert set(ckpt.data["sources"]) == set(spec.styles)  # evaluate finds its corpus by name
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
    # 4 s of music: every note starts within it (one may ring on, up to the model's guard)
    assert len(notes) > 5 and 3.0 < notes["end"].max() and notes["start"].max() < 4.0


def test_model_card_test_nll_is_what_evaluate_reports(tmp_path):
    """The card's chorale figure: the default scored on the chorales' test split (a folder
    whose ``bach/`` style subfolder holds them, as in training) by ``evaluate_model``."""
    card = CARD.read_text()
    stated = float(re.search(r"Chorale test NLL \(nats/event\)\s*\|\s*([0-9.]+)", card)[1])
    ckpt = load_checkpoint(DEFAULT)
    (tmp_path / "midi" / "bach").mkdir(parents=True)
    for f in BACH.glob("*.mid"):
        (tmp_path / "midi" / "bach" / f.name).symlink_to(f)
    config = CorpusConfig(vocabulary="notes", notes=ckpt.events.config, **ckpt.data["splits"])
    cache = prepare(tmp_path / "midi", tmp_path / "cache", config).cache_dir
    result = evaluate_model(DEFAULT, cache, "test", train_corpus=cache, device="cpu")
    assert result["models"]["LSTM"]["loss"] == pytest.approx(stated, abs=6e-4)
    assert result["models"]["LSTM"]["loss"] < result["models"]["5-gram KN"]["loss"] - 0.3


def test_the_shipped_default_is_steered_by_every_control_it_takes(tmp_path):
    from composer.model.checkpoint import find_checkpoint, shipped_names

    assert "default" in shipped_names()
    path = find_checkpoint("default")
    assert path.parent.name == "shipped"
    args = ["generate", "--length", "4", "-q", "--rng-seed", "0", "--density", "4",
            "--key", "D minor", "--style", "irish", "--instruments", "violin,cello",
            "--out", str(tmp_path), "--copy-warn", "0", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    notes = load(tmp_path / "composer-001.mid").notes
    assert len(notes) > 3 and set(notes["program"].tolist()) <= {40, 42}
    assert not notes["is_drum"].any()  # drums only when asked
    bad = CliRunner().invoke(main, [*args[:-6], "--style", "jazz"])
    assert bad.exit_code == 1 and "bach, dance, ensemble, irish, keyboard" in bad.output
    never = CliRunner().invoke(main, [*args[:-6], "--instruments", "banjo"])
    assert never.exit_code == 1 and "never learnt Banjo" in never.output
    shown = CliRunner().invoke(main, ["info", "default"])
    assert shown.exit_code == 0 and "controls     density, pitch-classes, style" in shown.output
    missing = CliRunner().invoke(main, ["generate", "--checkpoint", "no-such-model"])
    assert missing.exit_code == 2 and "default" in missing.output
