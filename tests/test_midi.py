"""Tests of composer.midi: exact note timing, pairing and sustain rules, defensive parsing of
malformed files, C parser == Python twin, and save/load round trips (checked with mido,
pretty_midi and music21)."""

from __future__ import annotations

import io
import random
import re
import struct
from collections import defaultdict, deque
from pathlib import Path

import mido
import numpy as np
import pytest
from helpers import BACH
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.core.messages import MidiError
from composer.midi import _smf, _smf_ref
from composer.midi.io import NOTE_DTYPE, LoadConfig, Note, as_note_array, load, parse, save

BACH_FILES = sorted(BACH.glob("*.mid"))[:50] if BACH.is_dir() else []
needs_bach = pytest.mark.skipif(not BACH_FILES, reason=f"no .mid files in {BACH}")
PARSERS = {"c": _smf.parse_track, "py": _smf_ref.parse_track}

# --- building inputs ----------------------------------------------------------------------

Msg, Meta = mido.Message, mido.MetaMessage


def on(pitch, t=0, vel=80, ch=0):
    return Msg("note_on", note=pitch, velocity=vel, channel=ch, time=t)


def off(pitch, t=0, ch=0, vel0=False):
    """Note-off (or, with vel0, a note-on of velocity 0); ``t`` is a delta in ticks."""
    return Msg("note_on" if vel0 else "note_off", note=pitch, velocity=0, channel=ch, time=t)


def tempo(us, t=0):
    return Meta("set_tempo", tempo=us, time=t)


def pedal(value, t=0, ch=0):
    return Msg("control_change", control=64, value=value, channel=ch, time=t)


def program(p, t=0, ch=0):
    return Msg("program_change", program=p, channel=ch, time=t)


def midi_bytes(*tracks, tpb=480, fmt=None) -> bytes:
    """An SMF built by mido from lists of messages (times are deltas); one track -> format 0."""
    mid = mido.MidiFile(type=(len(tracks) > 1) if fmt is None else fmt, ticks_per_beat=tpb)
    mid.tracks.extend(mido.MidiTrack(msgs) for msgs in tracks)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def chunk(cid: bytes, body: bytes, length: int | None = None) -> bytes:
    return cid + struct.pack(">I", len(body) if length is None else length) + body


EOT = b"\x00\xff\x2f\x00"
NOTE = b"\x00\x90\x3c\x50" + b"\x83\x60\x80\x3c\x00"  # pitch 60 vel 80: tick 0 -> 480


def smf(*bodies: bytes, fmt=0, ntracks=None, division=b"\x01\xe0", hlen=6) -> bytes:
    """A raw SMF: header (default 480 ticks per beat) + one MTrk chunk per body."""
    n = len(bodies) if ntracks is None else ntracks
    head = chunk(b"MThd", struct.pack(">HH", fmt, n) + division, hlen)
    return head + b"".join(chunk(b"MTrk", body) for body in bodies)


def rmid(data: bytes, extra: bytes = b"") -> bytes:
    """Wrap an SMF in a RIFF RMID file (``extra`` chunks go before the data chunk)."""
    body = b"RMID" + extra + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def rows(notes) -> list[tuple]:
    """(pitch, velocity, start, end, program, is_drum) tuples, in the array's order."""
    return [tuple(r) for r in as_note_array(notes).tolist()]


def table(notes, cols=6) -> np.ndarray:
    """Notes as a float (N, cols) table in a canonical order (times rounded for sorting only)."""
    arr = np.array([r[:cols] for r in notes], dtype=float).reshape(-1, cols)
    return arr[np.lexsort(np.round(arr, 6).T[::-1])]


def approx_rows(want: list[tuple], tol: float = 1e-12) -> list:
    """``got == approx_rows(want)``: same rows, numbers within ``tol``."""
    return [pytest.approx(w, abs=tol) for w in want]


def assert_same(got, want, tol=1e-9, cols=6) -> None:
    a, b = table(got, cols), table(want, cols)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)


def load_bytes(data: bytes, tmp_path: Path, config=None, name="in.mid"):
    path = tmp_path / name
    path.write_bytes(data)
    return load(path, config or LoadConfig())


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# --- 1. exact notes ------------------------------------------------------------------------


