"""Tests of the beat vocabulary (composer.tokens.beats) and of the beats, tempo map and time
signatures that composer.midi.io gives every piece."""

from __future__ import annotations

import io
from fractions import Fraction

import mido
import numpy as np
import pytest
from helpers import BACH
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.core.messages import ComposerError
from composer.midi import _smf, _smf_ref
from composer.midi.io import (
    NOTE_DTYPE,
    LoadConfig,
    Note,
    as_note_array,
    load,
    parse,
    piece_from_beats,
    save,
)
from composer.midi.timing import (
    BEAT_DTYPE,
    TEMPO_DTYPE,
    beats_to_seconds,
    bpm_to_us,
    constant_tempo,
    dominant_tempo,
    seconds_to_beats,
)
from composer.tokens.beats import (
    Clock,
    NoteEvent,
    NoteEventConfig,
    NoteVocabulary,
    clock_of,
    decode,
    encode,
    encode_many,
    grid_counts,
    grid_fraction,
    is_quantised,
    quantise,
)
from composer.tokens.performance import VocabularyError

BACH_FILES = sorted(BACH.glob("*.mid")) if BACH.is_dir() else []
needs_bach = pytest.mark.skipif(not BACH_FILES, reason=f"no .mid files in {BACH}")
VOCAB = NoteVocabulary()
SMALL = NoteEventConfig(steps_per_quarter=4, fine_steps=4, coarse_steps=2, max_steps=8,
                        velocity_bins=0, min_pitch=48, max_pitch=72)


def beat_piece(rows: list[tuple], us: int = 500_000, sig: tuple[int, int] | None = None):
    """A Piece from (pitch, velocity, start beat, end beat[, program]) rows."""
    notes = as_note_array([Note(p, v, 0.0, 0.0, *rest) for p, v, _, _, *rest in rows])
    beats = np.array([(float(s), float(e)) for _, _, s, e, *_ in rows], BEAT_DTYPE)
    sigs = None if sig is None else np.array([(0.0, *sig)], dtype=[
        ("beat", "f8"), ("numerator", "i2"), ("denominator", "i2")])
    return piece_from_beats(notes, beats, constant_tempo(us), sigs)


def assert_pieces_equal(a, b) -> None:
    for name in NOTE_DTYPE.names:
        assert np.array_equal(a.notes[name], b.notes[name]), name
    assert np.array_equal(a.beats, b.beats)
    assert np.array_equal(a.tempos, b.tempos)
    assert np.array_equal(a.time_signatures, b.time_signatures)


def names(tokens, vocab: NoteVocabulary = VOCAB) -> list[str]:
    return [vocab.token_str(t) for t in tokens]


# --- vocabulary -----------------------------------------------------------------------------


def test_default_layout() -> None:
    assert len(VOCAB) == 128 + 52 + 52 + 32 == 264
    assert VOCAB.ranges == {"PITCH": range(0, 128), "DURATION": range(128, 180),
                            "SHIFT": range(180, 232), "VELOCITY": range(232, 264)}
    steps = NoteEventConfig().step_values()
    assert steps[:24].tolist() == list(range(1, 25))
    assert steps[24:].tolist() == list(range(30, 193, 6))


@pytest.mark.parametrize(("token", "text"), [
    (0, "PITCH_0"), (60, "PITCH_60"), (127, "PITCH_127"),
    (128, "DURATION_1/12"), (130, "DURATION_1/4"), (131, "DURATION_1/3"),
    (139, "DURATION_1"), (151, "DURATION_2"), (152, "DURATION_5/2"), (179, "DURATION_16"),
    (180, "SHIFT_1/12"), (183, "SHIFT_1/3"), (217, "SHIFT_9"), (231, "SHIFT_16"),
    (232, "VELOCITY_0"), (263, "VELOCITY_31"),
])
def test_pinned_ids(token: int, text: str) -> None:
    assert VOCAB.token_str(token) == text
    event = VOCAB.decode_event(token)
    assert VOCAB.encode_event(event) == token
    assert str(event) == text


