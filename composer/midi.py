"""MIDI in and out: the only module that touches MIDI parsers and writers.

``load(path) -> Piece`` reads a Standard MIDI File into composer's own note arrays
(seconds, tempo map applied); ``save(notes, path)`` writes notes back out.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from composer import ComposerError, Config, MidiError
from composer.files import atomic_write, read_regular

# One row per note. Times in seconds; end > start for every note composer produces.
NOTE_DTYPE = np.dtype(
    [
        ("pitch", np.int16),  # MIDI pitch 0..127
        ("velocity", np.int16),  # 1..127
        ("start", np.float64),  # seconds
        ("end", np.float64),  # seconds
        ("program", np.int16),  # General MIDI program 0..127
        ("is_drum", np.bool_),  # True for channel 10 (index 9)
    ]
)


@dataclass(frozen=True)
class Note:
    """One note, in seconds."""

    pitch: int
    velocity: int
    start: float
    end: float
    program: int = 0
    is_drum: bool = False


def as_note_array(notes: NoteInput) -> np.ndarray:
    """Return ``notes`` (a NOTE_DTYPE array, a list of Note, or a Piece) as a NOTE_DTYPE array."""
    if isinstance(notes, Piece):
        return notes.notes
    if isinstance(notes, np.ndarray):
        if notes.dtype != NOTE_DTYPE:
            raise TypeError(f"expected an array of NOTE_DTYPE, got {notes.dtype}")
        return notes
    rows = [(n.pitch, n.velocity, n.start, n.end, n.program, n.is_drum) for n in notes]
    return np.array(rows, dtype=NOTE_DTYPE)


@dataclass
class Piece:
    """A loaded MIDI file: its notes (NOTE_DTYPE array, sorted by start) and facts about it."""

    notes: np.ndarray
    duration: float  # seconds, end of the last note (0.0 when empty)
    format: int = 1  # SMF format of the source file
    ticks_per_beat: int = 0  # 0 for SMPTE time division
    warnings: tuple[str, ...] = ()  # non-fatal defects that were skipped (malformed meta, ...)
    drums_left_out: int = 0  # drum notes (channel 10) dropped because keep_drums was off


NoteInput = np.ndarray | Sequence[Note] | Piece  # anything as_note_array takes


@dataclass(frozen=True)
class LoadConfig(Config):
    """How MIDI files are read, and the bounds past which a file is refused."""

    _name = "load settings"

    keep_drums: bool = False  # drum notes (channel 10) are left out by default
    sustain: bool = True  # CC64 >= 64 holds released notes until the pedal lifts
    max_hanging_seconds: float = 5.0  # a never-released note ends at its track's end, or this long
    max_file_bytes: int = 64 << 20  # larger files are refused before reading
    max_seconds: float = 4 * 3600.0  # longer pieces are refused (e.g. absurd tick values)
    max_notes: int = 1_000_000  # more notes than this are refused


MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi", ".smf")

_STEPS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_PITCH_NAME = re.compile(r"([a-g])([#♯b♭]{0,2})(-?\d+)", re.IGNORECASE)


def parse_pitch(text: str) -> int:
    """A MIDI pitch from a note name or a number: "C4" -> 60 (middle C), "F#3" -> 54,
    "Bb2" -> 46, "60" -> 60. Sharps are ``#``/``♯``, flats ``b``/``♭`` (up to two); octaves
    run from -1 to 9. Anything else, or a pitch outside 0..127, raises :class:`MidiError`."""
    word = text.strip()
    if re.fullmatch(r"\d+", word):
        pitch = int(word)
    else:
        found = _PITCH_NAME.fullmatch(word)
        if not found:
            raise MidiError(f"{text!r} is not a note name or MIDI pitch (e.g. C4, F#3, Bb2, 60)")
        letter, accidentals, octave = found.groups()
        shift = sum(1 if a in "#♯" else -1 for a in accidentals)
        pitch = 12 * (int(octave) + 1) + _STEPS[letter.lower()] + shift
    if not 0 <= pitch <= 127:
        raise MidiError(f"{text!r} is pitch {pitch}, outside MIDI's 0..127 (C-1..G9)")
    return pitch


def load(path: str | os.PathLike, config: LoadConfig = LoadConfig()) -> Piece:
    """Read a MIDI file (.mid/.midi/.kar, or RIFF-wrapped .rmi) into a :class:`Piece`.

    Raises :class:`MidiError` with a one-line reason when the file cannot be read.
    """
    return parse(read_bytes(path, config), config)


def read_bytes(path: str | os.PathLike, config: LoadConfig = LoadConfig()) -> bytes:
    """The bytes of a regular file, at most ``config.max_file_bytes`` of them (checked before
    and while reading); otherwise :class:`MidiError` with a one-line reason. FIFOs and
    devices are refused without blocking."""
    return read_regular(path, config.max_file_bytes, error=MidiError)


def _unwrap_riff(data: bytes) -> bytes:
    """Return the SMF inside a RIFF RMID file (the 'data' chunk), or ``data`` unchanged."""
    if data[:4] != b"RIFF":
        return data
    if data[8:12] != b"RMID":
        raise MidiError("RIFF file that is not RMID (not a MIDI file)")
    pos = 12
    while pos + 8 <= len(data):
        size = struct.unpack_from("<I", data, pos + 4)[0]
        if data[pos : pos + 4] == b"data":
            return data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
    raise MidiError("RMID file without a data chunk")


def _track_chunks(data: bytes) -> tuple[int, int, list[tuple[int, int]], bool]:
    """Validate header and chunk layout: (format, division, [(start, end), ...], tracks_missing)."""
    if len(data) == 0:
        raise MidiError("empty file")
    if data[:4] != b"MThd":
        raise MidiError("not a MIDI file (no MThd header)")
    if len(data) < 14:
        raise MidiError("truncated header")
    hlen, fmt, ntracks, division = struct.unpack_from(">IHHH", data, 4)
    if hlen < 6 or 8 + hlen > len(data):
        raise MidiError(f"header length {hlen} is invalid for a {len(data)}-byte file")
    if fmt > 2:
        raise MidiError(f"unknown MIDI format {fmt}")
    if fmt == 2:
        raise MidiError("format 2 (independent sequences) is not supported")
    if ntracks == 0:
        raise MidiError("header declares zero tracks")
    if division == 0:
        raise MidiError("time division is 0")
    if division & 0x8000 and not division & 0xFF:
        raise MidiError("invalid SMPTE time division (0 ticks per frame)")
    chunks: list[tuple[int, int]] = []
    pos = 8 + hlen
    while len(chunks) < ntracks and pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (clen,) = struct.unpack_from(">I", data, pos + 4)
        start, pos = pos + 8, pos + 8 + clen
        if pos > len(data):
            raise MidiError(f"truncated: chunk {len(chunks) + 1} claims {clen} bytes, "
                            f"{len(data) - start} remain")
        if cid == b"MTrk":
            chunks.append((start, pos))
    if not chunks:
        raise MidiError(f"no track found (header declares {ntracks})")
    return fmt, division, chunks, len(chunks) < ntracks


def _tick_to_seconds(seg_file: np.ndarray, seg_tick: np.ndarray, seg_spt: np.ndarray):
    """Vectorised (file, tick) -> seconds over the tempo segments of many files.

    Segments are sorted by (file, tick); every file has one at tick 0; ``seg_spt`` is the
    seconds per tick from that segment on.
    """
    first = np.append(True, seg_file[1:] != seg_file[:-1])
    dur = np.where(first, 0.0, np.diff(seg_tick, prepend=0) * np.roll(seg_spt, 1))
    cum = np.cumsum(dur)
    at = cum - np.maximum.accumulate(np.where(first, cum, 0.0))  # seconds at each segment
    seg_key = (seg_file << 41) | seg_tick

    def convert(file: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        i = np.searchsorted(seg_key, (file << 41) | ticks, side="right") - 1
        return at[i] + (ticks - seg_tick[i]) * seg_spt[i]

    return convert


def _tempo_segments(divisions: np.ndarray, tempo_file: np.ndarray, tempos: np.ndarray):
    """Tempo segments (file, tick, seconds per tick) of every file; see _tick_to_seconds."""
    files = np.arange(len(divisions))
    smpte = (divisions & 0x8000) != 0
    fps = (256 - (divisions >> 8)).astype(np.float64)
    rate = np.where(fps == 29, 29.97, fps) * (divisions & 0xFF)  # SMPTE ticks per second
    keep = ~smpte[tempo_file]  # tempo events do not apply under SMPTE time
    f = np.concatenate([files, tempo_file[keep]])
    tick = np.concatenate([np.zeros(len(files), np.int64), tempos[keep, 0]])
    us = np.concatenate([np.full(len(files), 500_000), tempos[keep, 1]])  # default 120 bpm
    order = np.lexsort((np.arange(len(f)), tick, f))  # file order within a tick
    f, tick, us = f[order], tick[order], us[order]
    last = np.append((f[1:] != f[:-1]) | (tick[1:] != tick[:-1]), True)  # last at a tick wins
    f, tick, us = f[last], tick[last], us[last]
    spt = np.where(smpte[f], 1.0 / np.where(smpte[f], rate[f], 1.0),
                   us / (1e6 * np.where(smpte[f], 1, divisions[f])))
    return f, tick, spt


def _last_before(keys: np.ndarray, ticks: np.ndarray, ev_keys: np.ndarray,
                 ev_ticks: np.ndarray) -> np.ndarray:
    """Index of the last event with the same key at or before each tick, else -1."""
    ev = (ev_keys << 41) | ev_ticks
    order = np.argsort(ev, kind="stable")
    i = np.searchsorted(ev[order], (keys << 41) | ticks, side="right") - 1
    found = (i >= 0) & (ev_keys[order][np.maximum(i, 0)] == keys)
    return np.where(found, order[np.maximum(i, 0)], -1)


def _apply_sustain(n: np.ndarray, controls: np.ndarray, track_end: np.ndarray) -> np.ndarray:
    """End ticks after the sustain pedal: a note released while the pedal is down sounds
    until the pedal lifts (or its track ends), or until its pitch is struck again (note-seq)."""
    ends = n[:, 5].copy()
    if len(controls) == 0 or len(n) == 0:
        return ends
    ckey = controls[:, 0] * 16 + controls[:, 1]  # track*16 + channel
    order = np.lexsort((controls[:, 2], ckey))
    ckey, cticks, down = ckey[order], controls[order, 2], controls[order, 3] >= 64
    first = np.append(True, ckey[1:] != ckey[:-1])
    change = down != np.where(first, False, np.roll(down, 1))
    ckey, cticks, down = ckey[change], cticks[change], down[change]
    # pedal-down intervals [press, lift): the next change in the same key, else the track end
    nxt_same = np.append(ckey[1:] == ckey[:-1], False)
    lift = np.where(nxt_same, np.roll(cticks, -1), track_end[ckey // 16])
    press_key, press, lift = ckey[down], cticks[down], lift[down]
    if len(press) == 0:
        return ends
    nkey = n[:, 0] * 16 + n[:, 1]
    i = _last_before(nkey, ends, press_key, press)
    held = (i >= 0) & (ends < lift[np.maximum(i, 0)])
    new_end = np.where(held, lift[np.maximum(i, 0)], ends)
    # a held note stops when its pitch is struck again (in the same track and channel)
    pkey = nkey * 128 + n[:, 2]
    order = np.lexsort((n[:, 4], pkey))
    nxt = np.full(len(n), np.iinfo(np.int64).max)
    same = pkey[order][1:] == pkey[order][:-1]
    nxt[order[:-1][same]] = n[order[1:][same], 4]
    return np.where(held, np.maximum(ends, np.minimum(new_end, nxt)), ends)


def _track_parser():
    try:
        from composer._smf import parse_track
    except ImportError:  # no compiler at install time: the pure-Python twin, same rules
        from composer._smf_ref import parse_track
    return parse_track


_parse_track = _track_parser()


@dataclass
class _Raw:
    """One file's tables straight from the track parser (global track ids)."""

    fmt: int
    division: int
    blobs: list[bytes]  # notes, tempos, controls, programs (int64 rows, see _smf.c)
    tempo_count: int
    track_end: list[int]
    warnings: list[str]