def test_exact_seconds_and_tempo_change():
    data = midi_bytes([
        tempo(500_000), on(60), off(60, 480),  # 0 .. 0.5 s
        on(64), tempo(250_000, 480), off(64, 240),  # 0.5 s .. 1.0 + 240/1920 s
        on(67, 240), off(67, 480),  # tick 1440 = 1.25 s .. tick 1920 = 1.5 s
    ])
    piece = parse(data)
    assert (piece.format, piece.ticks_per_beat, piece.warnings) == (0, 480, ())
    assert rows(piece) == approx_rows([
        (60, 80, 0.0, 0.5, 0, False), (64, 80, 0.5, 1.125, 0, False),
        (67, 80, 1.25, 1.5, 0, False),
    ])
    assert piece.duration == pytest.approx(1.5, abs=1e-12)
    assert piece.notes.dtype == NOTE_DTYPE


def test_tempo_map_in_a_later_track_applies_to_all_tracks():
    data = midi_bytes(
        [on(60), off(60, 480), on(62, 480), off(62, 480)],
        [Meta("track_name", name="tempo"), tempo(1_000_000), tempo(250_000, 960)],
        [on(72, 240), off(72, 480), on(74, 720), off(74, 240)],
    )
    piece = parse(data)
    assert piece.format == 1
    # 1 s per beat up to tick 960 (2 s), then 0.25 s per beat
    assert [(r[0], r[2], r[3]) for r in rows(piece)] == approx_rows(
        [(60, 0.0, 1.0), (72, 0.5, 1.5), (62, 2.0, 2.25), (74, 2.25, 2.375)])


def test_velocity_zero_is_note_off_and_programs_per_channel():
    data = midi_bytes([
        program(5, ch=0), program(40, ch=1), on(60, ch=0), on(60, ch=1, vel=90),
        off(60, 480, ch=0, vel0=True), off(60, 0, ch=1, vel0=True),
        program(7, ch=0), on(62, 0, ch=0), off(62, 480, ch=0, vel0=True),
    ])
    got = sorted(rows(parse(data)))
    assert got == approx_rows([
        (60, 80, 0.0, 0.5, 5, False), (60, 90, 0.0, 0.5, 40, False),
        (62, 80, 0.5, 1.0, 7, False),
    ])


def test_drums_dropped_by_default_and_kept_on_request():
    data = midi_bytes([on(60), on(36, ch=9, vel=100), off(36, 240, ch=9), off(60, 240)])
    assert rows(parse(data)) == approx_rows([(60, 80, 0.0, 0.5, 0, False)])
    assert rows(parse(data, LoadConfig(keep_drums=True))) == approx_rows(
        [(36, 100, 0.0, 0.25, 0, True), (60, 80, 0.0, 0.5, 0, False)])


# --- 2. format 0 == format 1 -------------------------------------------------------------


def _tune() -> tuple[list, dict[int, list]]:
    """A tune as absolute-tick (tick, msg) lists: tempo map, and one list per channel."""
    rng = random.Random(7)
    conductor = [(0, tempo(600_000)), (1000, tempo(400_000)), (2500, tempo(900_000))]
    parts: dict[int, list] = {}
    for ch, prog, base in ((0, 0, 48), (3, 40, 60), (9, 0, 35)):
        events = [(0, program(prog, ch=ch))] if ch != 9 else []
        if ch == 0:
            events += [(300, pedal(127, ch=ch)), (900, pedal(0, ch=ch))]
        tick = 0
        for _ in range(25):
            pitch, dur = base + rng.randrange(12), rng.choice((60, 120, 240))
            events += [(tick, on(pitch, vel=rng.randint(1, 127), ch=ch)),
                       (tick + dur, off(pitch, ch=ch, vel0=rng.random() < 0.5))]
            tick += dur + rng.choice((0, 17, 120))
        parts[ch] = events
    return conductor, parts


def _deltas(events: list) -> list:
    out, now = [], 0
    for tick, msg in sorted(events, key=lambda e: e[0]):  # stable: same-tick order is kept
        out.append(msg.copy(time=tick - now))
        now = tick
    return out


def test_format0_and_format1_give_identical_notes():
    conductor, parts = _tune()
    everything = conductor + [e for events in parts.values() for e in events]
    f0 = parse(midi_bytes(_deltas(everything)), LoadConfig(keep_drums=True))
    f1 = parse(midi_bytes(_deltas(conductor), *map(_deltas, parts.values())),
               LoadConfig(keep_drums=True))
    assert (f0.format, f1.format) == (0, 1)
    assert len(f0.notes) == 75
    assert set(f0.notes["program"].tolist()) == {0, 40} and f0.notes["is_drum"].sum() == 25
    assert np.array_equal(f0.notes, f1.notes)
    assert f0.duration == f1.duration