@pytest.mark.parametrize("config", [NoteEventConfig(), SMALL,
                                    NoteEventConfig(steps_per_quarter=24, velocity_bins=16)])
def test_every_id_round_trips(config: NoteEventConfig) -> None:
    vocab = NoteVocabulary(config)
    for token in range(len(vocab)):
        assert vocab.encode_event(vocab.decode_event(token)) == token
    assert len({vocab.token_str(t) for t in range(len(vocab))}) == len(vocab)


def test_small_layout_and_out_of_vocabulary() -> None:
    vocab = NoteVocabulary(SMALL)
    assert len(vocab) == 25 + 6 + 6 == 37 and vocab.ranges["VELOCITY"] == range(37, 37)
    assert names(range(25, 37), vocab) == [
        "DURATION_1/4", "DURATION_1/2", "DURATION_3/4", "DURATION_1", "DURATION_3/2",
        "DURATION_2", "SHIFT_1/4", "SHIFT_1/2", "SHIFT_3/4", "SHIFT_1", "SHIFT_3/2", "SHIFT_2"]
    with pytest.raises(VocabularyError, match="outside the vocabulary"):
        vocab.decode_event(37)
    with pytest.raises(VocabularyError, match="outside the vocabulary"):
        vocab.encode_event(NoteEvent("PITCH", 47))
    with pytest.raises(VocabularyError, match="unknown event kind"):
        NoteEvent("NOTE_ON", 1)
    with pytest.raises(VocabularyError, match="37 at position 1"):
        decode([0, 37], config=SMALL)
    with pytest.raises(VocabularyError, match="integers"):
        decode([1.5, 2.0])
    with pytest.raises(VocabularyError, match="1-D"):
        decode(np.zeros((2, 2), np.int64))


@pytest.mark.parametrize("config", [NoteEventConfig(), SMALL])
def test_config_dict_round_trip(config: NoteEventConfig) -> None:
    assert NoteEventConfig.from_dict(config.to_dict()) == config
    assert NoteEventConfig.from_dict({}) == NoteEventConfig()
    with pytest.raises(VocabularyError, match="unknown keys"):
        NoteEventConfig.from_dict({"steps_per_beat": 12})


@pytest.mark.parametrize("kwargs", [
    {"steps_per_quarter": 0}, {"steps_per_quarter": 1.5}, {"fine_steps": True},
    {"coarse_steps": 0}, {"coarse_steps": 25}, {"fine_steps": 200}, {"max_steps": 190},
    {"velocity_bins": -1}, {"velocity_bins": 50}, {"min_pitch": -1}, {"max_pitch": 128},
    {"min_pitch": 61, "max_pitch": 60}, {"max_steps": 70002, "coarse_steps": 1},
])
def test_config_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(VocabularyError):
        NoteEventConfig(**kwargs)


# --- encode: a hand-made piece ----------------------------------------------------------------

PIECE = beat_piece([
    (60, 100, 0, 1),  # C4, a quarter, velocity bin 24
    (64, 100, 0, Fraction(1, 2)),  # E4, an eighth, same bin: no VELOCITY token
    (67, 60, Fraction(1, 3), Fraction(2, 3)),  # a triplet eighth, bin 14
    (72, 100, Fraction(3, 4), 1),  # a sixteenth on the last sixteenth of the beat
    (48, 100, 10, 16),  # after a coarse + fine shift (9 1/4 beats), six beats long
    (50, 100, 30, Fraction(65, 2)),  # after the longest shift and a coarse one
], us=666_667, sig=(3, 4))
PIECE_EVENTS = [
    "VELOCITY_24", "PITCH_60", "DURATION_1", "PITCH_64", "DURATION_1/2",
    "SHIFT_1/3", "VELOCITY_14", "PITCH_67", "DURATION_1/3",
    "SHIFT_5/12", "VELOCITY_24", "PITCH_72", "DURATION_1/4",
    "SHIFT_9", "SHIFT_1/4", "PITCH_48", "DURATION_6",
    "SHIFT_16", "SHIFT_4", "PITCH_50", "DURATION_5/2",
]


