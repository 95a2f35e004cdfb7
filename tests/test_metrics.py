"""Music and model metrics on hand-made inputs whose answers are known."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import BACH, copy_chorales

import composer.evaluation.copycheck as copycheck
from composer.cli.main import main
from composer.core.messages import ComposerError, MetricsError
from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.prepare import prepare
from composer.evaluation.baselines import NGram, Unigram, per_amount, score
from composer.evaluation.copycheck import CopyConfig, CopyIndex, copy_warning, corpus_copy_index
from composer.evaluation.likelihood import evaluate_model
from composer.evaluation.musicstats import compare_sets, piece_features, silence_fraction
from composer.midi.io import Note, as_note_array, load, save
from composer.model.checkpoint import save_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.tokens import beats as notes
from composer.tokens.performance import encode
from composer.tokens.vocab import vocabulary_of
from composer.training.config import TrainConfig
from composer.training.loop import evaluate


def melody(pitches, step=0.5, velocity=80) -> np.ndarray:
    """One note per pitch, each ``step`` long, back to back."""
    return as_note_array([Note(p, velocity, i * step, (i + 1) * step)
                          for i, p in enumerate(pitches)])


def test_silence_fraction_counts_gaps_between_and_before_notes():
    notes = [Note(60, 80, 1.0, 2.0), Note(62, 80, 1.5, 3.0), Note(64, 80, 4.0, 5.0)]
    assert silence_fraction(notes) == pytest.approx(2 / 5)  # silent 0-1 and 3-4
    assert silence_fraction(notes, duration=10.0) == pytest.approx(7 / 10)
    assert silence_fraction([]) == 1.0
    assert silence_fraction([Note(60, 80, 0.0, 2.0), Note(64, 80, 0.5, 1.0)]) == 0.0


# ---------------------------------------------------------------------------- music stats


def test_c_major_scale_features():
    f = piece_features(melody([60, 62, 64, 65, 67, 69, 71, 72]))
    expected = np.zeros(12)
    expected[[0, 2, 4, 5, 7, 9, 11]] = [2, 1, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(f["pitch_class_histogram"], expected / 8)
    assert f["pitch_count"] == 8 and f["note_count"] == 8 and f["pitch_range"] == 12
    assert f["avg_pitch_interval"] == pytest.approx(12 / 7)  # 2 2 1 2 2 2 1
    steps = f["pitch_class_transition_matrix"]
    for a, b in [(0, 2), (2, 4), (4, 5), (5, 7), (7, 9), (9, 11), (11, 0)]:
        assert steps[a, b] == pytest.approx(1 / 7)
    assert steps.sum() == pytest.approx(1.0)
    assert f["avg_ioi"] == pytest.approx(0.5) and f["notes_per_second"] == pytest.approx(2.0)
    assert f["polyphony"] == pytest.approx(1.0) and f["silence_fraction"] == 0.0
    assert f["note_length_histogram"][5] == 1.0  # 0.5 s lies in the bin [0.5 s, 1 s)


def test_range_interval_polyphony_of_known_pieces():
    f = piece_features(melody([60, 67, 64, 72, 55]))
    assert f["pitch_range"] == 17
    assert f["avg_pitch_interval"] == pytest.approx((7 + 3 + 8 + 17) / 4)
    # A 3-note chord for 1 s, 1 s of silence, one note for 1 s.
    chord = [Note(p, 80, 0.0, 1.0) for p in (60, 64, 67)] + [Note(72, 80, 2.0, 3.0)]
    f = piece_features(chord)
    assert f["polyphony"] == pytest.approx(2.0)  # (3 + 1) notes over 2 sounding seconds
    assert f["silence_fraction"] == pytest.approx(1 / 3)
    assert f["avg_ioi"] == pytest.approx(2.0)  # onsets 0 and 2 (the chord counts once)
    assert piece_features([])["note_count"] == 0  # an empty piece has features too


def _random_pieces(n: int, seed: int, density: float = 2.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(n):
        k = int(rng.integers(10, 40) * density)
        start = np.sort(rng.uniform(0, 20, k))
        notes = [Note(int(p), 80, float(s), float(s + d)) for p, s, d in
                 zip(rng.integers(48, 84, k), start, rng.uniform(0.1, 1.0, k), strict=True)]
        pieces.append(as_note_array(notes))
    return pieces


def test_a_set_compared_with_itself_overlaps_fully():
    pieces = _random_pieces(12, seed=1)
    result = compare_sets(pieces, pieces)
    for name, e in result["features"].items():
        assert e["overlap"] == pytest.approx(1.0, abs=1e-6), name
        assert e["kl"] == pytest.approx(0.0, abs=1e-9), name
        if not e["shape"]:
            assert e["generated"] == e["reference"]
    # A much denser set differs in note count: small overlap, large KL.
    other = compare_sets(_random_pieces(12, seed=2, density=8.0), pieces)
    assert other["features"]["note_count"]["overlap"] < 0.2
    assert other["features"]["note_count"]["kl"] > 1.0


def test_compare_sets_needs_two_reference_pieces_and_reports_nan_for_one_generated():
    pieces = _random_pieces(3, seed=3)
    with pytest.raises(MetricsError, match="at least 2 reference"):
        compare_sets(pieces, pieces[:1])
    one = compare_sets(pieces[:1], pieces[1:])
    assert math.isnan(one["features"]["pitch_count"]["overlap_generated"])
    assert 0 <= one["features"]["pitch_count"]["overlap"] <= 1


# ------------------------------------------------------------------------------ baselines


def test_unigram_nll_is_the_entropy_of_the_counts():
    s = np.array([0, 0, 0, 1, 1, 2, 3, 0, 1, 0])
    counts = np.bincount(s, minlength=6)
    p = counts[counts > 0] / len(s)
    entropy = -(p * np.log(p)).sum()
    # Targets are every event but a file's first: prepend one so that they are exactly s.
    result = score(Unigram([s], 6, alpha=1e-12), [np.r_[s[0], s]])
    assert result["loss"] == pytest.approx(entropy, rel=1e-9)
    assert result["perplexity"] == pytest.approx(math.exp(entropy))
    assert result["accuracy"] == pytest.approx(5 / 10) and result["events"] == 10  # always 0
    add_one = score(Unigram([s], 6, alpha=1.0), [np.r_[s[0], s]])["loss"]
    assert add_one == pytest.approx(-np.mean(np.log((counts[s] + 1) / (10 + 6))))


def test_ngram_beats_unigram_on_repetition_and_every_probability_is_positive():
    vocab = 12
    train = [np.tile([0, 1, 2, 3, 4, 5], 40), np.tile([5, 4, 3, 2, 1, 0], 30)]
    test = [np.tile([0, 1, 2, 3, 4, 5], 5), np.array([9, 0, 1, 11, 2, 3])]  # 9, 11 unseen
    ngram, unigram = NGram(train, vocab, order=5), Unigram(train, vocab)
    for p, targets in ngram.distributions(test):
        assert p.shape == (len(targets), vocab)
        assert (p > 0).all()
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    a, b = score(ngram, test), score(unigram, test)
    assert a["events"] == b["events"] == 29 + 5
    assert math.isfinite(a["loss"]) and a["loss"] < b["loss"] / 3
    assert a["accuracy"] > 0.8 > b["accuracy"]
    with pytest.raises(MetricsError):
        NGram(train, vocab, order=0)


def test_baselines_fit_the_beat_vocabulary_too():
    """The baselines see token ids only: on the beat vocabulary's tokens of the same
    chorales they are normalised and the 5-gram beats the unigram, per event and per note."""
    pieces = [load(path) for path in sorted(BACH.glob("*.mid"))[:8]]
    tokens, vocab = notes.encode_many(pieces), notes.NoteVocabulary().size
    ngram, unigram = NGram(tokens[:6], vocab), Unigram(tokens[:6], vocab)
    for p, targets in ngram.distributions(tokens[6:]):
        assert p.shape == (len(targets), vocab) and p.min() > 0
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    a, b = score(ngram, tokens[6:]), score(unigram, tokens[6:])
    assert a["events"] == b["events"] == sum(len(t) - 1 for t in tokens[6:])
    assert a["nll"] == pytest.approx(a["loss"] * a["events"]) and a["loss"] < b["loss"]
    count = sum(len(p.notes) for p in pieces[6:])
    assert per_amount(a["nll"], count, 2.0)["nll_per_note"] == pytest.approx(a["nll"] / count)


def test_ngram_on_the_bundled_corpus_is_fast_and_normalised(bach_cache):
    corpus = Corpus.open(bach_cache)
    model = NGram(corpus.sequences("train"), 388, order=5)
    for p, _ in model.distributions(corpus.sequences("test")[:3]):
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
        assert p.min() > 0
    assert score(model, corpus.sequences("test"))["loss"] < score(
        Unigram(corpus.sequences("train"), 388), corpus.sequences("test"))["loss"]


@pytest.fixture(scope="module")
def bach_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("bach") / "cache"
    prepare(BACH, cache)
    return cache


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    """12 chorales, a prepared cache of them and an untrained tiny checkpoint."""
    root = tmp_path_factory.mktemp("small")
    copy_chorales(root / "midi", 12)
    prepare(root / "midi", root / "cache", CorpusConfig(valid_fraction=0.2, test_fraction=0.25))
    corpus = Corpus.open(root / "cache")
    config = ModelConfig.preset("tiny")
    torch.manual_seed(0)
    save_checkpoint(root / "ckpt", ComposerLSTM(config), config, corpus.config.events.to_dict(),
                    train_config=TrainConfig(seq_len=64, batch_size=16).to_dict(), step=0,
                    metrics={}, data={"corpus": str(root / "cache")})
    return {"root": root, "corpus": corpus, "ckpt": root / "ckpt"}


def test_evaluate_model_scores_lstm_and_baselines_on_the_same_events(small):
    seen = []
    result = evaluate_model(small["ckpt"], device="cpu", progress=lambda *a: seen.append(a))
    corpus = small["corpus"]
    expected = evaluate(ComposerLSTM(ModelConfig.preset("tiny")).eval(), corpus, "test",
                        TrainConfig(seq_len=64, batch_size=16), torch.device("cpu"))
    lstm = result["models"]["LSTM"]
    targets = sum(len(s) - 1 for s in corpus.sequences("test"))
    assert {m["events"] for m in result["models"].values()} == {targets}
    assert lstm["events"] == expected["events"]
    assert set(result["models"]) == {"LSTM", "5-gram KN", "unigram"}
    assert result["ahead"]["unigram"]["loss"] == pytest.approx(
        result["models"]["unigram"]["loss"] - lstm["loss"])
    assert seen[-1][0] == "evaluate" and seen[-1][1] == seen[-1][2]  # the bar reaches its end
    assert result["models"]["5-gram KN"]["loss"] < result["models"]["unigram"]["loss"]
    # Per note and per second: each model's total NLL over the test files' notes / seconds.
    rows = corpus.files("test")
    count, seconds = corpus.index["notes"][rows].sum(), corpus.index["seconds"][rows].sum()
    assert (result["notes"], result["seconds"]) == (count, pytest.approx(seconds))
    for r in result["models"].values():
        assert r["nll"] == pytest.approx(r["loss"] * r["events"], rel=1e-9)
        assert r["nll_per_note"] == pytest.approx(r["nll"] / count, rel=1e-9)
        assert r["nll_per_second"] == pytest.approx(r["nll"] / seconds, rel=1e-9)
    assert result["ahead"]["unigram"]["nll_per_note"] == pytest.approx(
        result["models"]["unigram"]["nll_per_note"] - lstm["nll_per_note"])


def test_evaluate_model_on_a_midi_folder_uses_every_file(small, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = evaluate_model(small["ckpt"], small["root"] / "midi", device="cpu")
    assert result["split"] == "all"
    assert result["models"]["LSTM"]["events"] == sum(
        len(s) - 1 for s in small["corpus"].sequences("train") + small["corpus"].sequences(
            "valid") + small["corpus"].sequences("test"))
    assert Path(result["corpus"]).is_relative_to(tmp_path)
    assert result["train_corpus"] == str(small["root"] / "cache")


def test_evaluate_model_needs_a_training_corpus(small, tmp_path):
    config = ModelConfig.preset("tiny")
    save_checkpoint(tmp_path / "ckpt", ComposerLSTM(config), config,
                    small["corpus"].config.events.to_dict(), train_config={}, step=0,
                    metrics={}, data={"corpus": str(tmp_path / "gone")})
    with pytest.raises(MetricsError, match="is not here"):
        evaluate_model(tmp_path / "ckpt", device="cpu")
    with pytest.raises(MetricsError, match="training corpus"):
        evaluate_model(tmp_path / "ckpt", small["root"] / "cache", device="cpu")
    result = evaluate_model(tmp_path / "ckpt", small["root"] / "cache", device="cpu",
                            train_corpus=small["root"] / "cache")
    assert result["models"]["LSTM"]["events"] > 0


def test_evaluate_model_re_prepares_the_recorded_source_folder(small, tmp_path, monkeypatch):
    """A checkpoint whose cache is gone is evaluated on its source MIDI folder, prepared with
    the recorded split fractions, which gives the same split and the same numbers."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    config = ModelConfig.preset("tiny")
    corpus = small["corpus"]
    splits = {"valid_fraction": corpus.config.valid_fraction,
              "test_fraction": corpus.config.test_fraction}
    save_checkpoint(tmp_path / "ckpt", ComposerLSTM(config), config,
                    corpus.config.events.to_dict(), train_config={}, step=0, metrics={},
                    data={"corpus": str(tmp_path / "gone"), "splits": splits,
                          "source": str(small["root"] / "midi")})
    cached = evaluate_model(tmp_path / "ckpt", small["root"] / "cache", device="cpu",
                            train_corpus=small["root"] / "cache")
    rebuilt = evaluate_model(tmp_path / "ckpt", device="cpu")
    assert rebuilt["models"] == cached["models"]


