"""MIDI in and out: the only module that touches MIDI parsers (through ``_tracks``) and writers.

``load(path) -> Piece`` reads a Standard MIDI File into composer's own note arrays
(seconds, tempo map applied), with each note's place in beats (quarter notes), the tempo
map and the time signatures beside them; ``save(notes, path)`` writes notes back out.

Beats: a note's start and end in beats are its ticks divided by the file's ticks per
quarter note, exactly (no tempo involved). A never-released note capped at
``max_hanging_seconds`` ends at the beat of its capped end. Under SMPTE time division
(no quarter notes in the file) beats are derived from seconds at 120 bpm, and the tempo map
is that one tempo; ``Piece.ticks_per_beat == 0`` says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from composer.core.config import Config
from composer.core.files import atomic_write, read_regular
from composer.core.messages import ComposerError, MidiError
from composer.midi.instruments import DRUMS_NAME, program_name
from composer.midi.timing import (
    BEAT_DTYPE,
    TIMESIG_DTYPE,
    beats_to_seconds,
    constant_tempo,
    seconds_to_beats,
)
from composer.midi.tracks import (
    RawFile,
    apply_sustain,
    last_before,
    note_order,
    read_tracks,
    tempo_maps,
    tempo_segments,
    tick_to_seconds,
    time_signatures,
)

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


def join_records(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Structured arrays of one dtype (NOTE_DTYPE, BEAT_DTYPE, ...) end to end: what
    ``np.concatenate`` gives, without its per-array promotion of structured dtypes, which
    dominates when there are many small arrays (bulk ingest)."""
    dtype = arrays[0].dtype
    if any(a.dtype != dtype for a in arrays):
        return np.concatenate(arrays)
    raw = np.concatenate([np.ascontiguousarray(a).view(f"V{dtype.itemsize}") for a in arrays])
    return raw.view(dtype)


@dataclass
class Piece:
    """A loaded MIDI file: its notes (NOTE_DTYPE array, sorted by start) and facts about it."""

    notes: np.ndarray
    duration: float  # seconds, end of the last note (0.0 when empty)
    format: int = 1  # SMF format of the source file
    ticks_per_beat: int = 0  # 0 for SMPTE time division
    warnings: tuple[str, ...] = ()  # non-fatal defects that were skipped (malformed meta, ...)
    drums_left_out: int = 0  # drum notes (channel 10) dropped because keep_drums was off
    beats: np.ndarray | None = None  # BEAT_DTYPE, one row per note (None: unknown)
    tempos: np.ndarray = field(default_factory=constant_tempo)  # TEMPO_DTYPE tempo map
    time_signatures: np.ndarray = field(  # TIMESIG_DTYPE, as written in the file
        default_factory=lambda: np.zeros(0, TIMESIG_DTYPE))


def _unison_keys(notes: np.ndarray) -> np.ndarray:
    """(n,) one integer per instrument and key: program, drums and pitch."""
    return (notes["program"].astype(np.int64) * 2 + notes["is_drum"]) * 128 + notes["pitch"]


def max_unison(notes: np.ndarray) -> int:
    """The most notes sounding at once on one key of one instrument (0 without notes);
    a note ending when another starts does not overlap it."""
    if len(notes) == 0:
        return 0
    keys = np.concatenate([_unison_keys(notes)] * 2)
    times = np.concatenate([notes["start"], notes["end"]])
    step = np.r_[np.ones(len(notes), np.int64), -np.ones(len(notes), np.int64)]
    order = np.lexsort((step, times, keys))  # per key in time, ends before starts
    level = np.cumsum(step[order])  # the count of a key's notes is back to 0 at its last end
    return int(level.max())