def test_encode_hand_made_piece() -> None:
    tokens = encode(PIECE)
    assert tokens.dtype == np.uint16 and tokens.ndim == 1
    assert names(tokens) == PIECE_EVENTS
    assert tokens.tolist() == [
        256, 60, 139, 64, 133, 183, 246, 67, 131, 184, 256, 72, 130, 217, 182, 48, 159, 231,
        207, 50, 152]  # fmt: skip
    assert clock_of(PIECE) == Clock(666_667, 3, 4)
    back = decode(tokens, clock=clock_of(PIECE))
    assert_pieces_equal(back, quantise(PIECE))
    # everything here is on the grid: only velocities change (to their bins' representatives)
    assert np.array_equal(back.beats, PIECE.beats[np.lexsort((PIECE.notes["pitch"],
                                                              PIECE.beats["start"]))])
    assert back.notes["velocity"].tolist() == [99, 99, 59, 99, 99, 99]
    assert back.notes["start"][-1] == pytest.approx(30 * 0.666667)


def test_notes_at_one_onset_go_by_pitch_then_duration() -> None:
    piece = beat_piece([(64, 80, 0, 1), (60, 80, 0, 2), (60, 80, 0, 1), (62, 80, 1, 2)])
    assert names(encode(piece)) == [
        "VELOCITY_19", "PITCH_60", "DURATION_1", "PITCH_60", "DURATION_2", "PITCH_64",
        "DURATION_1", "SHIFT_1", "PITCH_62", "DURATION_1"]
    assert np.array_equal(encode(piece), encode(beat_piece(
        [(62, 80, 1, 2), (60, 80, 0, 1), (64, 80, 0, 1), (60, 80, 0, 2)])))


def test_triplets_and_sixteenths_are_exact() -> None:
    triplets = [(60 + i, 80, Fraction(i, 3), Fraction(i + 1, 3)) for i in range(6)]
    sixteenths = [(72 + i, 80, Fraction(i, 4), Fraction(i + 1, 4)) for i in range(8)]
    for rows, shift, length in ((triplets, "SHIFT_1/3", "DURATION_1/3"),
                                (sixteenths, "SHIFT_1/4", "DURATION_1/4")):
        piece = beat_piece(rows)
        tokens = names(encode(piece))
        assert tokens.count(shift) == len(rows) - 1 and tokens.count(length) == len(rows)
        assert len(tokens) == 3 * len(rows)  # one VELOCITY, PITCH + DURATION, SHIFTs between
        assert np.array_equal(quantise(piece).beats, piece.beats)  # nothing moves
        assert grid_fraction(piece) == 1.0
    # 12 steps per quarter cannot hold quintuplets: they snap, and count as off the grid
    quintuplets = beat_piece([(60, 80, Fraction(i, 5), Fraction(i + 1, 5)) for i in range(5)])
    assert quantise(quintuplets).beats["start"].tolist() == [0, 1 / 6, 5 / 12, 7 / 12, 5 / 6]
    assert grid_counts(quintuplets) == (1, 5)


# --- quantise ---------------------------------------------------------------------------------