# ----------------------------------------------------------------------------- copy check


def test_copy_check_flags_verbatim_and_transposed_copies_only(small):
    corpus = small["corpus"]
    index = CopyIndex.from_corpus(corpus, ("train", "valid", "test"))
    name = corpus.paths[0]
    notes = load(small["root"] / "midi" / name).notes
    copy = index.longest_copy(encode(notes))
    assert copy.events == copy.piece_events and copy.fraction == 1.0
    assert copy.source == name and copy.transpose == 0 and copy.start_seconds == 0
    assert copy.seconds == pytest.approx(corpus.index["seconds"][0], abs=0.02)
    assert copy_warning(copy) is not None and name in copy_warning(copy)

    moved = notes.copy()
    moved["pitch"] += 5
    transposed = index.longest_copy(encode(moved))
    assert (transposed.events, transposed.source, transposed.transpose) == (
        copy.events, name, 5)

    later = index.longest_copy(encode(notes), after_seconds=copy.seconds / 2)
    assert 0 < later.events < copy.events and later.seconds == pytest.approx(
        copy.seconds / 2, abs=1.0)

    rng = np.random.default_rng(0)
    start = np.sort(rng.uniform(0, 30, 200))
    noise = as_note_array([Note(int(p), 80, float(s), float(s) + 0.4) for p, s in
                           zip(rng.integers(40, 90, 200), start, strict=True)])
    unrelated = index.longest_copy(encode(noise))
    assert unrelated.events < CopyConfig().ngram and copy_warning(unrelated) is None


