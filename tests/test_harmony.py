"""The harmonizer: grid round trips, melody parsing, a tiny harmonizer trained in seconds,
harmonize / infill through the CLI (infill keeps every note outside its span), MusicXML that
music21 reads as a score, and one-line errors for bad inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import BACH, copy_chorales, write_tune

from composer.cli.main import main
from composer.harmony.config import (
    HOLD,
    PITCH0,
    HarmonyError,
    HarmonyModelConfig,
    HarmonySampleConfig,
    HarmonyTrainConfig,
)
from composer.harmony.grid import from_grid, match_voices, to_grid
from composer.harmony.melody import infer_key, key_signature, parse_melody_text, read_melody
from composer.midi.parts import load_parts

IRISH = Path(__file__).resolve().parents[1] / "datasets" / "irish-folk" / "oneills0009.mid"
CHORALE = BACH / "bwv1.6.mid"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    """A harmonizer trained for a few updates on six chorales (seconds)."""
    from composer.harmony.corpus import load_grid_corpus
    from composer.harmony.train import train_harmonizer

    folder = copy_chorales(tmp_path_factory.mktemp("chorales"), 6)
    corpus = load_grid_corpus(folder, 4)
    out = tmp_path_factory.mktemp("model") / "harmonizer"
    config = HarmonyModelConfig(voices=corpus.voices, hidden=24, embed=8, layers=2)
    train_harmonizer(corpus, str(out), config, HarmonyTrainConfig(
        steps=6, eval_every=3, batch_size=4, window_beats=8), log=lambda _: None)
    return out


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_grid_round_trip_keeps_chorale_notes():
    parts = [p.notes for p in match_voices(load_parts(CHORALE), HarmonyModelConfig().voices)]
    grid = to_grid(parts, 4)
    assert grid.shape[0] == 4 and (grid[:, 0] >= PITCH0).all()
    for notes, row in zip(parts, grid, strict=True):
        back = from_grid(row, 4)
        assert back["pitch"].tolist() == notes["pitch"].tolist()
        assert np.allclose(back["start"], notes["start"]) and np.allclose(back["end"],
                                                                           notes["end"])
    assert (grid == HOLD).any()


def test_melody_line_and_key():
    notes = parse_melody_text("G4:1 A4:1/2 B4:0.5 R:1 D5")
    assert notes["pitch"].tolist() == [67, 69, 71, 74]
    assert notes["start"].tolist() == [0, 1, 1.5, 3] and notes["end"].tolist() == [1, 1.5, 2, 4]
    scale = parse_melody_text("D4 E4 F#4 G4 A4 B4 C#5 D5:2 A4 F#4 D4:2")
    assert infer_key(scale) == (2, False) and key_signature(2, False) == 2
    for bad in ("", "R:1 R:2", "C4+E4:1", "C4:0", "C4:x", "H4:1"):
        with pytest.raises(HarmonyError):
            parse_melody_text(bad)


def test_midi_melody_top_line_and_part(tmp_path):
    notes, score = read_melody(str(IRISH))
    assert len(notes) > 10 and score.parts
    chord = tmp_path / "chord.mid"
    write_tune(chord, [60, 64])
    with pytest.raises(HarmonyError, match="no part"):
        read_melody(str(chord), part="Violin")


def test_harmonize_writes_named_voices_and_keeps_melody(tiny, tmp_path):
    out = tmp_path / "h.mid"
    code, text = run("harmonize", "G4:1 A4:1 B4:2 A4:1 G4:1 F#4:2 G4:4", "--checkpoint", tiny,
                     "--out", out, "--rng-seed", 3, "--passes", 4, "--num", 2)
    assert code == 0, text
    first = load_parts(tmp_path / "h-1.mid")
    assert [p.name for p in first.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert first.parts[0].notes["pitch"].tolist() == [67, 69, 71, 69, 67, 66, 67]
    ranges = HarmonyModelConfig().ranges
    for part, (lo, hi) in zip(first.parts[1:], ranges[1:], strict=True):
        pitches = part.notes["pitch"]
        assert len(pitches) and lo <= pitches.min() <= pitches.max() <= hi
    again = tmp_path / "again.mid"
    run("harmonize", "G4:1 A4:1 B4:2 A4:1 G4:1 F#4:2 G4:4", "--checkpoint", tiny, "--out",
        again, "--rng-seed", 3, "--passes", 4, "--num", 2)
    assert (tmp_path / "again-1.mid").read_bytes() == (tmp_path / "h-1.mid").read_bytes()
    code, text = run("harmonize", "G4:1", "--checkpoint", tiny, "--out", tmp_path / "h-1.mid")
    assert code == 1 and "Error:" in text and "--force" in text
    code, text = run("harmonize", "G4:4", "--checkpoint", tiny, "--out", tmp_path / "bass.mid",
                     "--voices", "bass", "--passes", 2)
    assert code == 0 and [p.name for p in load_parts(tmp_path / "bass.mid").parts] == \
        ["Soprano", "Bass"]


def test_infill_keeps_everything_outside_the_span(tiny, tmp_path):
    before = digest(CHORALE)
    out = tmp_path / "infill.mid"
    code, text = run("infill", CHORALE, "--from", 3, "--to", 5, "--voices", "alto,bass",
                     "--checkpoint", tiny, "--out", out, "--rng-seed", 1, "--passes", 4)
    assert code == 0, text
    assert digest(CHORALE) == before
    old, new = load_parts(CHORALE), load_parts(out)
    start, end = 2 * 4.0, 5 * 4.0
    assert [p.name for p in new.parts] == [p.name for p in old.parts]
    for a, b in zip(old.parts, new.parts, strict=True):
        if a.name in ("Soprano", "Tenor"):
            assert a.notes.tolist() == b.notes.tolist()
            continue
        keep = lambda n: n[~((n["start"] >= start) & (n["end"] <= end))]  # noqa: E731
        assert keep(a.notes).tolist() == keep(b.notes).tolist()  # note for note
        inner = b.notes[(b.notes["start"] >= start) & (b.notes["end"] <= end)]
        assert len(inner) > 0


@pytest.mark.parametrize(("args", "words"), [
    (["--from", 4, "--to", 2], "reversed"),
    (["--from", 90, "--to", 95], "empty"),
    (["--from", 0, "--to", 2], "from 1"),
    (["--from", 1, "--to", 2, "--voices", "violin"], "voices"),
])
def test_infill_bad_spans_are_one_line_errors(tiny, tmp_path, args, words):
    code, text = run("infill", CHORALE, "--checkpoint", tiny, "--out", tmp_path / "x.mid", *args)
    assert code == 1 and text.startswith("Error:") and words in text
    assert len(text.strip().splitlines()) == 1 and not (tmp_path / "x.mid").exists()


def test_harmonize_bad_melodies_are_one_line_errors(tiny, tmp_path):
    chord = write_tune(tmp_path / "chord.mid", [60])
    for melody, words in (("C4+E4:1", "chord"), ("R:2", "no notes"), ("C1:1 D1:1", "range"),
                          (str(tmp_path / "nothing.mid"), "")):
        code, text = run("harmonize", melody, "--checkpoint", tiny, "--out", tmp_path / "o.mid")
        assert code == 1 and text.startswith("Error:") and words in text, text
    code, text = run("harmonize", chord, "--checkpoint", tiny, "--out", chord, "--force")
    assert code == 1 and "input" in text


def test_irish_tune_as_musicxml_score(tiny, tmp_path):
    music21 = pytest.importorskip("music21")
    out = tmp_path / "irish.mid"
    code, text = run("harmonize", IRISH, "--checkpoint", tiny, "--out", out, "--musicxml",
                     "--passes", 3, "--rng-seed", 2)
    assert code == 0, text
    score = music21.converter.parse(out.with_suffix(".musicxml"))
    assert [p.partName for p in score.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert score.parts[0].recurse().getElementsByClass("KeySignature")
    assert score.parts[0].recurse().getElementsByClass("TimeSignature")
    assert all(len(p.recurse().notes) for p in score.parts)


def test_sampling_schedule_and_store(tiny, tmp_path):
    from composer.harmony.sample import hidden_share
    from composer.harmony.store import load_harmonizer, save_harmonizer

    config = HarmonySampleConfig(passes=10)
    shares = [hidden_share(n, config) for n in range(10)]
    assert shares[0] == 1.0 and shares == sorted(shares, reverse=True) and shares[-1] == 0.05
    model, meta = load_harmonizer(tiny)
    assert meta["data"]["voices"] == ["Soprano", "Alto", "Tenor", "Bass"]
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(HarmonyError, match="refusing"):
        save_harmonizer(foreign, model, train={}, metrics={}, data={})
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(HarmonyError):
        load_harmonizer(foreign)


def test_train_harmonizer_command(tmp_path):
    folder = copy_chorales(tmp_path / "c", 3)
    out = tmp_path / "h"
    code, text = run("train-harmonizer", folder, "--out", out, "--steps", 2, "--hidden", 8,
                     "--embed", 4, "--eval-every", 1, "--batch-size", 2, "--window-beats", 4)
    assert code == 0, text
    assert (out / "harmonizer.json").is_file() and (out / "model.safetensors").is_file()
    code, text = run("train-harmonizer", folder, "--out", out, "--steps", 1)
    assert code == 1 and "--force" in text


def test_page_harmonize_and_reroll(one_thread):
    from starlette.testclient import TestClient

    from composer.serve.app import create_app

    with TestClient(create_app()) as c:
        assert "harmony.js" in c.get("/").text
        assert c.get("/static/harmony.js").status_code == 200
        r = c.post("/api/harmonize", json={"melody": "G4:1 A4:1 B4:2 A4:1 G4:1 F#4:2 G4:4",
                                            "passes": 2, "rng_seed": 1})
        assert r.status_code == 200, r.text
        score = r.json()
        assert [p["name"] for p in score["parts"]] == ["Soprano", "Alto", "Tenor", "Bass"]
        assert [n[0] for n in score["parts"][0]["notes"]] == [67, 69, 71, 69, 67, 66, 67]
        r = c.post("/api/infill", json={"parts": score["parts"], "meter": score["meter"],
                                         "from_bar": 1, "to_bar": 3, "voices": ["Alto"],
                                         "passes": 2, "rng_seed": 2})
        assert r.status_code == 200, r.text
        again = r.json()["parts"]
        for old, new in zip(score["parts"], again, strict=True):
            if old["name"] != "Alto":
                assert old["notes"] == new["notes"]
        for body, words in (({"melody": "C4+E4:1"}, "chord"), ({"melody": "R:1"}, "no notes"),
                            ({"melody": "G4:1", "passes": 0}, "passes"),
                            ({"parts": score["parts"], "from_bar": 3, "to_bar": 1}, "reversed")):
            url = "/api/infill" if "parts" in body else "/api/harmonize"
            r = c.post(url, json=body)
            assert r.status_code == 400 and words in r.json()["error"]
