"""MIDI files as named parts: each track (and channel) a voice with its notes in beats.

:mod:`composer.midi.io` reads a file into one note array by instrument, which is what the
performance models learn from; the harmonizer needs the parts themselves (Soprano, Alto,
Tenor, Bass as the chorales name their tracks, or a tune's melody track), so
:func:`load_parts` keeps one :class:`Part` per track and channel with the track's name, and
:func:`save_parts` writes parts back as one named track each, with the meter, tempo and key
signature in a conductor track. Times are in beats (quarter notes), exact ticks / division.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from composer.core.files import atomic_write
from composer.core.messages import MidiError
from composer.midi.io import LoadConfig, read_bytes
from composer.midi.timing import DEFAULT_US_PER_QUARTER

# One row per note of a part, in beats (quarter notes from the start of the file).
PART_DTYPE = np.dtype([("pitch", np.int16), ("velocity", np.int16),
                       ("start", np.float64), ("end", np.float64)])
PART_TICKS = 480  # ticks per beat of written files: exact for grids of 2, 3, 4, 6, 8, 12, 16


@dataclass
class Part:
    """One voice: its name, General MIDI program and notes (PART_DTYPE, sorted by start)."""

    name: str
    notes: np.ndarray
    program: int = 0


@dataclass
class PartScore:
    """Named parts sharing one clock: meter, tempo (microseconds per beat) and key."""

    parts: list[Part]
    meter: tuple[int, int] = (4, 4)  # the first time signature (numerator, denominator)
    tempo: int = DEFAULT_US_PER_QUARTER
    key: int | None = None  # sharps (> 0) or flats (< 0) of the key signature, None: unknown
    minor: bool = False

    @property
    def beats_per_bar(self) -> float:
        """Quarter notes per bar under :attr:`meter`."""
        return self.meter[0] * 4 / self.meter[1]

    @property
    def end(self) -> float:
        """The beat at which the last note of any part ends (0 without notes)."""
        return max((float(p.notes["end"].max()) for p in self.parts if len(p.notes)), default=0.0)


def load_parts(path: str | os.PathLike, config: LoadConfig = LoadConfig()) -> PartScore:
    """The parts of a Standard MIDI File: one per track and channel that has notes, named
    after the track (else ``Part N``); drums (channel 10) are left out. MidiError with a
    one-line reason when the file cannot be read."""
    import mido

    data = read_bytes(path, config)
    try:
        mid = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise MidiError(f"{os.fspath(path)}: not a readable MIDI file ({e})"[:300]) from None
    if mid.type == 2:
        raise MidiError("format 2 (independent sequences) is not supported")
    tpq = float(mid.ticks_per_beat or 480)
    score = PartScore([])
    metas: dict[str, tuple[int, object]] = {}
    groups: dict[tuple[int, int], dict] = {}
    for t, track in enumerate(mid.tracks):
        now, name, held = 0, None, {}
        for msg in track:
            now += msg.time
            if msg.type == "track_name" and name is None:
                name = msg.name.strip()
            elif msg.type in ("time_signature", "set_tempo", "key_signature"):
                if msg.type not in metas or now < metas[msg.type][0]:
                    metas[msg.type] = (now, msg)
            elif msg.type in ("note_on", "note_off") and msg.channel != 9:
                group = groups.setdefault((t, msg.channel), {"rows": [], "program": None})
                key = msg.note
                if key in held:  # a note-off, or a re-strike that ends the sounding note
                    on, vel = held.pop(key)
                    if now > on:
                        group["rows"].append((key, vel, on / tpq, now / tpq))
                if msg.type == "note_on" and msg.velocity > 0:
                    held[key] = (now, msg.velocity)
            elif msg.type == "program_change" and msg.channel != 9:
                group = groups.setdefault((t, msg.channel), {"rows": [], "program": None})
                if group["program"] is None:
                    group["program"] = msg.program
        for (tt, _ch), group in groups.items():
            if tt == t:
                group.setdefault("name", name)
    for n, ((t, ch), group) in enumerate(sorted(groups.items())):
        if not group["rows"]:
            continue
        rows = sorted(group["rows"], key=lambda r: (r[2], -r[0]))
        multi = sum(1 for (tt, _) in groups if tt == t) > 1
        name = group.get("name") or f"Part {n + 1}"
        score.parts.append(Part(f"{name} ({ch + 1})" if multi else name,
                                np.array(rows, PART_DTYPE), group["program"] or 0))
    if "time_signature" in metas:
        msg = metas["time_signature"][1]
        score.meter = (int(msg.numerator), int(msg.denominator))  # type: ignore[attr-defined]
    if "set_tempo" in metas:
        score.tempo = int(metas["set_tempo"][1].tempo)  # type: ignore[attr-defined]
    if "key_signature" in metas:
        score.key, score.minor = key_of_name(metas["key_signature"][1].key)  # type: ignore
    return score


_SHARPS = {"Cb": -7, "Gb": -6, "Db": -5, "Ab": -4, "Eb": -3, "Bb": -2, "F": -1, "C": 0,
           "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7}


def key_of_name(name: str) -> tuple[int, bool]:
    """(sharps, minor) of a mido key name such as ``"G"`` or ``"Em"``."""
    minor = name.endswith("m")
    tonic = name[:-1] if minor else name
    major_of = {"A": "C", "E": "G", "B": "D", "F#": "A", "C#": "E", "G#": "B", "D#": "F#",
                "A#": "C#", "D": "F", "G": "Bb", "C": "Eb", "F": "Ab", "Bb": "Db", "Eb": "Gb",
                "Ab": "Cb"}
    sharps = _SHARPS.get(major_of.get(tonic, "C") if minor else tonic, 0)
    return sharps, minor


def key_name(sharps: int, minor: bool) -> str:
    """The mido key name of a key signature: ``key_name(1, False) == "G"``."""
    majors = {v: k for k, v in _SHARPS.items()}
    relative = {-7: "Ab", -6: "Eb", -5: "Bb", -4: "F", -3: "C", -2: "G", -1: "D", 0: "A",
                1: "E", 2: "B", 3: "F#", 4: "C#", 5: "G#", 6: "D#", 7: "A#"}
    return relative[sharps] + "m" if minor else majors[sharps]


def save_parts(score: PartScore, path: str | os.PathLike) -> None:
    """Write ``score`` as a format-1 file: a conductor track (tempo, meter, key signature)
    and one named track per part on its own channel (channel 10 skipped), at PART_TICKS
    ticks per beat; written to a temporary name and renamed."""
    import mido

    if len(score.parts) > 15:
        raise MidiError(f"{len(score.parts)} parts: at most 15 fit in a file's channels")
    mid = mido.MidiFile(type=1, ticks_per_beat=PART_TICKS)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("set_tempo", tempo=int(score.tempo), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=score.meter[0],
                                      denominator=score.meter[1], time=0))
    if score.key is not None:
        conductor.append(mido.MetaMessage("key_signature", key=key_name(score.key, score.minor),
                                          time=0))
    mid.tracks.append(conductor)
    channels = [c for c in range(16) if c != 9]
    for part, channel in zip(score.parts, channels, strict=False):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=part.name, time=0))
        track.append(mido.Message("program_change", program=part.program, channel=channel,
                                  time=0))
        on = np.rint(part.notes["start"] * PART_TICKS).astype(np.int64)
        off = np.maximum(np.rint(part.notes["end"] * PART_TICKS).astype(np.int64), on + 1)
        events = sorted([(int(t), 0, int(p), 0) for t, p in zip(off, part.notes["pitch"],
                                                                 strict=True)]
                        + [(int(t), 1, int(p), int(np.clip(v, 1, 127))) for t, p, v in
                           zip(on, part.notes["pitch"], part.notes["velocity"], strict=True)])
        now = 0
        for tick, kind, pitch, vel in events:  # at one tick, offs before ons: re-strikes
            track.append(mido.Message("note_on" if kind else "note_off", note=pitch,
                                      velocity=vel, channel=channel, time=tick - now))
            now = tick
        mid.tracks.append(track)
    atomic_write(path, lambda tmp: mid.save(os.fspath(tmp)))