def test_quantise_rules() -> None:
    piece = beat_piece([
        (60, 64, 0.01, 0.02),  # zero length after snapping: one step
        (61, 64, 1.0, 1.0 + 27 / 12),  # 27 steps: halfway between 24 and 30 -> 24
        (62, 64, 2.0, 2.0 + 28 / 12),  # 28 steps -> 30
        (63, 64, 3.0, 40.0),  # longer than the longest duration -> 16 beats
        (128 - 1, 127, 4.0, 5.0, 9),  # program dropped
    ])
    q = quantise(piece)
    got = [(int(p), float(s), round(float(e - s) * 12)) for p, (s, e)
           in zip(q.notes["pitch"], q.beats.tolist(), strict=True)]
    assert got == [(60, 0.0, 1), (61, 1.0, 24), (62, 2.0, 30), (63, 3.0, 192), (127, 4.0, 12)]
    assert (q.notes["program"] == 0).all() and not q.notes["is_drum"].any()
    assert_pieces_equal(quantise(q), q)  # idempotent
    small = quantise(piece, SMALL)
    assert small.notes["pitch"].tolist() == [60, 61, 62, 63]  # 48..72 only
    assert (small.notes["velocity"] == 64).all()  # no velocity bins
    assert names(encode(piece, SMALL), NoteVocabulary(SMALL)) == [
        "PITCH_60", "DURATION_1/4", "SHIFT_1", "PITCH_61", "DURATION_2", "SHIFT_1",
        "PITCH_62", "DURATION_2", "SHIFT_1", "PITCH_63", "DURATION_2"]


def test_bare_note_arrays_are_timed_at_120_bpm() -> None:
    arr = as_note_array([Note(60, 64, 0.25, 0.75), Note(62, 64, 1.0, 1.5)])
    assert names(encode(arr)) == ["SHIFT_1/2", "VELOCITY_15", "PITCH_60", "DURATION_1",
                                  "SHIFT_3/2", "PITCH_62", "DURATION_1"]
    assert clock_of(arr) == Clock(500_000, 4, 4)
    assert quantise(arr).notes["start"].tolist() == [0.25, 1.0]


def test_rejects_bad_times() -> None:
    for start in (np.nan, -1.0):
        with pytest.raises(VocabularyError):
            encode(beat_piece([(60, 64, start, 1.0)]))


# --- decode: any token sequence ---------------------------------------------------------------


def test_decode_grammar() -> None:
    by_name = {VOCAB.token_str(i): i for i in range(len(VOCAB))}
    tokens = [by_name[n] for n in [
        "DURATION_1",  # no PITCH before it: ignored
        "PITCH_60", "DURATION_1",  # velocity 64's bin before any VELOCITY
        "PITCH_61",  # no DURATION after it: ignored
        "SHIFT_1/2", "VELOCITY_0", "PITCH_62", "DURATION_16",
        "PITCH_63", "VELOCITY_1", "DURATION_1",  # a VELOCITY between: the note is dropped
        "SHIFT_16", "SHIFT_16", "PITCH_64",  # dangling at the end
    ]]
    out = decode(tokens, clock=Clock(1_000_000, 6, 8), program=5)
    assert out.notes["pitch"].tolist() == [60, 62]
    assert out.notes["velocity"].tolist() == [63, 3]
    assert out.beats.tolist() == [(0.0, 1.0), (0.5, 16.5)]
    assert out.notes["start"].tolist() == [0.0, 0.5] and out.notes["end"].tolist() == [1.0, 16.5]
    assert (out.notes["program"] == 5).all()
    assert out.tempos.tolist() == [(0.0, 0.0, 1_000_000)]
    assert out.time_signatures.tolist() == [(0.0, 6, 8)]
    assert decode([]).notes.size == 0 and decode([]).beats.size == 0


@settings(max_examples=100, deadline=None)
@given(data=st.data(), config=st.sampled_from([NoteEventConfig(), SMALL]))
def test_decode_any_tokens(data: st.DataObject, config: NoteEventConfig) -> None:
    size = len(NoteVocabulary(config))
    tokens = data.draw(st.lists(st.integers(0, size - 1), max_size=60))
    out = decode(tokens, config=config)
    assert (out.beats["end"] > out.beats["start"]).all()
    assert (out.notes["end"] > out.notes["start"]).all()
    assert ((out.notes["pitch"] >= config.min_pitch)
            & (out.notes["pitch"] <= config.max_pitch)).all()
    assert_pieces_equal(quantise(out, config), out)  # decoded pieces are already quantised
    assert np.array_equal(encode(out, config), encode(decode(encode(out, config),
                                                             config=config), config))