def merge_unisons(notes: np.ndarray, above: int = 1) -> np.ndarray:
    """``notes`` with each run of overlapping notes on one key of one instrument merged into
    one note spanning them, at their loudest velocity (what one key can sound); ``notes``
    as they are when no key holds more than ``above`` at once (:func:`max_unison`)."""
    if len(notes) < 2 or max_unison(notes) <= above:
        return notes
    keys = _unison_keys(notes)
    order = np.lexsort((notes["start"], keys))
    arr, keys = notes[order], keys[order]
    # the latest end so far within each key: a running max, offset per key so keys never mix
    offset = keys * (float(arr["end"].max()) + 1.0)
    reach = np.maximum.accumulate(offset + arr["end"]) - offset  # (n,)
    new = np.r_[True, (keys[1:] != keys[:-1]) | (arr["start"][1:] >= reach[:-1])]
    starts = np.flatnonzero(new)
    out = arr[starts].copy()
    out["end"] = reach[np.r_[starts[1:], len(arr)] - 1]
    out["velocity"] = np.maximum.reduceat(arr["velocity"], starts)
    return out[np.argsort(out["start"], kind="stable")]


def piece_from_beats(notes: NoteInput, beats: np.ndarray, tempos: np.ndarray | None = None,
                     time_signatures: np.ndarray | None = None) -> Piece:
    """A Piece whose note times are given in beats (BEAT_DTYPE, one row per note); the
    seconds of ``notes`` are replaced by the beats under ``tempos`` (default 120 bpm)."""
    arr = as_note_array(notes).copy()
    beats = np.asarray(beats, dtype=BEAT_DTYPE)
    if beats.shape != arr.shape:
        raise ComposerError(f"{len(beats)} beat rows for {len(arr)} notes")
    tempos = constant_tempo() if tempos is None else tempos
    arr["start"] = beats_to_seconds(beats["start"], tempos)
    arr["end"] = beats_to_seconds(beats["end"], tempos)
    sigs = np.zeros(0, TIMESIG_DTYPE) if time_signatures is None else time_signatures
    duration = float(arr["end"].max()) if len(arr) else 0.0
    return Piece(arr, duration, 1, SAVE_TICKS_PER_BEAT, beats=beats, tempos=tempos,
                 time_signatures=sigs)


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
    if re.fullmatch(r"-?\d+", word):
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
    raws: list[tuple[int, RawFile]] = []
    tracks = 0
    for k, data in enumerate(datas):
        try:
            raw = read_tracks(data, config.max_notes, tracks)
        except MidiError as e:
            results[k] = e
            continue
        raws.append((k, raw))
        tracks += len(raw.track_end)
    if raws:
        _notes_of(raws, config, results)
    return results  # type: ignore[return-value]