@needs_bach
def test_real_files_format0_equal_format1(tmp_path):
    for src in BACH_FILES[:10]:
        mid = mido.MidiFile(src)
        assert mid.type == 1 and 1 < len(mid.tracks) <= 9
        # the voices all use channel 0; merged as they are, two voices on one pitch would pair
        # first-in-first-out across voices, so each track keeps a channel of its own
        tracks = [[m.copy(channel=i) if hasattr(m, "channel") else m for m in track]
                  for i, track in enumerate(mid.tracks)]
        merged = mido.MidiFile(type=0, ticks_per_beat=mid.ticks_per_beat)
        merged.tracks.append(mido.merge_tracks(tracks))
        merged.save(tmp_path / "f0.mid")
        a, b = load(src), load(tmp_path / "f0.mid")
        assert (a.format, b.format, len(a.notes) > 20) == (1, 0, True)
        assert np.array_equal(a.notes, b.notes), src.name
        assert a.duration == b.duration


# --- 3. pairing, orphans, zero length, hanging notes ------------------------------------------


def test_same_pitch_overlap_pairs_first_in_first_out():
    data = midi_bytes([on(60, vel=10), on(60, 100, vel=20), off(60, 100), off(60, 100)])
    assert rows(parse(data)) == approx_rows(
        [(60, 10, 0.0, 200 / 960, 0, False), (60, 20, 100 / 960, 300 / 960, 0, False)])


def test_orphan_note_off_ignored_and_zero_length_dropped():
    data = midi_bytes([off(64, 0), off(64, 50, vel0=True), on(64, 50), off(64, 100),
                       on(70), off(70, 0), on(71), off(71, 480)])
    assert rows(parse(data)) == approx_rows(
        [(64, 80, 100 / 960, 200 / 960, 0, False), (71, 80, 200 / 960, 680 / 960, 0, False)])


def test_hanging_note_closed_at_its_track_end_and_capped():
    data = midi_bytes(
        [tempo(500_000)],
        [on(60), Meta("end_of_track", time=960)],  # ends with its own track: 1 s
        [on(62, 480), Meta("end_of_track", time=48_000)],  # track runs 50 s: capped
        [on(64, 480), off(64, 480), Meta("end_of_track", time=19_200)],  # released: 0.5..1 s
    )
    got = [(r[0], r[2], r[3]) for r in rows(parse(data))]
    assert got == approx_rows([(60, 0.0, 1.0), (62, 0.5, 5.5), (64, 0.5, 1.0)])
    got = [(r[0], r[3]) for r in rows(parse(data, LoadConfig(max_hanging_seconds=0.25)))]
    assert got == approx_rows([(60, 0.25), (62, 0.75), (64, 1.0)])


# --- 4. sustain pedal ------------------------------------------------------------------------


def test_sustain_holds_released_notes_until_pedal_lifts():
    data = midi_bytes([
        on(60), pedal(127, 240), off(60, 240),  # released at 0.5 s, pedal down since 0.25 s
        on(62), off(62, 240),  # 0.5 .. 0.75 s, also held
        pedal(0, 240),  # lifted at 1 s
        on(64), off(64, 480),  # after the lift: not held
        on(65, ch=1), pedal(127, 0, ch=2), off(65, 240, ch=1),  # another channel's pedal
        pedal(0, 240, ch=2),
    ])
    want = [(60, 0.0, 1.0), (62, 0.5, 1.0), (64, 1.0, 1.5), (65, 1.5, 1.75)]
    assert [(r[0], r[2], r[3]) for r in rows(parse(data))] == approx_rows(want)
    want[:2] = [(60, 0.0, 0.5), (62, 0.5, 0.75)]
    got = [(r[0], r[2], r[3]) for r in rows(parse(data, LoadConfig(sustain=False)))]
    assert got == approx_rows(want)


def test_sustain_restrike_ends_the_held_note():
    data = midi_bytes([pedal(127), on(60), off(60, 240), on(60, 240, vel=90), off(60, 120),
                       pedal(0, 600)])
    assert [(r[1], r[2], r[3]) for r in rows(parse(data))] == approx_rows(
        [(80, 0.0, 0.5), (90, 0.5, 1.25)])


