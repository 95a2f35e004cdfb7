"""Harmonize a melody and infill a span: from inputs to scores and files.

:func:`harmonize` writes the other voices under a melody, :func:`infill` rewrites bars of
a piece with parts; both return :class:`PartScore` results that keep the given notes exactly
(the melody as read; every note of an infilled piece not wholly inside the span) and add the
written voices on the grid. :func:`write_scores` saves them as MIDI (one named track per
voice) and, if asked, MusicXML, never over an existing file without ``force`` and never over
the input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from composer.harmony.config import HarmonyError, HarmonySampleConfig
from composer.harmony.grid import from_grid, match_voices
from composer.harmony.melody import infer_key, key_signature, parse_key
from composer.harmony.model import HarmonyNet
from composer.harmony.sample import gibbs, harmonize_grid, infill_grid, inside
from composer.midi.parts import PART_DTYPE, Part, PartScore

MELODY_SLACK = 2  # semitones a melody may reach past a voice's range in the corpus


def pitch_name(pitch: int) -> str:
    """``"A5"`` for 81."""
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


def voice_index(voices: Sequence[str], name: str) -> int:
    """The index of the voice ``name`` (case-insensitive, a unique prefix will do)."""
    found = [i for i, v in enumerate(voices) if v.lower().startswith(name.strip().lower())]
    if len(found) != 1 or not name.strip():
        raise HarmonyError(f"{name!r} is not one of the model's voices ({', '.join(voices)})")
    return found[0]


def melody_voice(model: HarmonyNet, melody: np.ndarray, name: str | None) -> int:
    """The voice that sings ``melody``: ``name``, else the highest whose range holds it."""
    lo, hi = int(melody["pitch"].min()), int(melody["pitch"].max())
    ranges, voices = model.config.ranges, model.config.voices
    fits = [i for i, (a, b) in enumerate(ranges) if a - MELODY_SLACK <= lo and hi <= b +
            MELODY_SLACK]
    if name is not None:
        i = voice_index(voices, name)
        if i not in fits:
            a, b = ranges[i]
            raise HarmonyError(f"the melody ({pitch_name(lo)}-{pitch_name(hi)}) leaves the "
                               f"{voices[i]}'s range ({pitch_name(a)}-{pitch_name(b)}); "
                               "shift it with --transpose")
        return i
    if not fits:
        shown = ", ".join(f"{v} {pitch_name(a)}-{pitch_name(b)}" for v, (a, b) in
                          zip(voices, ranges, strict=True))
        raise HarmonyError(f"the melody ({pitch_name(lo)}-{pitch_name(hi)}) lies outside every "
                           f"voice's range ({shown}); shift it with --transpose")
    return fits[0]


def harmonize(model: HarmonyNet, melody: np.ndarray, config: HarmonySampleConfig, *,
              num: int = 1, voices: Sequence[str] | None = None, melody_name: str | None = None,
              key: str | None = None, transpose: int = 0, meter: tuple[int, int] = (4, 4),
              tempo: int = 500_000) -> list[PartScore]:
    """``num`` scores: the melody (as given, moved by ``transpose``) and the ``voices``
    written under it (default: every other voice of the model), top to bottom."""
    if len(melody) == 0:
        raise HarmonyError("the melody has no notes")
    melody = melody.copy()
    melody["pitch"] = melody["pitch"] + transpose
    if melody["pitch"].min() < 0 or melody["pitch"].max() > 127:
        raise HarmonyError("--transpose moves the melody outside MIDI's 0..127")
    names = model.config.voices
    sung = melody_voice(model, melody, melody_name)
    wanted = set(range(len(names))) - {sung} if not voices else {
        voice_index(names, v) for v in voices}
    if sung in wanted:
        raise HarmonyError(f"the melody is the {names[sung]}; --voices names the voices to add")
    tonic, minor = parse_key(key) if key else infer_key(melody)
    spb = model.config.steps_per_beat
    grid, free = harmonize_grid(melody, sung, len(names), spb)
    bar = max(1, round(meter[0] * 4 / meter[1]))
    grids = gibbs(model, grid, free, config, num, bar)
    scores = []
    for g in grids:
        parts = [Part(names[v], melody if v == sung else from_grid(g[v], spb))
                 for v in range(len(names)) if v == sung or v in wanted]
        scores.append(PartScore(parts, meter, tempo, key_signature(tonic, minor), minor))
    return scores


def bar_span(score: PartScore, first: int, last: int) -> tuple[float, float]:
    """Beats [start, end) of bars ``first``..``last`` (1-based, inclusive; bar 1 starts at
    beat 0 and every bar lasts the first time signature's length)."""
    bpb = score.beats_per_bar
    bars = int(np.ceil(score.end / bpb - 1e-9))
    if first < 1 or last < 1:
        raise HarmonyError("bars are numbered from 1")
    if first > last:
        raise HarmonyError(f"the span is reversed (--from {first} is after --to {last})")
    if first > bars:
        raise HarmonyError(f"the span is empty: bar {first} is past the piece's end "
                           f"({bars} bars)")
    return (first - 1) * bpb, min(last, bars) * bpb


def infill(model: HarmonyNet, score: PartScore, first: int, last: int,
           config: HarmonySampleConfig, *, num: int = 1, voices: Sequence[str] | None = None
           ) -> list[PartScore]:
    """``num`` copies of ``score`` with bars ``first``..``last`` of ``voices`` (default all)
    rewritten; every note not wholly inside the span is kept exactly."""
    names = model.config.voices
    parts = match_voices(score, names)
    start, end = bar_span(score, first, last)
    chosen = sorted({voice_index(names, v) for v in voices} if voices else range(len(names)))
    spb = model.config.steps_per_beat
    grid, free = infill_grid([p.notes for p in parts], start, end, chosen, spb)
    bar = max(1, round(score.beats_per_bar))
    results = []
    for g in gibbs(model, grid, free, config, num, bar):
        new = {}
        for v in chosen:
            old = parts[v].notes
            kept = old[~inside(old, start, end)]
            written = from_grid(g[v], spb, keep=free[v])
            both = np.concatenate([kept, written]).astype(PART_DTYPE)
            new[id(parts[v])] = both[np.argsort(both["start"], kind="stable")]
        results.append(PartScore([Part(p.name, new.get(id(p), p.notes), p.program)
                                  for p in score.parts], score.meter, score.tempo, score.key,
                                 score.minor))
    return results


def output_paths(out: Path, num: int, musicxml: bool) -> list[list[Path]]:
    """For each result, the files to write: ``out`` (``OUT-1.mid``... when ``num`` > 1) and
    its ``.musicxml`` twin."""
    stems = [out] if num == 1 else [out.with_name(f"{out.stem}-{i + 1}{out.suffix}")
                                    for i in range(num)]
    return [[s] + ([s.with_suffix(".musicxml")] if musicxml else []) for s in stems]


def write_scores(scores: Sequence[PartScore], out: str | os.PathLike, *, musicxml: bool = False,
                 force: bool = False, inputs: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Save ``scores`` (see :func:`output_paths`); HarmonyError before writing anything if a
    file exists (without ``force``) or is one of the ``inputs``."""
    from composer.harmony.musicxml import music21_module, write_musicxml
    from composer.midi.parts import save_parts

    out = Path(out)
    if out.suffix.lower() not in (".mid", ".midi"):
        raise HarmonyError(f"{out}: the output must be a .mid file")
    paths = output_paths(out, len(scores), musicxml)
    if musicxml:
        music21_module()
    given = {Path(p).resolve() for p in inputs if p}
    for path in (p for group in paths for p in group):
        if path.resolve() in given:
            raise HarmonyError(f"{path}: is the input; choose another --out")
        if path.exists() and not force:
            raise HarmonyError(f"{path}: exists; pass --force to replace it")
        if path.is_dir():
            raise HarmonyError(f"{path}: is a folder")
    for score, group in zip(scores, paths, strict=True):
        save_parts(score, group[0])
        if musicxml:
            write_musicxml(score, group[1])
    return [p for group in paths for p in group]

