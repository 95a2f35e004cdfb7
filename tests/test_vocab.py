"""Tests of the vocabulary base (composer.tokens.vocab.Events) and its kinds: ids pinned for
each kind with and without instruments, the class structure (one subclass per kind, the
instrument option composed in), saved dicts, and round trips of real files from datasets/."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from composer.midi.io import LoadConfig, Note, load
from composer.tokens.beats import BeatNotes, NoteEventConfig, clock_of
from composer.tokens.ensemble import ENSEMBLE, SOLO
from composer.tokens.performance import EventConfig, Performance
from composer.tokens.vocab import NOTES, PERFORMANCE, Events, VocabularyError, vocabulary_of

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
CONFIGS = {"performance": EventConfig(), "performance+instruments": EventConfig(instruments=True),
           "notes": NoteEventConfig(), "notes+instruments": NoteEventConfig(instruments=True)}
PERF_IDS = [(0, "NOTE_ON_0"), (127, "NOTE_ON_127"), (128, "NOTE_OFF_0"), (255, "NOTE_OFF_127"),
            (256, "TIME_SHIFT_10ms"), (355, "TIME_SHIFT_1000ms"), (356, "VELOCITY_0"),
            (387, "VELOCITY_31")]
NOTE_IDS = [(0, "PITCH_0"), (127, "PITCH_127"), (128, "DURATION_1/12"), (179, "DURATION_16"),
            (180, "SHIFT_1/12"), (231, "SHIFT_16"), (232, "VELOCITY_0"), (263, "VELOCITY_31")]
# (size, first and last id of every kind, the start token): pinned before the base existed
PINNED = {
    "performance": (388, PERF_IDS, 371),
    "performance+instruments": (644, PERF_IDS + [(388, "PROGRAM_0"), (515, "PROGRAM_127"),
                                                 (516, "DRUM_0"), (643, "DRUM_127")], 371),
    "notes": (264, NOTE_IDS, 247),
    "notes+instruments": (520, NOTE_IDS + [(264, "PROGRAM_0"), (391, "PROGRAM_127"),
                                           (392, "DRUM_0"), (519, "DRUM_127")], 247),
}
# a piano note (program 40), a note of program 0 and a drum hit, as each vocabulary writes it
DUO = [Note(60, 100, 0.0, 0.5, 40), Note(67, 60, 0.25, 0.75, 0), Note(42, 90, 0.5, 0.55, 0, True)]
DUO_WORDS = {
    "performance": ["VELOCITY_24", "NOTE_ON_60", "TIME_SHIFT_250ms", "VELOCITY_14", "NOTE_ON_67",
                    "TIME_SHIFT_250ms", "NOTE_OFF_60", "VELOCITY_22", "NOTE_ON_42",
                    "TIME_SHIFT_50ms", "NOTE_OFF_42", "TIME_SHIFT_200ms", "NOTE_OFF_67"],
    "performance+instruments": [
        "PROGRAM_40", "VELOCITY_24", "NOTE_ON_60", "TIME_SHIFT_250ms", "PROGRAM_0", "VELOCITY_14",
        "NOTE_ON_67", "TIME_SHIFT_250ms", "NOTE_OFF_60", "VELOCITY_22", "DRUM_42",
        "TIME_SHIFT_250ms", "NOTE_OFF_67"],
    "notes": ["VELOCITY_24", "PITCH_60", "DURATION_1", "SHIFT_1/2", "VELOCITY_14", "PITCH_67",
              "DURATION_1", "SHIFT_1/2", "VELOCITY_22", "PITCH_42", "DURATION_1/12"],
    "notes+instruments": ["PROGRAM_40", "VELOCITY_24", "PITCH_60", "DURATION_1", "SHIFT_1/2",
                          "PROGRAM_0", "VELOCITY_14", "PITCH_67", "DURATION_1", "SHIFT_1/2",
                          "VELOCITY_22", "DRUM_42"],
}


@pytest.mark.parametrize("name", CONFIGS)
def test_pinned_ids_and_start_tokens(name):
    events = vocabulary_of(CONFIGS[name])
    size, pairs, start = PINNED[name]
    assert events.size == size
    for token, text in pairs:
        assert events.vocab.token_str(token) == text
        assert events.vocab.encode_event(events.vocab.decode_event(token)) == token
    assert events.start_tokens().tolist() == [start]


@pytest.mark.parametrize("name", CONFIGS)
def test_pinned_tokens_of_a_duo_with_a_drum(name):
    events = vocabulary_of(CONFIGS[name])
    assert [events.vocab.token_str(int(t)) for t in events.encode(DUO)] == DUO_WORDS[name]


def test_one_subclass_per_kind_and_the_instrument_option_composed_in():
    perf, beat = Events(PERFORMANCE, EventConfig()), Events(NOTES, NoteEventConfig())
    assert type(perf) is Performance and type(beat) is BeatNotes
    assert perf == Performance(EventConfig()) and beat == vocabulary_of(NoteEventConfig())
    assert perf.option is SOLO and vocabulary_of(CONFIGS["notes+instruments"]).option is ENSEMBLE
    assert perf.describe() == "performance (10 ms)"
    beat_i = vocabulary_of(CONFIGS["notes+instruments"])
    assert beat_i.describe() == "notes (1/12 beat, instruments)"
    with pytest.raises(VocabularyError, match="unknown event vocabulary"):
        Events("words", EventConfig())
    with pytest.raises(VocabularyError, match="event vocabulary 'notes'"):
        Events(NOTES, EventConfig())
    with pytest.raises(VocabularyError):
        Performance(NoteEventConfig())


@pytest.mark.parametrize("name", CONFIGS)
def test_saved_dicts_load_unchanged_and_events_pickle(name):
    events = vocabulary_of(CONFIGS[name])
    d = events.to_dict()
    assert ("kind" in d) == events.is_notes  # performance dicts stay as before the beat kind
    assert vocabulary_of(d) == events and Events.from_dict(d) == events
    assert pickle.loads(pickle.dumps(events)) == events
    assert replace(events, config=events.config) == events
    assert vocabulary_of({}) == Performance(EventConfig())  # the oldest checkpoints' dict


@pytest.mark.parametrize("name", CONFIGS)
def test_token_steps_and_pitch_ids(name):
    events = vocabulary_of(CONFIGS[name])
    steps = events.token_steps()
    assert steps.shape == (events.size,) and steps[events.start_tokens()].sum() == 0
    shifts = np.flatnonzero(steps)
    assert [events.vocab.decode_event(int(t)).kind for t in shifts[[0, -1]]] == (
        ["SHIFT"] * 2 if events.is_notes else ["TIME_SHIFT"] * 2)
    kinds = [events.vocab.decode_event(r[60]).kind for r in events.pitch_ids()]
    assert kinds == (["PITCH"] if events.is_notes else ["NOTE_ON", "NOTE_OFF"])
    assert events.note_start_ids() == events.pitch_ids()[0]


def dataset_files(folder: str, count: int) -> list[Path]:
    files = sorted((DATASETS / folder).rglob("*.mid"))
    if not files:
        pytest.skip(f"datasets/{folder} is not built")
    return files[:: max(1, len(files) // count)][:count]


@pytest.mark.parametrize("folder", ["bach-chorales", "irish-folk", "ensemble", "dance"])
def test_real_files_round_trip_in_every_vocabulary(folder):
    pieces = [load(f, LoadConfig(keep_drums=True)) for f in dataset_files(folder, 2)]
    if folder == "dance":
        assert any(p.notes["is_drum"].any() for p in pieces)
    for config in CONFIGS.values():
        events = vocabulary_of(config)
        batch = events.encode_many(pieces)
        for piece, tokens in zip(pieces, batch, strict=True):
            assert tokens.tolist() == events.encode(piece).tolist()
            got = events.decode(tokens, clock_of(piece) if events.is_notes else None)
            want = events.quantise(piece)
            np.testing.assert_array_equal(got.notes, want.notes)
            assert events.encode(want).tolist() == tokens.tolist()  # quantise is a fixed point
            drums = piece.notes["is_drum"]
            assert got.notes["is_drum"].sum() == (drums.sum() if config.instruments else 0)