# --- round trips --------------------------------------------------------------------------


@st.composite
def pieces(draw: st.DrawFn):
    """Random notes in beats, on and off the grid, at a random tempo and time signature."""
    low = draw(st.integers(0, 127))
    high = min(127, low + draw(st.sampled_from([0, 3, 127])))
    time = st.one_of(st.floats(0, 80, allow_nan=False),
                     st.integers(0, 80 * 24).map(lambda k: k / 24))
    length = st.one_of(st.just(0.0), st.floats(0, 30, allow_nan=False),
                       st.integers(0, 400).map(lambda k: k / 12))
    rows = draw(st.lists(st.tuples(st.integers(low, high), st.integers(1, 127), time, length,
                                   st.integers(0, 127)), max_size=40))
    us = draw(st.integers(100_000, 2_000_000))
    sig = draw(st.sampled_from([None, (3, 4), (6, 8)]))
    return beat_piece([(p, v, s, s + d, g) for p, v, s, d, g in rows], us, sig)


@settings(max_examples=200, deadline=None)
@given(x=pieces(), config=st.sampled_from([NoteEventConfig(), SMALL]))
def test_decode_encode_equals_quantise(x, config: NoteEventConfig) -> None:
    tokens = encode(x, config)
    assert tokens.dtype == np.uint16 and (tokens < len(NoteVocabulary(config))).all()
    q = quantise(x, config)
    assert_pieces_equal(decode(tokens, config, clock_of(x)), q)
    assert_pieces_equal(quantise(q, config), q)
    assert np.array_equal(encode(q, config), tokens)
    assert (q.beats["end"] > q.beats["start"]).all()


def test_encode_many_equals_encoding_each_piece() -> None:
    rng = np.random.default_rng(3)
    batch_in = []
    for n in (5, 0, 30, 1):
        starts = rng.integers(0, 400, n) / 12
        batch_in.append(beat_piece([(int(p), 80, s, s + d) for p, s, d in zip(
            rng.integers(40, 80, n), starts, rng.integers(1, 60, n) / 12, strict=True)]))
    batch = encode_many(batch_in)
    assert [len(t) for t in batch][1] == 0 and encode_many([]) == []
    for piece, tokens in zip(batch_in, batch, strict=True):
        assert np.array_equal(tokens, encode(piece))


@needs_bach
def test_every_bundled_chorale_is_on_the_grid_and_round_trips() -> None:
    pieces_ = [load(p) for p in BACH_FILES]
    fractions = np.array([grid_fraction(p) for p in pieces_])
    assert (fractions >= 0.98).all()  # a few 32nd notes do not fit 12 steps per quarter
    assert (fractions == 1.0).mean() > 0.98
    assert all(grid_fraction(p, steps_per_quarter=24) == 1.0 for p in pieces_)
    assert all(is_quantised(p) for p in pieces_)
    for piece, tokens in zip(pieces_, encode_many(pieces_), strict=True):
        assert_pieces_equal(decode(tokens, clock=clock_of(piece)), quantise(piece))
        assert len(tokens) < 3 * len(piece.notes)


# --- grid, tempo, clock --------------------------------------------------------------------------


def test_grid_fraction_tolerance_and_performed_music() -> None:
    piece = beat_piece([(60, 80, 0, 1), (62, 80, 1 + 1 / 480, 2), (64, 80, 1 + 3 / 480, 2)])
    assert grid_counts(piece) == (2, 3)  # one tick off is on the grid, three are not
    assert grid_counts(piece, tolerance_ticks=3) == (3, 3)
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 60, 200))
    performed = as_note_array([Note(60, 80, t, t + 0.3) for t in times])
    assert grid_fraction(beat_piece([])) == 1.0
    played = piece_from_beats(performed, np.array([(t * 2, t * 2 + 0.6) for t in times],
                                                  BEAT_DTYPE))
    assert grid_fraction(played) < 0.2 and not is_quantised(played)


