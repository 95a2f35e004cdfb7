"""Tests of composer.events: vocabulary layout, encode/decode, quantise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.core.messages import ComposerError
from composer.midi.io import NOTE_DTYPE, Note, as_note_array
from composer.tokens.performance import (
    DEFAULT_VELOCITY,
    Event,
    EventConfig,
    Vocabulary,
    VocabularyError,
    bin_to_velocity,
    canonical_order,
    decode,
    encode,
    encode_many,
    quantise,
    velocity_to_bin,
)

ALT = EventConfig(
    steps_per_second=50, max_shift_steps=50, velocity_bins=16, min_pitch=21, max_pitch=108
)
VOCAB = Vocabulary()


def ids(*names: str, vocab: Vocabulary = VOCAB) -> list[int]:
    """Token ids of event names, looked up through token_str (pinned by test_pinned_ids)."""
    by_name = {vocab.token_str(i): i for i in range(len(vocab))}
    return [by_name[n] for n in names]


def notes(*rows: tuple) -> np.ndarray:
    return as_note_array([Note(*r) for r in rows])


def assert_notes_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == NOTE_DTYPE and b.dtype == NOTE_DTYPE
    assert a.shape == b.shape
    for name in NOTE_DTYPE.names:
        assert np.array_equal(a[name], b[name]), name


# --- vocabulary ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "token", "text"),
    [
        (Event("NOTE_ON", 0), 0, "NOTE_ON_0"),
        (Event("NOTE_ON", 60), 60, "NOTE_ON_60"),
        (Event("NOTE_ON", 127), 127, "NOTE_ON_127"),
        (Event("NOTE_OFF", 0), 128, "NOTE_OFF_0"),
        (Event("NOTE_OFF", 60), 188, "NOTE_OFF_60"),
        (Event("TIME_SHIFT", 1), 256, "TIME_SHIFT_10ms"),
        (Event("TIME_SHIFT", 25), 280, "TIME_SHIFT_250ms"),
        (Event("TIME_SHIFT", 100), 355, "TIME_SHIFT_1000ms"),
        (Event("VELOCITY", 0), 356, "VELOCITY_0"),
        (Event("VELOCITY", 12), 368, "VELOCITY_12"),
        (Event("VELOCITY", 31), 387, "VELOCITY_31"),
    ],
)
def test_pinned_ids(event: Event, token: int, text: str) -> None:
    assert VOCAB.encode_event(event) == token
    assert VOCAB.decode_event(token) == event
    assert str(event) == text
    assert VOCAB.token_str(token) == text


def test_default_vocabulary_layout() -> None:
    assert len(VOCAB) == VOCAB.size == 388
    assert VOCAB.ranges == {
        "NOTE_ON": range(0, 128),
        "NOTE_OFF": range(128, 256),
        "TIME_SHIFT": range(256, 356),
        "VELOCITY": range(356, 388),
    }
    assert [VOCAB.offset(k) for k in VOCAB.ranges] == [0, 128, 256, 356]


def test_alt_vocabulary_layout() -> None:
    vocab = Vocabulary(ALT)
    assert len(vocab) == 2 * 88 + 50 + 16 == 242
    pinned = {
        0: "NOTE_ON_21",
        87: "NOTE_ON_108",
        88: "NOTE_OFF_21",
        176: "TIME_SHIFT_20ms",
        225: "TIME_SHIFT_1000ms",
        226: "VELOCITY_0",
        241: "VELOCITY_15",
    }
    assert {t: vocab.token_str(t) for t in pinned} == pinned


@pytest.mark.parametrize("config", [EventConfig(), ALT])
def test_every_id_round_trips(config: EventConfig) -> None:
    vocab = Vocabulary(config)
    for token in range(len(vocab)):
        assert vocab.encode_event(vocab.decode_event(token)) == token
    assert len({vocab.token_str(t) for t in range(len(vocab))}) == len(vocab)


def test_time_shift_str_non_whole_ms() -> None:
    assert str(Event("TIME_SHIFT", 1, steps_per_second=16)) == "TIME_SHIFT_62.5ms"
    assert str(Event("TIME_SHIFT", 2, steps_per_second=16)) == "TIME_SHIFT_125ms"
    # steps_per_second is display only
    assert Event("TIME_SHIFT", 1, steps_per_second=16) == Event("TIME_SHIFT", 1)


def test_out_of_vocabulary() -> None:
    assert issubclass(VocabularyError, ComposerError)
    for bad in (388, -1):
        with pytest.raises(VocabularyError, match="outside the vocabulary"):
            VOCAB.decode_event(bad)
    for event in (Event("NOTE_ON", 128), Event("TIME_SHIFT", 0), Event("VELOCITY", 32)):
        with pytest.raises(VocabularyError):
            VOCAB.encode_event(event)
    with pytest.raises(VocabularyError):
        Vocabulary(ALT).encode_event(Event("NOTE_ON", 20))
    with pytest.raises(VocabularyError, match="unknown event kind"):
        Event("PEDAL", 1)
    with pytest.raises(VocabularyError, match=r"388 at position 1"):
        decode([0, 388])
    with pytest.raises(VocabularyError, match="outside the vocabulary"):
        decode(np.array([-1, 5]))
    with pytest.raises(VocabularyError):
        decode([1.5, 2.0])
    with pytest.raises(VocabularyError):
        decode(np.zeros((2, 3), dtype=np.int64))


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [EventConfig(), ALT, EventConfig(max_hanging_seconds=2)])
def test_config_dict_round_trip(config: EventConfig) -> None:
    d = config.to_dict()
    assert d["steps_per_second"] == config.steps_per_second
    assert EventConfig.from_dict(d) == config
    assert EventConfig.from_dict({}) == EventConfig()


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(VocabularyError, match="velocity_bin"):
        EventConfig.from_dict({"velocity_bin": 32})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps_per_second": 0},
        {"steps_per_second": 1.5},
        {"steps_per_second": True},
        {"max_shift_steps": 0},
        {"max_shift_steps": 70000},  # ids would not fit uint16
        {"velocity_bins": 0},
        {"velocity_bins": 128},
        {"velocity_bins": 50},  # bins of 3 fill only 43 bins
        {"min_pitch": -1},
        {"max_pitch": 128},
        {"min_pitch": 61, "max_pitch": 60},
        {"max_hanging_seconds": 0.0},
        {"max_hanging_seconds": math.inf},
        {"max_hanging_seconds": math.nan},
        {"max_hanging_seconds": "5"},
    ],
)
def test_config_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(VocabularyError, match="event config"):
        EventConfig(**kwargs)


def test_velocity_bins() -> None:
    assert EventConfig().velocity_bin_size == 4
    assert velocity_to_bin(DEFAULT_VELOCITY) == 15 and bin_to_velocity(15) == 63
    assert list(velocity_to_bin([0, 1, 4, 5, 127, 200])) == [0, 0, 0, 1, 31, 31]
    accepted = []
    for bins in range(1, 128):
        try:
            config = EventConfig(velocity_bins=bins)
        except VocabularyError:
            continue
        accepted.append(bins)
        b = np.arange(bins)
        rep = bin_to_velocity(b, config)
        assert ((rep >= 1) & (rep <= 127)).all()
        assert np.array_equal(velocity_to_bin(rep, config), b)  # bin(rep(b)) == b
        # every velocity lands in a bin, and every bin is used
        assert set(velocity_to_bin(np.arange(1, 128), config).tolist()) == set(range(bins))
    assert {1, 2, 8, 16, 32, 64, 127} <= set(accepted)


# --- encode: hand-written token lists ------------------------------------------------------

PIECE = notes(
    (60, 100, 0.0, 0.5),  # C4, velocity bin 24
    (64, 100, 0.25, 0.5),  # E4, same bin: no VELOCITY token
    (67, 60, 2.0, 2.3),  # G4 after a 1.5 s gap, bin 14
    (72, 100, 2.3, 2.4),  # C5 starts as G4 stops: OFF first, then back to bin 24
)
PIECE_EVENTS = [
    "VELOCITY_24",
    "NOTE_ON_60",
    "TIME_SHIFT_250ms",
    "NOTE_ON_64",
    "TIME_SHIFT_250ms",
    "NOTE_OFF_60",
    "NOTE_OFF_64",
    "TIME_SHIFT_1000ms",
    "TIME_SHIFT_500ms",
    "VELOCITY_14",
    "NOTE_ON_67",
    "TIME_SHIFT_300ms",
    "NOTE_OFF_67",
    "VELOCITY_24",
    "NOTE_ON_72",
    "TIME_SHIFT_100ms",
    "NOTE_OFF_72",
]


def test_encode_hand_made_piece() -> None:
    tokens = encode(PIECE)
    assert tokens.dtype == np.uint16 and tokens.ndim == 1
    assert [VOCAB.token_str(t) for t in tokens] == PIECE_EVENTS
    assert tokens.tolist() == [
        380, 60, 280, 64, 280, 188, 192, 355, 305, 370, 67, 285, 195, 380, 72, 265, 200
    ]  # fmt: skip
    # order of the input does not matter
    assert np.array_equal(encode(PIECE[::-1]), tokens)
    assert_notes_equal(decode(tokens), quantise(PIECE))


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [(60, 64, 1.5, 2.0)],  # time starts at 0
            "TIME_SHIFT_1000ms TIME_SHIFT_500ms VELOCITY_15 NOTE_ON_60 TIME_SHIFT_500ms"
            " NOTE_OFF_60",
        ),
        (
            [(60, 64, 2.0, 2.0)],  # whole multiple of the longest shift; zero length -> 1 step
            "TIME_SHIFT_1000ms TIME_SHIFT_1000ms VELOCITY_15 NOTE_ON_60 TIME_SHIFT_10ms"
            " NOTE_OFF_60",
        ),
        (
            [(60, 100, 0.5, 1.0), (60, 100, 0.0, 0.5)],  # re-strike: OFF before ON
            "VELOCITY_24 NOTE_ON_60 TIME_SHIFT_500ms NOTE_OFF_60 NOTE_ON_60 TIME_SHIFT_500ms"
            " NOTE_OFF_60",
        ),
        (
            [(62, 9, 0.0, 0.1), (60, 120, 0.0, 0.1), (62, 1, 0.0, 0.1)],  # by pitch, then bin
            "VELOCITY_29 NOTE_ON_60 VELOCITY_0 NOTE_ON_62 VELOCITY_2 NOTE_ON_62"
            " TIME_SHIFT_100ms NOTE_OFF_60 NOTE_OFF_62 NOTE_OFF_62",
        ),
        (
            [(10, 64, 0.0, 0.1), (60, 64, 0.0, 0.1), (109, 64, 0.0, 0.1)],  # 21..108 only
            None,
        ),
    ],
)
def test_encode_small_cases(rows: list[tuple], expected: str | None) -> None:
    if expected is None:  # the pitch-range case, under ALT (50 steps/s, 16 bins)
        tokens = encode(notes(*rows), ALT)
        assert [Vocabulary(ALT).token_str(t) for t in tokens] == [
            "VELOCITY_7", "NOTE_ON_60", "TIME_SHIFT_100ms", "NOTE_OFF_60"
        ]  # fmt: skip
        return
    assert [VOCAB.token_str(t) for t in encode(notes(*rows))] == expected.split()


def test_empty() -> None:
    empty = np.zeros(0, dtype=NOTE_DTYPE)
    assert encode(empty).dtype == np.uint16 and encode(empty).size == 0
    assert encode([]).size == 0
    assert decode([]).dtype == NOTE_DTYPE and decode([]).size == 0
    assert quantise(empty).size == 0
    assert decode(ids("TIME_SHIFT_10ms", "NOTE_OFF_3", "VELOCITY_3")).size == 0


def test_encode_rejects_bad_times() -> None:
    for row in [(60, 64, math.nan, 1.0), (60, 64, 0.0, math.inf), (60, 64, -1.0, 1.0)]:
        with pytest.raises(VocabularyError):
            encode(notes(row))


# --- quantise -------------------------------------------------------------------------------


def test_quantise_re_pairs_same_pitch_fifo() -> None:
    x = notes(
        (60, 100, 0.0, 1.0, 5, False),  # long note ...
        (60, 40, 0.5, 0.7, 7, True),  # ... overlapped by a short one of the same pitch
        (61, 64, 0.001, 0.004),  # rounds to zero length: becomes one step
        (128 - 1, 127, 0.126, 0.2549),
    )
    expected = notes(
        (60, 99, 0.0, 0.7),  # the first onset takes the first offset
        (61, 63, 0.0, 0.01),
        (60, 39, 0.5, 1.0),
        (127, 127, 0.13, 0.25),
    )
    assert_notes_equal(quantise(x), canonical_order(expected))
    assert_notes_equal(decode(encode(x)), quantise(x))


# --- decode: any token sequence ---------------------------------------------------------


def test_decode_ignores_orphan_note_off() -> None:
    tokens = ids(
        "NOTE_OFF_60",  # nothing sounding yet
        "VELOCITY_24",
        "NOTE_ON_60",
        "NOTE_OFF_61",  # different pitch: ignored
        "TIME_SHIFT_100ms",
        "NOTE_OFF_60",
        "NOTE_OFF_60",  # already released: ignored
        "TIME_SHIFT_100ms",
        "NOTE_OFF_60",
    )
    assert_notes_equal(decode(tokens), notes((60, 99, 0.0, 0.1)))


def test_decode_same_pitch_is_first_in_first_out() -> None:
    tokens = ids(
        "VELOCITY_0", "NOTE_ON_60", "TIME_SHIFT_100ms", "VELOCITY_31", "NOTE_ON_60",
        "TIME_SHIFT_100ms", "NOTE_OFF_60", "TIME_SHIFT_100ms", "NOTE_OFF_60",
    )  # fmt: skip
    assert_notes_equal(decode(tokens), notes((60, 3, 0.0, 0.2), (60, 127, 0.1, 0.3)))


def test_decode_default_velocity_zero_length_and_program() -> None:
    tokens = ids("NOTE_ON_60", "NOTE_OFF_60", "TIME_SHIFT_10ms", "NOTE_ON_62", "NOTE_OFF_62")
    expected = notes((60, 63, 0.0, 0.01, 9), (62, 63, 0.01, 0.02, 9))
    assert_notes_equal(decode(tokens, program=9), expected)


def test_decode_hanging_notes() -> None:
    tokens = ids(
        "VELOCITY_24", "NOTE_ON_60", "TIME_SHIFT_1000ms", "NOTE_ON_62", "TIME_SHIFT_500ms"
    )  # fmt: skip
    # closed at the end of the sequence
    assert_notes_equal(decode(tokens), notes((60, 99, 0.0, 1.5), (62, 99, 1.0, 1.5)))
    # ... but at most max_hanging_seconds after the start
    capped = EventConfig(max_hanging_seconds=1.2)
    assert_notes_equal(decode(tokens, capped), notes((60, 99, 0.0, 1.2), (62, 99, 1.0, 1.5)))
    long = ids("NOTE_ON_60", *["TIME_SHIFT_1000ms"] * 8, "NOTE_ON_64")
    # ... and at least one step after it (NOTE_ON_64 is the last token)
    assert_notes_equal(decode(long), notes((60, 63, 0.0, 5.0), (64, 63, 8.0, 8.01)))


def test_decode_accepts_any_integer_array() -> None:
    tokens = encode(PIECE)
    expected = decode(tokens)
    for variant in (tokens.tolist(), tokens.astype(np.int64), tokens.astype(np.int32)):
        assert_notes_equal(decode(variant), expected)


# --- properties -------------------------------------------------------------------------


@st.composite
def note_arrays(draw: st.DrawFn) -> np.ndarray:
    """Random notes; a narrow pitch range often, so same-pitch notes overlap."""
    low = draw(st.integers(0, 127))
    high = min(127, low + draw(st.sampled_from([0, 1, 3, 127])))
    time = st.one_of(
        st.floats(0, 30, allow_nan=False),
        st.integers(0, 6000).map(lambda k: k / 200),  # on and between 10 ms steps
    )
    duration = st.one_of(
        st.just(0.0), st.floats(0, 5, allow_nan=False), st.integers(0, 100).map(lambda k: k / 200)
    )
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(low, high),
                st.integers(1, 127),
                time,
                duration,
                st.integers(0, 127),
                st.booleans(),
            ),
            max_size=40,
        )
    )
    return np.array([(p, v, s, s + d, g, r) for p, v, s, d, g, r in rows], dtype=NOTE_DTYPE)


CONFIGS = st.sampled_from([EventConfig(), ALT])


@settings(max_examples=200, deadline=None)
@given(x=note_arrays(), config=CONFIGS)
def test_decode_encode_equals_quantise(x: np.ndarray, config: EventConfig) -> None:
    tokens = encode(x, config)
    assert tokens.dtype == np.uint16
    assert (tokens < len(Vocabulary(config))).all()
    q = quantise(x, config)
    assert_notes_equal(decode(tokens, config), q)
    assert_notes_equal(quantise(q, config), q)  # idempotent
    assert np.array_equal(encode(q, config), tokens)
    assert (q["end"] > q["start"]).all()


@settings(max_examples=100, deadline=None)
@given(data=st.data(), config=CONFIGS)
def test_decode_any_tokens(data: st.DataObject, config: EventConfig) -> None:
    size = len(Vocabulary(config))
    tokens = data.draw(st.lists(st.integers(0, size - 1), max_size=60))
    out = decode(tokens, config)
    assert out.dtype == NOTE_DTYPE
    assert (out["end"] > out["start"]).all()
    assert ((out["pitch"] >= config.min_pitch) & (out["pitch"] <= config.max_pitch)).all()
    reps = bin_to_velocity(np.arange(config.velocity_bins), config)
    assert np.isin(out["velocity"], reps).all()
    assert_notes_equal(canonical_order(out), out)


def test_encode_many_equals_encoding_each_piece():
    rng = np.random.default_rng(7)
    pieces = []
    for n in (5, 0, 40, 1, 12):
        notes = np.zeros(n, dtype=NOTE_DTYPE)
        notes["pitch"] = rng.integers(0, 128, n)
        notes["velocity"] = rng.integers(1, 128, n)
        notes["start"] = rng.uniform(0, 20, n)
        notes["end"] = notes["start"] + rng.uniform(0, 3, n)
        pieces.append(notes)
    batch = encode_many(pieces)
    assert len(batch) == len(pieces)
    for notes, tokens in zip(pieces, batch, strict=True):
        np.testing.assert_array_equal(tokens, encode(notes))
    assert len(batch[1]) == 0


def test_notes_absurdly_far_apart_are_refused():
    notes = np.zeros(2, dtype=NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = 60, 80
    notes["start"] = [0.0, 2.0**55]
    notes["end"] = notes["start"] + 1
    with pytest.raises(VocabularyError, match="too far apart"):
        encode(notes)