def test_sustain_never_lifted_holds_to_track_end():
    data = midi_bytes([pedal(127), on(60), off(60, 480), on(62, 0), off(62, 480),
                       Meta("end_of_track", time=960)])  # track ends at tick 1920 = 2 s
    assert [(r[0], r[2], r[3]) for r in rows(parse(data))] == approx_rows(
        [(60, 0.0, 2.0), (62, 0.5, 2.0)])


# --- 5. malformed input ------------------------------------------------------------------------

_VALID = midi_bytes([tempo(500_000)], [on(60), off(60, 480), on(62), off(62, 480)])
_JUNK = random.Random(1).randbytes(3000)
_HUGE_DELTA = b"\x00\xff\x51\x03\xff\xff\xff" + b"\x00\x90\x3c\x50\xff\xff\xff\x7f\x80\x3c\x00"
_PAST_2_40 = b"\x00\x90\x3c\x50" + b"\xff\xff\xff\x7f\xff\x01\x00" * 4100

REJECTED = {
    "empty": (b"", "empty file"),
    "text": (b"MIDI? no, just some text\n" * 20, "no MThd header"),
    "junk": (_JUNK, "no MThd header"),
    "truncated": (_VALID[:-12], "truncated: chunk 2 claims"),
    "4GB chunk": (smf(NOTE + EOT)[:18] + b"\xff\xff\xff\xf0" + NOTE, "claims 4294967280 bytes"),
    "MThd length 5": (smf(NOTE + EOT, hlen=5), "header length 5"),
    "MThd length huge": (smf(NOTE + EOT, hlen=0x7FFFFFFF), "header length 2147483647"),
    "zero tracks": (smf(ntracks=0), "zero tracks"),
    "no track chunk": (smf(ntracks=1) + chunk(b"XFIH", b"abc"), "no track found"),
    "format 2": (smf(NOTE + EOT, fmt=2), "format 2"),
    "format 7": (smf(NOTE + EOT, fmt=7), "unknown MIDI format 7"),
    "zero division": (smf(NOTE + EOT, division=b"\x00\x00"), "time division is 0"),
    "smpte 0 ticks": (smf(NOTE + EOT, division=b"\xe7\x00"), "invalid SMPTE time division"),
    "data byte over 127": (smf(b"\x00\x90\x3c\xc8" + EOT), "data byte over 127"),
    "no running status": (smf(b"\x00\x3c\x50" + EOT), "data byte without a status byte"),
    "5-byte delta": (smf(NOTE + b"\x81\x81\x81\x81\x01\x90\x3c\x50" + EOT),
                     "malformed delta time"),
    "thousands of hours": (smf(_HUGE_DELTA + EOT), r"lasts \d{4,}\.\d hours"),
    "tick over 2^40": (smf(_PAST_2_40 + EOT), r"tick count over 2\^40"),
    "RIFF not RMID": (b"RIFF\x10\x00\x00\x00WAVEfmt \x00\x00\x00\x00", "not RMID"),
    "RMID without data": (b"RIFF\x0c\x00\x00\x00RMIDLIST\x00\x00\x00\x00", "without a data"),
}


@pytest.mark.parametrize(("data", "reason"), REJECTED.values(), ids=REJECTED.keys())
def test_bad_input_rejected_with_one_line_reason(data, reason, tmp_path):
    with pytest.raises(MidiError) as e:
        load_bytes(data, tmp_path)
    assert re.search(reason, one_line_error(e))


N60 = (60, 80, 0.0, 0.5, 0, False)
LOADED = {  # data, expected notes, expected warning (substring of one of the warnings) or None
    "missing tracks": (smf(NOTE + EOT, ntracks=3), [N60], "more tracks than the file holds"),
    "smpte 25 fps x 40": (smf(b"\x00\xff\x51\x03\x0f\x42\x40\x00\x90\x3c\x50\x87\x68\x80\x3c\x00"
                              + EOT, division=b"\xe7\x28"), [(60, 80, 0.0, 1.0, 0, False)], None),
    "tempo 0": (smf(b"\x00\xff\x51\x03\x00\x00\x00" + NOTE + EOT), [N60], "tempo 0 ignored"),
    "tempo length 2": (smf(b"\x00\xff\x51\x02\x0f\x42" + NOTE + EOT), [N60], "malformed tempo"),
    "meta past end": (smf(NOTE + b"\x00\xff\x01\x7fabc"), [N60], "meta event runs past the end"),
    "huge sysex": (smf(NOTE + b"\x00\xf0\x8f\xff\xff\x7f\x01\x02"), [N60], "sysex runs past"),
    "key signature sf=30": (smf(b"\x00\xff\x59\x02\x1e\x00" + NOTE + EOT), [N60], None),
    "no end of track": (smf(NOTE), [N60], None),
    "cut inside an event": (smf(NOTE + b"\x00\x90\x3e"), [N60], "track ends inside an event"),
}