def test_dominant_tempo_and_conversions() -> None:
    tempos = np.array([(0.0, 0.0, 500_000), (4.0, 2.0, 1_000_000), (6.0, 4.0, 500_000)],
                      TEMPO_DTYPE)
    beats = np.array([0, 2, 4, 5, 6, 10])
    seconds = beats_to_seconds(beats, tempos)
    assert seconds.tolist() == [0, 1, 2, 3, 4, 6]
    assert seconds_to_beats(seconds, tempos).tolist() == beats.tolist()
    notes = as_note_array([Note(60, 80, 0, 1)])
    piece = piece_from_beats(notes, np.array([(0.0, 10.0)], BEAT_DTYPE), tempos)
    assert piece.notes["end"].tolist() == [6.0] and piece.duration == 6.0
    assert dominant_tempo(tempos, 10.0) == 500_000  # 8 of 10 beats
    assert dominant_tempo(tempos, 5.0) == 500_000  # a tie of 4 beats each: the faster tempo
    assert dominant_tempo(tempos[:2], 9.0) == 1_000_000  # 5 beats against 4
    assert clock_of(piece).us_per_quarter == 500_000
    assert Clock(400_000).bpm == 150.0
    assert bpm_to_us(120) == 500_000 and bpm_to_us(90) == 666_667
    assert bpm_to_us(Clock(666_667).bpm) == 666_667
    for bad in (0.0, float("nan"), -5.0):
        with pytest.raises(ComposerError, match="tempo"):
            bpm_to_us(bad)
    with pytest.raises(ComposerError, match="tempo"):
        constant_tempo(0)


# --- midi: beats, tempo map and time signatures -------------------------------------------


def midi_bytes(*tracks, tpb=96) -> bytes:
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mid.tracks.extend(mido.MidiTrack(msgs) for msgs in tracks)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def test_load_gives_beats_tempo_map_and_time_signatures() -> None:
    Msg, Meta = mido.Message, mido.MetaMessage
    conductor = [Meta("time_signature", numerator=3, denominator=4, time=0),
                 Meta("set_tempo", tempo=600_000, time=0),
                 Meta("set_tempo", tempo=300_000, time=192),  # at beat 2
                 Meta("time_signature", numerator=6, denominator=8, time=96)]  # at beat 3
    voice = [Msg("note_on", note=60, velocity=80, time=48),  # beat 1/2
             Msg("note_off", note=60, time=240),  # beat 3
             Msg("note_on", note=62, velocity=80, time=8),  # beat 3 1/12, never released
             Msg("control_change", control=7, value=100, time=192)]  # the track ends 2 beats on
    piece = parse(midi_bytes(conductor, voice), LoadConfig(max_hanging_seconds=0.5))
    assert piece.ticks_per_beat == 96
    assert piece.tempos.tolist() == [(0.0, 0.0, 600_000), (2.0, pytest.approx(1.2), 300_000)]
    assert piece.time_signatures.tolist() == [(0.0, 3, 4), (3.0, 6, 8)]
    assert piece.beats["start"].tolist() == [0.5, 3 + 1 / 12]
    assert piece.beats["end"][0] == 3.0
    assert piece.notes["start"].tolist() == pytest.approx([0.3, 1.2 + 13 / 12 * 0.3])
    # the hanging note is capped at 0.5 s: its end beat is that instant's beat
    assert piece.beats["end"][1] == pytest.approx(3 + 1 / 12 + 0.5 / 0.3)
    assert grid_fraction(piece) == 1.0 and clock_of(piece) == Clock(300_000, 3, 4)