def _read_tracks(data: bytes, config: LoadConfig, first_track: int) -> _Raw:
    data = _unwrap_riff(bytes(data))
    fmt, division, chunks, missing = _track_chunks(data)
    blobs: list[list[bytes]] = [[], [], [], []]
    warnings = ["header declares more tracks than the file holds"] if missing else []
    budget, ends = config.max_notes, []
    for t, (start, end) in enumerate(chunks):
        try:
            *raw, end_tick, warns = _parse_track(data, start, end, budget, first_track + t)
        except ValueError as e:
            if str(e).startswith("more than"):
                raise MidiError(f"more than {config.max_notes} notes") from None
            raise MidiError(f"track {t + 1}: {e}") from None
        for blob, b in zip(blobs, raw, strict=True):
            blob.append(b)
        budget -= len(raw[0]) // (7 * 8)
        ends.append(end_tick)
        warnings += [f"track {t + 1}: {w}" for w in warns]
    tempos = b"".join(blobs[1])
    return _Raw(fmt, division, [b"".join(b) for b in blobs], len(tempos) // 16, ends, warnings)


def parse(data: bytes, config: LoadConfig = LoadConfig()) -> Piece:
    """Parse the bytes of a MIDI file into a :class:`Piece` (see :func:`load`)."""
    (result,) = parse_many([data], config)
    if isinstance(result, MidiError):
        raise result
    return result


def parse_many(datas: list[bytes], config: LoadConfig = LoadConfig()) -> list[Piece | MidiError]:
    """Parse many MIDI files at once: a Piece, or the MidiError saying why not, for each.

    The note processing (tempo maps, pedal, programs, bounds) runs vectorised over all
    files together, which is what makes bulk ingestion fast; ``parse`` is the one-file case.
    """
    results: list[Piece | MidiError | None] = [None] * len(datas)
    raws: list[tuple[int, _Raw]] = []
    tracks = 0
    for k, data in enumerate(datas):
        try:
            raw = _read_tracks(data, config, tracks)
        except MidiError as e:
            results[k] = e
            continue
        raws.append((k, raw))
        tracks += len(raw.track_end)
    if raws:
        _notes_of(raws, config, results)
    return results  # type: ignore[return-value]


def _notes_of(raws: list[tuple[int, _Raw]], config: LoadConfig, results: list) -> None:
    """Turn the parsed tables of many files into Pieces (or MidiErrors) in ``results``."""
    n, tempos, controls, programs = (
        np.frombuffer(b"".join(r.blobs[i] for _, r in raws), np.int64).reshape(-1, w)
        for i, w in enumerate((7, 2, 4, 4)))
    track_file = np.repeat(np.arange(len(raws)), [len(r.track_end) for _, r in raws])
    track_end = np.array([e for _, r in raws for e in r.track_end], np.int64)
    tempo_file = np.repeat(np.arange(len(raws)), [r.tempo_count for _, r in raws])
    divisions = np.array([r.division for _, r in raws], np.int64)
    # n columns: track, channel, pitch, velocity, start_tick, end_tick, hanging
    n = n[n[:, 5] > n[:, 4]]  # zero-length notes carry no sound (also makes n writable)
    drums = np.zeros(len(raws), np.int64)  # per file: drum notes left out
    if not config.keep_drums:
        drums = np.bincount(track_file[n[n[:, 1] == 9, 0]], minlength=len(raws))
        n = n[n[:, 1] != 9]
    if config.sustain:
        n[:, 5] = np.where(n[:, 1] == 9, n[:, 5], _apply_sustain(n, controls, track_end))
    file = track_file[n[:, 0]]
    to_sec = _tick_to_seconds(*_tempo_segments(divisions, tempo_file, tempos))
    start, end = to_sec(file, n[:, 4]), to_sec(file, n[:, 5])
    end = np.where(n[:, 6] == 1, np.minimum(end, start + config.max_hanging_seconds), end)
    prog = np.zeros(len(n), np.int64)
    if len(programs):
        i = _last_before(n[:, 0] * 16 + n[:, 1], n[:, 4], programs[:, 0] * 16 + programs[:, 1],
                         programs[:, 2])
        prog = np.where(i >= 0, programs[np.maximum(i, 0), 3], 0)
    notes = np.empty(len(n), NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = n[:, 2], n[:, 3]
    notes["start"], notes["end"] = start, end
    notes["program"], notes["is_drum"] = prog, n[:, 1] == 9
    order = np.lexsort((notes["pitch"], notes["start"], file))
    notes, file = notes[order], file[order]
    bounds = np.searchsorted(file, np.arange(len(raws) + 1))
    ends = np.append(notes["end"], 0.0)  # the sentinel keeps reduceat in range
    duration = np.where(bounds[1:] > bounds[:-1], np.maximum.reduceat(ends, bounds[:-1]), 0.0)
    for j, (k, raw) in enumerate(raws):
        if duration[j] > config.max_seconds:
            hours, limit = duration[j] / 3600, config.max_seconds / 3600
            results[k] = MidiError(f"lasts {hours:.1f} hours (limit {limit:g} h)")
            continue
        tpb = 0 if raw.division & 0x8000 else raw.division
        results[k] = Piece(notes[bounds[j] : bounds[j + 1]], float(duration[j]), raw.fmt, tpb,
                           tuple(raw.warnings), int(drums[j]))


SAVE_TICKS_PER_BEAT = 480
SAVE_TEMPO = 480_000  # microseconds per beat: with 480 ticks per beat, one tick is exactly 1 ms


def save(notes, path: str | os.PathLike, *, ticks_per_beat: int = SAVE_TICKS_PER_BEAT,
         tempo: int = SAVE_TEMPO) -> None:
    """Write notes (NOTE_DTYPE array, list of Note, or Piece) as a format-1 Standard MIDI File.

    One track per (program, is_drum) pair, each on its own channel (drums on channel 10);
    at equal times note-offs come before note-ons, so a repeated pitch is re-struck. The
    file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    import mido

    arr = as_note_array(notes)
    to_tick = ticks_per_beat * 1e6 / tempo  # ticks per second
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    mid.tracks.append(meta)
    pairs = zip(arr["program"].tolist(), arr["is_drum"].tolist(), strict=True)
    groups = sorted(set(pairs), key=lambda g: (g[1], g[0]))
    channels = [c for c in range(16) if c != 9]
    melodic = [g for g in groups if not g[1]]
    if len(melodic) > len(channels):
        raise ComposerError(f"{len(melodic)} instruments do not fit in 15 MIDI channels")
    for program, is_drum in groups:
        channel = 9 if is_drum else channels[melodic.index((program, is_drum))]
        sel = arr[(arr["program"] == program) & (arr["is_drum"] == is_drum)]
        on = np.rint(sel["start"] * to_tick).astype(np.int64)
        off = np.maximum(np.rint(sel["end"] * to_tick).astype(np.int64), on + 1)
        ticks = np.concatenate([off, on])
        kinds = np.concatenate([np.zeros(len(sel), int), np.ones(len(sel), int)])  # offs first
        pitches = np.concatenate([sel["pitch"], sel["pitch"]])
        vels = np.concatenate([np.zeros(len(sel), int), np.clip(sel["velocity"], 1, 127)])
        order = np.lexsort((pitches, kinds, ticks))
        track = mido.MidiTrack()
        if not is_drum:
            track.append(mido.Message("program_change", program=program, channel=channel, time=0))
        now = 0
        for i in order:
            kind = "note_on" if kinds[i] else "note_off"
            track.append(mido.Message(kind, note=int(pitches[i]), velocity=int(vels[i]),
                                      channel=channel, time=int(ticks[i] - now)))
            now = int(ticks[i])
        mid.tracks.append(track)
    atomic_write(path, lambda tmp: mid.save(os.fspath(tmp)))


def synthesize(notes: NoteInput, sample_rate: int) -> np.ndarray:
    """Sine-wave audio (samples,) of ``notes`` by pretty_midi's synthesizer, peak-normalised
    to 1 (drums are silent): the fallback of ``composer.render``."""
    import pretty_midi

    arr, pm = as_note_array(notes), pretty_midi.PrettyMIDI()
    for program, is_drum in sorted(set(zip(arr["program"].tolist(), arr["is_drum"].tolist(),
                                           strict=True))):
        inst = pretty_midi.Instrument(program, is_drum=is_drum)
        sel = arr[(arr["program"] == program) & (arr["is_drum"] == is_drum)]
        inst.notes = [pretty_midi.Note(int(v), int(p), float(s), float(e)) for p, v, s, e in
                      zip(sel["pitch"], sel["velocity"], sel["start"], sel["end"], strict=True)]
        pm.instruments.append(inst)
    return pm.synthesize(fs=sample_rate)