@pytest.mark.parametrize(("data", "want", "warning"), LOADED.values(), ids=LOADED.keys())
def test_defective_input_loads(data, want, warning, tmp_path):
    piece = load_bytes(data, tmp_path)
    assert rows(piece) == approx_rows(want)
    if warning is None:
        assert piece.warnings == ()
    else:
        assert any(warning in w for w in piece.warnings), piece.warnings
        assert all(w and "\n" not in w for w in piece.warnings)


def test_smpte_ignores_tempo():
    data = LOADED["smpte 25 fps x 40"][0]
    assert parse(data).ticks_per_beat == 0
    # the same track at 480 ticks per beat: its tempo (1 s per beat) applies
    data = data[:12] + b"\x01\xe0" + data[14:]
    assert rows(parse(data)) == approx_rows([(60, 80, 0.0, 1000 / 480, 0, False)])


def test_max_notes():
    notes = [m for _ in range(1001) for m in (on(60), off(60, 10))]
    data = midi_bytes([tempo(500_000)], notes[:2000], notes[2000:])  # 1000 + 1 notes
    assert len(parse(data, LoadConfig(max_notes=1001)).notes) == 1001
    for body in ([tempo(500_000)], notes[:2000], notes[2000:]), (notes * 2,):
        with pytest.raises(MidiError) as e:
            parse(midi_bytes(*body), LoadConfig(max_notes=1000))
        assert one_line_error(e) == "more than 1000 notes"


def test_file_over_max_bytes_refused_before_reading(tmp_path, monkeypatch):
    import composer.midi

    def no_open(*args, **kwargs):
        raise AssertionError("the file was opened")

    big = tmp_path / "big.mid"
    with open(big, "wb") as f:
        f.truncate(65 << 20)  # sparse: 65 MiB of zeros, written in no time
    monkeypatch.setattr(composer.midi.io, "open", no_open, raising=False)
    with pytest.raises(MidiError) as e:
        load(big)
    assert "65.0 MiB (limit 64 MiB)" in one_line_error(e)
    small = tmp_path / "small.mid"
    small.write_bytes(_VALID)
    with pytest.raises(MidiError) as e:
        load(small, LoadConfig(max_file_bytes=len(_VALID) - 1))
    assert f"file is {len(_VALID)} bytes (limit {len(_VALID) - 1} bytes)" in one_line_error(e)


def test_missing_file_is_midi_error(tmp_path):
    for path in (tmp_path / "nope.mid", tmp_path):
        with pytest.raises(MidiError) as e:
            load(path)
        assert "cannot read file" in one_line_error(e)


def test_kar_and_rmi_load_like_mid(tmp_path):
    conductor, parts = _tune()
    data = midi_bytes(_deltas(conductor), *map(_deltas, parts.values()))
    want = load_bytes(data, tmp_path, name="a.mid").notes
    assert len(want) == 50
    for name, blob in (("a.kar", data), ("a.rmi", rmid(data)),
                       ("b.rmi", rmid(data, extra=b"LIST\x05\0\0\0INFOx\0"))):
        assert np.array_equal(load_bytes(blob, tmp_path, name=name).notes, want), name


# --- 6. C parser == Python twin ----------------------------------------------------------------


