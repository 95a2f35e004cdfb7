"""The fast paths of bulk ingest give exactly what the plain formulas they replace give."""

from __future__ import annotations

import io
import json

import mido
import numpy as np
import pytest
from helpers import BACH, copy_chorales

from composer.core.messages import ComposerError
from composer.corpus.cache import Corpus, CorpusConfig, cache_problem
from composer.corpus.facts import sounding_at_onsets
from composer.corpus.prepare import prepare
from composer.midi import _smf_ref, tracks
from composer.midi.io import Piece, parse_many
from composer.midi.tracks import note_order
from composer.tokens.beats import BeatNotes, NoteEventConfig, grid_counts, grid_counts_many
from composer.tokens.performance import EventConfig, Performance

BACH_FILES = sorted(BACH.glob("*.mid"))[:12] if BACH.is_dir() else []
needs_bach = pytest.mark.skipif(not BACH_FILES, reason="bach chorales not available")


def _notes(rng: np.random.Generator, n: int, files: int) -> tuple[np.ndarray, ...]:
    file = np.sort(rng.integers(0, files, n))
    ticks = rng.integers(0, 50, n) * 120  # many ties
    pitch = rng.integers(0, 128, n)
    return file, ticks, ticks / 960.0 + file * 1e-3, pitch


def test_note_order_is_the_lexsort():
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 500):
        file, ticks, seconds, pitch = _notes(rng, n, 5)
        assert (note_order(file, ticks, seconds, pitch)
                == np.lexsort((pitch, seconds, file))).all()


def test_note_order_falls_back_where_seconds_do_not_rise_with_ticks():
    file, ticks = np.zeros(4, np.int64), np.array([0, 10, 20, 30])
    seconds = np.array([0.0, 0.5, 0.5, 0.25])  # a rounding where tempo segments meet
    pitch = np.array([60, 70, 50, 40])
    assert note_order(file, ticks, seconds, pitch).tolist() == [0, 3, 2, 1]


def _sounding(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    s, e = np.sort(start), np.sort(end)
    return np.searchsorted(s, start, "right") - np.searchsorted(e, start, "right")


def test_sounding_at_onsets_on_sorted_and_unsorted_starts():
    rng = np.random.default_rng(2)
    for n in (0, 1, 2, 300):
        start = np.round(rng.random(n) * 10, 1)  # ties
        end = start + np.round(rng.random(n) * 3, 1)  # some end where others start
        for s in (np.sort(start), start):
            e = end[np.argsort(start)] if s is not start else end
            assert (sounding_at_onsets(s, e) == _sounding(s, e)).all()


@needs_bach
def test_grid_counts_many_and_the_python_track_parser(monkeypatch):
    datas = [p.read_bytes() for p in BACH_FILES]
    pieces = parse_many(datas)
    assert grid_counts_many(pieces) == [grid_counts(p) for p in pieces]
    assert grid_counts_many(pieces, 5, 0.5) == [grid_counts(p, 5, 0.5) for p in pieces]
    assert grid_counts_many([]) == []
    monkeypatch.setattr(tracks, "_parse_tracks", _smf_ref.parse_tracks)
    for a, b in zip(pieces, parse_many(datas), strict=True):
        assert isinstance(a, Piece) and isinstance(b, Piece)
        assert a.notes.tobytes() == b.notes.tobytes() and a.warnings == b.warnings
        assert a.beats.tobytes() == b.beats.tobytes()


@needs_bach
def test_encode_many_with_empty_and_drum_only_pieces():
    pieces = parse_many([p.read_bytes() for p in BACH_FILES[:3]])
    empty = Piece(pieces[0].notes[:0], 0.0)
    drums = pieces[1].notes[:5].copy()
    drums["is_drum"] = True
    for events in (Performance(EventConfig(instruments=True)),
                   BeatNotes(NoteEventConfig(instruments=True)), Performance(EventConfig())):
        batch = [empty, pieces[0], drums, pieces[2], empty]
        got = events.encode_many(batch)
        assert [g.tolist() for g in got] == [events.encode(p).tolist() for p in batch]
        assert len(got[0]) == 0 and len(events.encode_many([empty])[0]) == 0


@needs_bach
def test_a_npy_header_changed_in_place_is_still_caught(tmp_path):
    folder = copy_chorales(tmp_path / "midi", 4)
    cache = tmp_path / "cache"
    prepare(folder, cache, CorpusConfig(), workers=1)
    assert cache_problem(cache) is None and len(Corpus.open(cache).paths) == 4
    n = json.loads((cache / "corpus.json").read_text())["files_loaded"]
    data = (cache / "index.npy").read_bytes()
    (cache / "index.npy").write_bytes(data.replace(f"({n},)".encode(), f"({n + 1},)".encode(),
                                                   1))  # the same size, another shape
    assert cache_problem(cache) is not None  # read with np.load, which refuses it
    with pytest.raises(ComposerError, match="damaged"):
        Corpus.open(cache)


def _tune(tempos: list[tuple[int, int]]) -> bytes:
    """A one-track file: 8 quarter notes, and these (tick, us per quarter) tempos."""
    mid = mido.MidiFile(ticks_per_beat=480)
    events = [(t, mido.MetaMessage("set_tempo", tempo=us)) for t, us in tempos]
    for k in range(8):
        events += [(480 * k, mido.Message("note_on", note=60 + k, velocity=80)),
                   (480 * k + 400, mido.Message("note_off", note=60 + k, velocity=0))]
    track, now = mido.MidiTrack(), 0
    for t, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=t - now))
        now = t
    mid.tracks.append(track)
    out = io.BytesIO()
    mid.save(file=out)
    return out.getvalue()


def test_files_with_and_without_tempo_changes_in_one_batch():
    datas = [_tune([]), _tune([(0, 400_000), (960, 1_000_000), (2400, 250_000)]),
             _tune([(0, 600_000)]), _tune([(1440, 300_000)])]
    for alone, together in zip([parse_many([d])[0] for d in datas], parse_many(datas),
                               strict=True):
        assert np.allclose(alone.notes["start"], together.notes["start"], rtol=0, atol=1e-9)
        assert np.allclose(alone.notes["end"], together.notes["end"], rtol=0, atol=1e-9)
    starts = parse_many(datas)[1].notes["start"]
    assert np.allclose(starts[:4], [0, 0.4, 0.8, 1.8], rtol=0, atol=1e-12)  # 0.4 s, then 1 s