def test_copy_index_is_built_once_and_kept_beside_its_corpus(small, tmp_path, monkeypatch):
    """The index of a corpus is built once: kept in the process and in the corpus's cache
    folder, read back (not built) by a later process while the corpus's content key holds,
    built again when the file is stale or damaged, and built anyway in a cache folder that
    cannot be written."""
    shutil.copytree(small["root"] / "cache", tmp_path / "cache")
    corpus = Corpus(tmp_path / "cache")
    config = CopyConfig(ngram=10)
    built = []
    real = CopyIndex.from_corpus.__func__
    monkeypatch.setattr(CopyIndex, "from_corpus", classmethod(
        lambda cls, *a, **k: built.append(1) or real(cls, *a, **k)))
    monkeypatch.setattr(copycheck, "_KEPT", {})
    first = corpus_copy_index(corpus, config)
    saved = tmp_path / "cache" / "copy-index-10.npz"
    assert saved.is_file() and len(built) == 1
    assert corpus_copy_index(corpus, config) is first and len(built) == 1  # kept in-process
    assert corpus_copy_index(corpus, CopyConfig(ngram=10, warn_seconds=3)) is first

    copycheck._KEPT.clear()  # a later process
    again = corpus_copy_index(corpus, config)
    assert again is not first and len(built) == 1  # read from the cache folder
    notes = load(small["root"] / "midi" / corpus.paths[int(corpus.files("train")[0])]).notes
    assert vars(again.longest_copy(encode(notes))) == vars(first.longest_copy(encode(notes)))
    assert CopyIndex.load(saved, "another corpus", corpus.events, config) is None
    assert CopyIndex.load(saved, corpus.key, corpus.events, CopyConfig(ngram=12)) is None

    saved.write_bytes(b"not an npz")
    copycheck._KEPT.clear()
    assert corpus_copy_index(corpus, config).longest_copy(encode(notes)).events > 0
    assert len(built) == 2 and np.load(saved)["ngram"] == 10  # rebuilt, and written again

    saved.unlink()

    def unwritable(path, *a, **k):
        raise ComposerError(f"cannot write {path}: Read-only file system")

    monkeypatch.setattr(copycheck, "atomic_write", unwritable)
    copycheck._KEPT.clear()
    assert corpus_copy_index(corpus, config).keys.size == first.keys.size
    assert len(built) == 3 and not saved.exists()