def _notes_of(raws: list[tuple[int, RawFile]], config: LoadConfig, results: list) -> None:
    """Turn the parsed tables of many files into Pieces (or MidiErrors) in ``results``."""
    n, tempos, controls, programs = (
        np.frombuffer(b"".join(r.blobs[i] for _, r in raws), np.int64).reshape(-1, w)
        for i, w in enumerate((7, 2, 4, 4)))
    track_file = np.repeat(np.arange(len(raws)), [len(r.track_end) for _, r in raws])
    track_end = np.array([e for _, r in raws for e in r.track_end], np.int64)
    tempo_file = np.repeat(np.arange(len(raws)), [r.tempo_count for _, r in raws])
    divisions = np.array([r.division for _, r in raws], np.int64)
    # n columns: track, channel, pitch, velocity, start_tick, end_tick, hanging
    keep = n[:, 5] > n[:, 4]  # zero-length notes carry no sound
    drums = np.zeros(len(raws), np.int64)  # per file: drum notes left out
    if not config.keep_drums:
        drums = np.bincount(track_file[n[keep & (n[:, 1] == 9), 0]], minlength=len(raws))
        keep &= n[:, 1] != 9
    n = np.compress(keep, n, axis=0)  # a writable copy (faster than n[keep])
    if config.sustain:
        n[:, 5] = np.where(n[:, 1] == 9, n[:, 5], apply_sustain(n, controls, track_end))
    file = track_file[n[:, 0]]
    *segments, seg_us = tempo_segments(divisions, tempo_file, tempos)
    to_sec = tick_to_seconds(*segments)
    start, end = to_sec(file, n[:, 4]), to_sec(file, n[:, 5])
    capped = (n[:, 6] == 1) & (end > start + config.max_hanging_seconds)
    end = np.where(capped, start + config.max_hanging_seconds, end)
    smpte = (divisions & 0x8000) != 0
    tpq = np.where(smpte, 1, divisions).astype(np.float64)  # (files,)
    maps, map_bounds = tempo_maps(segments, seg_us, to_sec, tpq, smpte)
    sigs, sig_bounds = time_signatures(raws, to_sec, tpq, smpte)
    beats = np.empty(len(n), BEAT_DTYPE)
    beats["start"], beats["end"] = n[:, 4] / tpq[file], n[:, 5] / tpq[file]
    at = smpte[file]  # no quarter notes in the file: beats from seconds at 120 bpm
    beats["start"][at] = seconds_to_beats(start[at], constant_tempo())
    beats["end"][at] = seconds_to_beats(end[at], constant_tempo())
    prog = np.zeros(len(n), np.int64)
    if len(programs):
        i = last_before(n[:, 0] * 16 + n[:, 1], n[:, 4], programs[:, 0] * 16 + programs[:, 1],
                         programs[:, 2])
        prog = np.where(i >= 0, programs[np.maximum(i, 0), 3], 0)
    notes = np.empty(len(n), NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = n[:, 2], n[:, 3]
    notes["start"], notes["end"] = start, end
    notes["program"], notes["is_drum"] = prog, n[:, 1] == 9
    order = note_order(file, n[:, 4], notes["start"], n[:, 2])
    # np.take: fancy indexing of a packed record dtype is many times slower
    notes, file, beats, capped = np.take(notes, order), file[order], beats[order], capped[order]
    bounds = np.searchsorted(file, np.arange(len(raws) + 1))
    capped_files = file[capped]  # sorted; not np.unique, whose first call imports numpy.ma
    for j in capped_files[np.diff(capped_files, prepend=-1) > 0].tolist():  # from seconds
        at = np.flatnonzero(capped[bounds[j] : bounds[j + 1]]) + bounds[j]
        tempo_map = maps[map_bounds[j] : map_bounds[j + 1]]
        beats["end"][at] = seconds_to_beats(notes["end"][at], tempo_map)
    ends = np.append(notes["end"], 0.0)  # the sentinel keeps reduceat in range
    duration = np.where(bounds[1:] > bounds[:-1], np.maximum.reduceat(ends, bounds[:-1]), 0.0)
    lasts, at, maps_at, sigs_at, left_out = (  # Python numbers: cheaper to index per file
        a.tolist() for a in (duration, bounds, map_bounds, sig_bounds, drums))
    for j, (k, raw) in enumerate(raws):
        if lasts[j] > config.max_seconds:
            hours, limit = lasts[j] / 3600, config.max_seconds / 3600
            results[k] = MidiError(f"lasts {hours:.1f} hours (limit {limit:g} h)")
            continue
        tpb = 0 if raw.division & 0x8000 else raw.division
        part = slice(at[j], at[j + 1])
        results[k] = Piece(notes[part], lasts[j], raw.fmt, tpb, tuple(raw.warnings),
                           left_out[j], beats=beats[part], tempos=maps[maps_at[j] : maps_at[j + 1]],
                           time_signatures=sigs[sigs_at[j] : sigs_at[j + 1]])


SAVE_TICKS_PER_BEAT = 480
SAVE_TEMPO = 480_000  # microseconds per beat: with 480 ticks per beat, one tick is exactly 1 ms


def save(notes, path: str | os.PathLike, *, ticks_per_beat: int = SAVE_TICKS_PER_BEAT,
         tempo: int = SAVE_TEMPO, replace: bool = True) -> None:
    """Write notes (NOTE_DTYPE array, list of Note, or Piece) as a format-1 Standard MIDI File
    (``replace=False``: FileTaken if ``path`` exists, see :func:`composer.core.files.atomic_write`).

    A Piece that knows its beats (``Piece.beats``, e.g. from :func:`load` or
    :func:`piece_from_beats`) is written on its own clock: its tempo map and time signatures
    become meta events and every note sits at tick = beat * ``ticks_per_beat`` (rounded;
    exact for beats on a grid that divides ``ticks_per_beat``); ``tempo`` is not used. Other
    notes are written from their seconds at ``tempo`` (microseconds per quarter).

    One track per program, and one for all drums, named after its General MIDI instrument (drums:
    ``Drums``), each on its own channel: drums on channel 10 (index 9, no program change),
    the others a program change on channels 1, 2, ... skipping 10 (more than 15 instruments
    share channels, a program change before each of their notes);
    at equal times note-offs come before note-ons, so a repeated pitch is re-struck. The
    file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    import mido

    arr = as_note_array(notes)
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    if isinstance(notes, Piece) and notes.beats is not None:
        note_ticks = np.rint(notes.beats["start"] * ticks_per_beat).astype(np.int64)
        end_ticks = np.rint(notes.beats["end"] * ticks_per_beat).astype(np.int64)
        metas = [(int(np.rint(r["beat"] * ticks_per_beat)),
                  mido.MetaMessage("set_tempo", tempo=int(r["us_per_quarter"])))
                 for r in notes.tempos]
        metas += [(int(np.rint(r["beat"] * ticks_per_beat)),
                   mido.MetaMessage("time_signature", numerator=int(r["numerator"]),
                                    denominator=int(r["denominator"])))
                  for r in notes.time_signatures]
    else:
        to_tick = ticks_per_beat * 1e6 / tempo  # ticks per second
        note_ticks = np.rint(arr["start"] * to_tick).astype(np.int64)
        end_ticks = np.rint(arr["end"] * to_tick).astype(np.int64)
        metas = [(0, mido.MetaMessage("set_tempo", tempo=tempo))]
    meta, now = mido.MidiTrack(), 0
    for tick, msg in sorted(metas, key=lambda m: m[0]):  # stable: tempo first at a tick
        meta.append(msg.copy(time=tick - now))
        now = tick
    mid.tracks.append(meta)
    programs = np.where(arr["is_drum"], 0, arr["program"])  # (n,) one drum part
    pairs = zip(programs.tolist(), arr["is_drum"].tolist(), strict=True)
    groups = sorted(set(pairs), key=lambda g: (g[1], g[0]))
    channels = [c for c in range(16) if c != 9]
    melodic = [g for g in groups if not g[1]]
    for program, is_drum in groups:
        index = 0 if is_drum else melodic.index((program, is_drum))
        channel = 9 if is_drum else channels[index % len(channels)]
        shared = not is_drum and len(melodic) > len(channels)  # 16+ instruments
        mask = (programs == program) & (arr["is_drum"] == is_drum)
        sel, on = arr[mask], note_ticks[mask]
        off = np.maximum(end_ticks[mask], on + 1)
        ticks = np.concatenate([off, on])
        kinds = np.concatenate([np.zeros(len(sel), int), np.ones(len(sel), int)])  # offs first
        pitches = np.concatenate([sel["pitch"], sel["pitch"]])
        vels = np.concatenate([np.zeros(len(sel), int), np.clip(sel["velocity"], 1, 127)])
        order = np.lexsort((pitches, kinds, ticks))
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", time=0,
                                      name=DRUMS_NAME if is_drum else program_name(program)))
        if not is_drum:
            track.append(mido.Message("program_change", program=program, channel=channel, time=0))
        now = 0
        for i in order:
            kind = "note_on" if kinds[i] else "note_off"
            if shared and kinds[i]:  # channels are shared: each note names its program
                track.append(mido.Message("program_change", program=program, channel=channel,
                                          time=int(ticks[i] - now)))
                now = int(ticks[i])
            track.append(mido.Message(kind, note=int(pitches[i]), velocity=int(vels[i]),
                                      channel=channel, time=int(ticks[i] - now)))
            now = int(ticks[i])
        mid.tracks.append(track)
    atomic_write(path, lambda tmp: mid.save(os.fspath(tmp)), replace=replace)


def synthesize(notes: NoteInput, sample_rate: int) -> np.ndarray:
    """Sine-wave audio (samples,) of ``notes`` by pretty_midi's synthesizer, peak-normalised
    to 1 (drums are silent): the fallback of ``composer.midi.render``."""
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
