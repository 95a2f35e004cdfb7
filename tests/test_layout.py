"""Tests of the package's shape: the import graph, the packaged default model, the CLI's
option defaults, and what the shared helpers promise."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import copy_chorales

import composer
from composer.cli.main import main
from composer.cli.report import default
from composer.core.messages import GenerateError, check_int, is_int
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.sources import corpus_record, missing_corpus, open_or_prepare, training_corpus
from composer.evaluation.musicstats import compare_sets
from composer.generation.config import SampleConfig
from composer.midi.io import NOTE_DTYPE, LoadConfig
from composer.model.checkpoint import default_checkpoint, find_checkpoint, load_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.tokens.beats import NoteEventConfig
from composer.tokens.vocab import vocabulary_of
from composer.training.config import TrainConfig, perplexity
from composer.training.optim import param_groups
from composer.training.optim import regroup as _regroup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import import_graph  # noqa: E402


def test_import_graph_has_no_cycles_private_imports_upward_imports_or_long_files():
    text, problems = import_graph.report(ROOT / "composer")
    assert problems == [], "\n".join(problems)
    assert "generation" in text and "steppers" in text
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "import_graph.py")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "problem(s)" in out.stdout, out.stdout
    # The layer order is stated by package, and composer/ holds only subpackages.
    assert import_graph.LAYERS[1:-1] == ["core", "midi", "tokens", "corpus", "controls", "model",
                                         "training", "evaluation", "generation", "harmony",
                                         "serve", "cli"]
    flat = {p.name for p in (ROOT / "composer").glob("*.py")}
    assert flat == {"__init__.py", "__main__.py"}


def test_import_graph_finds_what_it_checks(tmp_path):
    pkg = tmp_path / "composer"
    for sub in ("midi", "training", "tokens"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "midi" / "io.py").write_text("from composer.training.loop import _helper\n" * 50)
    (pkg / "training" / "loop.py").write_text("from composer.midi import io\n" * 50)
    (pkg / "tokens" / "performance.py").write_text("x = 1\n" * 500)
    (pkg / "tokens" / "tiny.py").write_text("x = 1\n")
    (pkg / "stray.py").write_text("x = 1\n")
    _, problems = import_graph.report(pkg)
    assert "cycle: midi.io <-> training.loop" in problems
    assert "private: midi.io imports _helper from training.loop" in problems
    assert "upward: midi.io imports training.loop" in problems
    assert "upward: training.loop imports midi.io" not in problems
    assert any(p.startswith("long: tokens.performance has 500 lines") for p in problems)
    assert "short: tokens.tiny has 1 lines (< 40)" in problems
    assert "flat: stray.py is not in a subpackage" in problems


def test_the_default_model_is_package_data_equal_to_checkpoints_default():
    packaged = default_checkpoint()
    assert packaged.is_relative_to(Path(composer.__file__).parent)
    source = ROOT / "checkpoints" / "default"
    assert (packaged / "model.safetensors").read_bytes() == \
        (source / "model.safetensors").read_bytes()
    meta, full = (json.loads((f / "checkpoint.json").read_text()) for f in (packaged, source))
    assert "train_state.pt" not in meta["files"] and "train_state.pt" in full["files"]
    full["files"].pop("train_state.pt")
    assert meta == full  # the same checkpoint, less the resumable state
    assert not (packaged / "train_state.pt").exists()
    ckpt = load_checkpoint(find_checkpoint())
    assert ckpt.path == packaged and ckpt.step == full["step"]


def test_cli_defaults_are_the_dataclass_defaults():
    assert default(TrainConfig, "steps") == TrainConfig().steps
    for name in ("steps", "batch_size", "seq_len", "lr", "eval_every", "patience", "seed"):
        assert default(TrainConfig, name) == getattr(TrainConfig(), name)
    for name in ("seconds", "temperature", "top_k", "top_p", "max_silence_seconds"):
        assert default(SampleConfig, name) == getattr(SampleConfig(), name)
    assert default(LoadConfig, "max_seconds") == 4 * 3600.0  # not a literal
    # The configs the CLI reads its defaults from are importable without torch (no source
    # parsing): each module's imports are checked in a fresh interpreter.
    for module in ("composer.training.config", "composer.generation.config",
                   "composer.model.config", "composer.evaluation.baselines",
                   "composer.serve.api", "composer.midi.io", "composer.corpus.cache"):
        code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
        assert subprocess.run([sys.executable, "-c", code]).returncode == 0, module
    help_imports = subprocess.run([sys.executable, "-X", "importtime", "-c",
                                   "import composer.cli.main"], capture_output=True, text=True)
    assert re.search(r"\|\s+composer\.cli$", help_imports.stderr, re.M)
    assert not re.search(r"\|\s+torch$", help_imports.stderr, re.M)  # options need no torch
    assert default(SampleConfig, "temperature") == SampleConfig().temperature
    params = {p.name: p for p in main.commands["train"].params}
    assert params["batch_size"].default == TrainConfig().batch_size
    gen = {p.name: p for p in main.commands["generate"].params}
    assert gen["max_silence"].default == SampleConfig().max_silence_seconds


def test_compare_sets_excludes_self_pairs_of_two_equal_lists():
    rng = np.random.default_rng(0)
    pieces = []
    for _ in range(5):
        notes = np.zeros(8, NOTE_DTYPE)
        notes["pitch"] = rng.integers(50, 80, 8)
        notes["velocity"] = 80
        notes["start"] = np.sort(rng.uniform(0, 4, 8))
        notes["end"] = notes["start"] + rng.uniform(0.1, 1, 8)
        pieces.append(notes)
    same = compare_sets(pieces, pieces)
    copies = compare_sets([p.copy() for p in pieces], [p.copy() for p in pieces])
    for name, e in same["features"].items():
        assert copies["features"][name]["mean_inter"] == pytest.approx(e["mean_inter"])
        assert e["mean_inter"] == pytest.approx(e["mean_intra_reference"])
    # Without the exclusion the 5 zero-distance self-pairs would pull the inter mean down.
    assert same["features"]["pitch_range"]["mean_inter"] > 0


def test_adamw_decays_weight_matrices_only():
    model = ComposerLSTM(ModelConfig.preset("tiny"))
    decay, rest = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and rest["weight_decay"] == 0.0
    decayed = {id(p) for p in decay["params"]}
    named = dict(model.named_parameters())
    assert id(named["lstm.bias_hh_l0"]) not in decayed  # the forget-gate bias
    assert id(named["embed.weight"]) not in decayed
    assert id(named["lstm.weight_hh_l0"]) in decayed and id(named["head.weight"]) in decayed
    assert len(decay["params"]) + len(rest["params"]) == len(named)
    torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)  # AdamW takes them


def test_shared_helpers():
    assert perplexity(1.0) == pytest.approx(np.e) and perplexity(1e6) == pytest.approx(
        np.exp(50.0))
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0)
    with pytest.raises(GenerateError, match="n must be an integer >= 1, got True"):
        check_int(True, "n", 1, GenerateError)


def test_an_optimizer_state_of_one_group_resumes_into_the_new_groups():
    model = ComposerLSTM(ModelConfig.preset("tiny"))
    old = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model(torch.randint(0, 388, (2, 8)))[0].sum().backward()
    old.step()
    new = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    new.load_state_dict(_regroup(old.state_dict(), model, new))
    assert [g["weight_decay"] for g in new.param_groups] == [0.01, 0.0]
    for p in model.parameters():
        assert torch.equal(old.state[p]["exp_avg"], new.state[p]["exp_avg"])


def test_checkpoints_record_the_corpus_by_absolute_path_and_key(tmp_path, monkeypatch):
    midi = tmp_path / "midi"
    midi.mkdir()
    copy_chorales(midi, 3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    corpus = open_or_prepare(Path("midi"), CorpusConfig(valid_fraction=0, test_fraction=0))
    assert open_or_prepare(corpus) is corpus
    record = corpus_record(corpus)
    assert Path(record["corpus"]).is_absolute() and Path(record["source"]).is_absolute()
    assert record["key"] and record["key"] == Corpus.open(record["corpus"]).key
    found, _ = training_corpus(record, corpus.config.events)
    assert found == record["corpus"]
    gone = {**record, "corpus": str(tmp_path / "gone"), "source": str(tmp_path / "gone2")}
    assert training_corpus(gone, corpus.config.events)[0] is None
    assert str(tmp_path / "gone") in missing_corpus(gone)
    # the folder's one default cache re-encoded in the other vocabulary since: the model's
    # training corpus is its source folder, prepared again in the model's vocabulary
    beats = vocabulary_of(NoteEventConfig())
    open_or_prepare(Path("midi"), CorpusConfig(vocabulary="notes", valid_fraction=0,
                                                test_fraction=0))
    found, settings = training_corpus(record, corpus.config.events)
    assert found == record["source"] and settings.vocab_events == corpus.events
    assert training_corpus(record, beats)[0] == record["corpus"]
    assert open_or_prepare(found, settings).events == corpus.events