def test_copy_check_finds_a_quoted_passage_inside_new_music():
    a, b = [60, 62, 64, 65, 67, 65, 64, 62] * 3, [70, 58, 71, 57, 69, 59, 72, 56] * 3
    index = CopyIndex([encode(melody(a))], ["a.mid"], config=CopyConfig(ngram=8))
    quoted = np.concatenate([melody(b), melody(a[:12])])
    quoted["start"][len(b):] += len(b) * 0.5
    quoted["end"][len(b):] += len(b) * 0.5
    match = index.longest_copy(encode(quoted))
    assert match.source == "a.mid" and match.start_seconds == pytest.approx(12.0, abs=0.6)
    assert match.seconds == pytest.approx(6.0, abs=0.6)
    assert copy_warning(match, CopyConfig(warn_seconds=5)) is not None
    assert copy_warning(match, CopyConfig(warn_seconds=7)) is None


def test_copy_check_reads_the_beat_vocabulary_in_beats():
    a, b = [60, 62, 64, 65, 67, 65, 64, 62] * 3, [70, 58, 71, 57, 69, 59, 72, 56] * 3
    beats = vocabulary_of(notes.NoteEventConfig())
    index = CopyIndex([beats.encode(melody(a))], ["a.mid"], beats, CopyConfig(ngram=8))
    quoted = np.concatenate([melody(b), melody(a[:12])])
    quoted["start"][len(b):] += len(b) * 0.5
    quoted["end"][len(b):] += len(b) * 0.5
    quoted["pitch"][len(b):] -= 3  # transposed
    tokens = beats.encode(quoted)
    match = index.longest_copy(tokens)  # at 120 bpm: a beat is 0.5 s, one note per beat
    assert (match.source, match.transpose) == ("a.mid", -3)
    assert match.start_seconds == pytest.approx(12.0, abs=0.6)
    assert match.seconds == pytest.approx(6.0, abs=0.6)
    slow = index.longest_copy(tokens, clock=notes.Clock(1_000_000))  # 60 bpm: twice as long
    assert slow.seconds == pytest.approx(2 * match.seconds)
    assert copy_warning(match, CopyConfig(warn_seconds=5)) is not None
    other = index.longest_copy(beats.encode(melody(b)))
    assert other.events < 8 and copy_warning(other) is None