def _mtrk_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every b'MTrk' chunk body, clipped to the data (so truncated ones count)."""
    return [(m.end() + 4, min(m.end() + 4 + struct.unpack_from(">I", data, m.end())[0],
                              len(data)))
            for m in re.finditer(b"MTrk", data) if m.end() + 4 <= len(data)]


def both(data: bytes, start: int, end: int, max_notes: int = 1_000_000, *track) -> tuple:
    """Run both parsers; assert they agree (same result, or same ValueError message)."""
    out = {}
    for name, fn in PARSERS.items():
        try:
            out[name] = ("ok", fn(data, start, end, max_notes, *track))
        except ValueError as e:
            out[name] = ("error", str(e))
    assert out["c"] == out["py"]
    return out["c"]


@needs_bach
def test_c_and_python_parsers_agree_on_bach():
    for path in BACH_FILES:
        data = path.read_bytes()
        note_bytes = 0
        for start, end in _mtrk_spans(data):
            kind, result = both(data, start, end)
            assert kind == "ok" and result[5] == []
            note_bytes += len(result[0])
        assert note_bytes > 0, path.name


def test_c_and_python_parsers_agree_on_malformed_inputs():
    kinds = []
    blobs = [d for d, *_ in (*REJECTED.values(), *LOADED.values())] + [_VALID]
    for data in blobs:
        for start, end in _mtrk_spans(data):
            kinds.append(both(data, start, end)[0])
            both(data, start, end, max_notes=0)
        for start, end in ((-1, len(data)), (0, len(data) + 1), (5, 4)):
            assert both(data, start, end) == ("error", "track bounds outside the file")
    assert set(kinds) == {"ok", "error"}


_RICH = (  # a track using every kind of event: running status, sysex, metas, pedal, ...
    b"\x00\xff\x03\x04name\x00\xff\x51\x03\x07\xa1\x20\x00\xc0\x05\x00\xb0\x40\x7f"
    b"\x00\x90\x3c\x50\x00\x40\x51\x60\x3c\x00\x10\x80\x40\x00\x00\xf0\x03\x7e\x7f\xf7"
    b"\x00\xe0\x00\x40\x00\xd0\x20\x10\xb0\x40\x00\x00\x99\x24\x64\x20\x24\x00\x00\xf8"
    b"\x00\x90\x3c\x50\x00\x3c\x51\x81\x00\x80\x3c\x00\x00\xff\x59\x02\x1e\x00" + EOT
)


@st.composite
def mutated(draw, base: bytes) -> bytes:
    data = bytearray(base[: draw(st.integers(0, len(base)))])
    for _ in range(draw(st.integers(0, 6))):
        i, b = draw(st.integers(0, len(base))), draw(st.integers(0, 255))
        if draw(st.booleans()) and i < len(data):
            data[i] = b
        else:
            data.insert(min(i, len(data)), b)
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=200), mutated(_RICH)), bounds=st.data(),
       max_notes=st.integers(0, 5), track=st.integers(0, 65535))
def test_fuzz_c_and_python_parsers_agree(data, bounds, max_notes, track):
    both(data, 0, len(data), max_notes, track)
    start = bounds.draw(st.integers(-2, len(data) + 2))
    end = bounds.draw(st.integers(-2, len(data) + 2))
    both(data, start, end, 1000)


def both_files(data: bytes, max_notes: int, first_track: int) -> tuple:
    """Run both whole-file parsers on every MTrk chunk of ``data``; assert they agree."""
    chunks, out = _mtrk_spans(data), {}
    for name, module in (("c", _smf), ("py", _smf_ref)):
        try:
            out[name] = ("ok", module.parse_tracks(data, chunks, max_notes, first_track))
        except ValueError as e:
            out[name] = ("error", str(e))
    assert out["c"] == out["py"]
    return out["c"]


def test_whole_file_parsers_agree_and_prefix_each_track():
    rich = smf(_RICH, _RICH, fmt=1)
    kind, (notes, _, _, _, ends, warnings, _) = both_files(rich, 100, 7)
    assert kind == "ok" and len(ends) == 2 and warnings == []
    assert set(np.frombuffer(notes, np.int64).reshape(-1, 7)[:, 0]) == {7, 8}  # track ids
    n = len(notes) // 56  # the note budget is for the whole file, named whole in the error
    assert both_files(rich, n - 1, 0) == ("error", f"more than {n - 1} notes")
    assert both_files(rich + b"\x00", n, 0)[0] == "ok"
    bad = smf(_RICH, b"\x00\x3c\x40" + EOT, fmt=1)  # track 2: a data byte without status
    at = _mtrk_spans(bad)[1][0]  # the event (its delta time) starts the chunk
    assert both_files(bad, 100, 0) == ("error", "track 2: data byte without a status byte "
                                                f"at byte {at}")


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(mutated(smf(_RICH, _RICH, fmt=1)),
                      st.builds(lambda a, b: smf(a, b, fmt=1), mutated(_RICH), mutated(_RICH))),
       max_notes=st.integers(0, 12), first_track=st.integers(0, 1000))
def test_fuzz_whole_file_parsers_agree(data, max_notes, first_track):
    both_files(data, max_notes, first_track)


files = st.one_of(
    st.binary(max_size=200),
    mutated(smf(_RICH, _RICH, fmt=1)),  # chunk lengths mostly wrong
    st.builds(lambda a, b: smf(a, b, fmt=1), mutated(_RICH), mutated(_RICH)),  # lengths right
)


@settings(max_examples=300, deadline=None)
@given(data=files)
def test_fuzz_parse_only_raises_midi_error(data):
    for config in (LoadConfig(), LoadConfig(keep_drums=True, sustain=False)):
        try:
            piece = parse(data, config)
        except MidiError as e:
            assert str(e) and "\n" not in str(e)
            continue
        n = piece.notes
        assert n.dtype == NOTE_DTYPE and np.all(n["end"] > n["start"]) and np.all(n["start"] >= 0)
        assert np.all((n["velocity"] >= 1) & (n["velocity"] <= 127))
        assert np.all((n["pitch"] >= 0) & (n["pitch"] <= 127))
        assert piece.duration == (n["end"].max() if len(n) else 0.0)


# --- 7. save / load round trips ------------------------------------------------------------------

GROUPS = ((0, False), (40, False), (0, True))  # two instruments and drums


@st.composite
def note_arrays(draw) -> np.ndarray:
    """Notes on a 1 ms grid, never overlapping within one pitch and instrument."""
    clock: dict = defaultdict(int)
    out = []
    spec = st.tuples(st.integers(0, 2), st.integers(58, 64), st.integers(1, 127),
                     st.integers(0, 300), st.integers(1, 300))
    for group, pitch, vel, gap, dur in draw(st.lists(spec, max_size=40)):
        start = clock[group, pitch] + gap
        clock[group, pitch] = start + dur
        out.append(Note(pitch, vel, start / 1000, (start + dur) / 1000, *GROUPS[group]))
    return as_note_array(out)


def mido_notes(path) -> list[tuple]:
    """An independent decoder: mido's playback times, FIFO pairing per channel and pitch."""
    now, programs, sounding, out = 0.0, [0] * 16, defaultdict(deque), []
    for msg in mido.MidiFile(path):
        now += msg.time
        if msg.type == "program_change":
            programs[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity:
            sounding[msg.channel, msg.note].append((now, msg.velocity))
        elif msg.type in ("note_on", "note_off"):
            start, vel = sounding[msg.channel, msg.note].popleft()
            out.append((msg.note, vel, start, now, programs[msg.channel], msg.channel == 9))
    return out


def pretty_midi_notes(path) -> list[tuple]:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    return [(n.pitch, n.velocity, n.start, n.end) for i in pm.instruments for n in i.notes]


@settings(max_examples=40, deadline=None)
@given(notes=note_arrays())
def test_save_load_round_trip(notes, tmp_path_factory):
    path = tmp_path_factory.mktemp("rt") / "out.mid"
    save(notes, path)
    piece = load(path, LoadConfig(keep_drums=True))
    assert piece.format == 1 and piece.ticks_per_beat == 480
    assert_same(rows(piece), rows(notes), tol=1e-9)
    assert_same(mido_notes(path), rows(notes), tol=1e-6)
    assert_same(pretty_midi_notes(path), rows(notes), tol=1e-6, cols=4)
    melodic = notes[~notes["is_drum"]]
    assert_same(rows(load(path)), rows(melodic), tol=1e-9)  # drums dropped by default


def test_save_list_of_notes_and_music21_reads_it(tmp_path):
    import music21

    beat = 0.48  # save's tempo: 480000 us per beat
    notes = [Note(60 + i % 5, 64 + i, i * beat / 2, (i + 1) * beat / 2, 0) for i in range(8)]
    notes += [Note(48, 70, 0.0, 2 * beat, 33), Note(52, 70, 0.0, 2 * beat, 33),
              Note(55, 70, 2 * beat, 4 * beat, 33)]
    path = tmp_path / "small.mid"
    save(notes, path)
    assert_same(rows(load(path)), rows(notes))
    score = music21.converter.parse(path)
    found = [len(n.pitches) if n.isChord else 1 for n in score.flatten().notes]
    assert sum(found) == len(notes)
    assert sorted(p.midi for n in score.flatten().notes for p in n.pitches) == sorted(
        n.pitch for n in notes)