def test_smpte_beats_come_from_seconds_at_120_bpm() -> None:
    head = b"MThd" + (6).to_bytes(4, "big") + b"\x00\x00\x00\x01" + bytes([0x100 - 25, 40])
    body = (b"\x00\xff\x51\x03\x0f\x42\x40" b"\x00\xff\x58\x04\x03\x02\x18\x08"
            b"\x00\x90\x3c\x50" b"\x81\x7a\x80\x3c\x00" b"\x00\xff\x2f\x00")  # 250 ticks = 0.25 s
    piece = parse(head + b"MTrk" + len(body).to_bytes(4, "big") + body)
    assert piece.ticks_per_beat == 0
    assert piece.notes["end"].tolist() == [0.25] and piece.beats["end"].tolist() == [0.5]
    assert piece.tempos.tolist() == [(0.0, 0.0, 500_000)]  # tempo events do not apply
    assert piece.time_signatures.tolist() == [(0.0, 3, 4)]
    assert not is_quantised(piece)


def test_malformed_time_signature_is_skipped_by_both_parsers() -> None:
    body = (b"\x00\xff\x58\x03\x03\x02\x18" b"\x00\xff\x58\x04\x00\x02\x18\x08"
            b"\x00\xff\x58\x04\x04\x02\x18\x08" b"\x00\x90\x3c\x50\x60\x80\x3c\x00\x00\xff\x2f\x00")
    out = [parse_track(body, 0, len(body), 10) for parse_track in
           (_smf.parse_track, _smf_ref.parse_track)]
    assert out[0] == out[1]
    assert np.frombuffer(out[0][6], np.int64).tolist() == [0, 4, 4]
    assert len(out[0][5]) == 2 and "malformed time signature" in out[0][5][0]


def test_save_writes_tempo_time_signature_and_notes_on_the_grid(tmp_path) -> None:
    tokens = encode(PIECE)
    piece = decode(tokens, clock=Clock(666_667, 3, 4))
    path = tmp_path / "beats.mid"
    save(piece, path)
    back = load(path)
    assert back.tempos.tolist() == [(0.0, 0.0, 666_667)]
    assert back.time_signatures.tolist() == [(0.0, 3, 4)]
    assert np.array_equal(back.beats, piece.beats)  # exactly: tick = beat * 480
    assert np.allclose(back.notes["start"], piece.notes["start"], rtol=0, atol=1e-12)
    assert_pieces_equal(quantise(back), piece)
    assert np.array_equal(encode(back), tokens)
    ticks = [t for msg in mido.MidiFile(path).tracks[1] for t in [msg.time]]
    assert all(t % 40 == 0 for t in ticks)  # 480 ticks per quarter, 40 per grid step
    assert mido.MidiFile(path).ticks_per_beat == 480


def test_decoded_file_reads_as_music_in_music21(tmp_path) -> None:
    music21 = pytest.importorskip("music21")
    rows = [(60, 80, 0, 1), (64, 80, 1, Fraction(3, 2)), (67, 80, Fraction(3, 2), 2),
            (72, 80, 2, Fraction(7, 3)), (71, 80, Fraction(7, 3), Fraction(8, 3)),
            (69, 80, Fraction(8, 3), 3), (65, 80, 3, Fraction(13, 4)), (64, 80, Fraction(13, 4),
                                                                       Fraction(7, 2)),
            (62, 80, Fraction(7, 2), 4), (60, 80, 4, 6)]
    piece = decode(encode(beat_piece(rows)), clock=Clock(750_000, 4, 4))
    path = tmp_path / "melody.mid"
    save(piece, path)
    score = music21.converter.parse(path)
    found = [(n.pitch.midi, Fraction(n.offset), Fraction(n.quarterLength))
             for n in score.flatten().notes]
    assert found == [(p, Fraction(s), Fraction(e) - Fraction(s)) for p, _, s, e in rows]
    tempo = score.flatten().getElementsByClass("MetronomeMark")[0]
    assert tempo.number == pytest.approx(80.0)
    sig = score.flatten().getElementsByClass("TimeSignature")[0]
    assert sig.ratioString == "4/4"