# ------------------------------------------------------------------------------------ CLI


def test_cli_evaluate_checkpoint_prints_the_three_models(small):
    out = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(small["ckpt"]), "-q",
                                    "--device", "cpu"])
    assert out.exit_code == 0, out.output
    for name in ("LSTM", "5-gram KN", "unigram", "perplexity", "accuracy", "NLL/note",
                 "NLL/s"):
        assert name in out.output


def test_cli_evaluate_generated_against_reference_and_corpus(small, tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    corpus = small["corpus"]
    train_file = corpus.paths[corpus.files("train")[0]]  # the copy check indexes the train split
    shutil.copy(small["root"] / "midi" / train_file, gen / "copied.mid")
    save(melody([60, 67, 64, 72, 55, 62] * 8), gen / "new.mid")
    args = ["evaluate", "--generated", str(gen), "--reference", str(small["root"] / "midi"),
            "--corpus", str(small["root"] / "cache"), "--json", str(tmp_path / "r.json"),
            "--figure", str(tmp_path / "r.png"), "-q"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "pitch_class_histogram" in out.output
    assert [line.split()[0] for line in out.output.splitlines()
            if line.endswith("COPY")] == ["copied.mid"]
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["music"]["generated_files"] == 2
    flagged = {c["file"]: c["warning"] for c in saved["copies"]}
    assert flagged["copied.mid"] and flagged["new.mid"] is None
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args", [[], ["--checkpoint", "x", "--generated", "."],
                                  ["--generated", "."]])
def test_cli_evaluate_refuses_unclear_modes(args):
    out = CliRunner().invoke(main, ["evaluate", *args])
    assert out.exit_code == 2
