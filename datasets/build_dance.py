"""Build the bundled dance corpus (``datasets/dance/``): fiddle tunes with bass and drums.

The tunes come from *Ryan's Mammoth Collection* (William Bradbury Ryan, Boston: Elias Howe,
1883; public domain), which music21 ships as ABC files (``corpus/ryansMammoth/``, one tune a
file, transcribed by volunteers: Ray Davies, Bob Puckette, John Walsh, John Chambers and
others). It is the largest dance-tune source in music21's corpus besides O'Neill's collection
(already ``datasets/irish-folk/``): reels, jigs, hornpipes, strathspeys, clogs, flings and slip
jigs. It has no polkas or waltzes, and no other collection in the corpus has them in numbers.

**The bass and the drums are not in the source: this script makes them up, by the fixed rules
below.** Only the melody is the tune as transcribed. Every file has three tracks (and a
conductor track): the tune on Violin (program 40, channel 1), a bass on Acoustic Bass
(program 32, channel 2) and a General MIDI drum kit on channel 10.

- **Selection:** a tune's kind is its ``R:`` line (files without one are skipped). Within each
  kind, in file-name order, ``max(--min-per-kind, round(n / --every))`` tunes are taken,
  evenly spaced (all of them when a kind has fewer). Tunes that change meter are skipped.
- **Tempo:** in 6/8, 9/8 and 12/8, 116 dotted quarters a minute (slides 130); in simple
  meters a fixed number of bars per minute per kind (:data:`BARS_PER_MINUTE`, e.g. reels 56,
  hornpipes and clogs 42, strathspeys 32), so the 2/4 and cut-time notations of one kind play
  at the same speed (a 2/4 reel at quarter = 112, a C| reel at half = 112). Tempo marks
  (``Q:``, in 5 of the 1,059 files) are ignored.
- **Bars:** the measures as music21 reads them, with the repeats expanded (AABB, as the
  tunes are danced; where music21 cannot expand a tune's repeats, they are written once, as
  notated, and the build says so). A short
  measure that opens the tune, or follows another short measure (a section's last bar, then
  the next section's pickup), is a pickup: its beats are counted back from its end. Other short
  measures are counted from their start.
- **Harmony:** each bar, or each half bar in 4-pulse meters (C, C|, 12/8), gets one chord: of
  the triads on degrees I, V, IV (and VII where that triad is major: minor and modal keys) of
  the tune's key (``K:``), the one whose tones cover the most of the melody's duration in that
  span, notes starting on the span's first beat counting double (ties: that order). The last
  span is the tonic.
- **Bass:** on each pulse (quarter in simple meters, dotted quarter in compound ones), the
  chord's root (MIDI 36-47) on the first pulse of a chord, its fifth on the others.
- **Drums** (GM: 36 kick, 38 snare, 37 side stick, 42 closed hi-hat, 49 crash), by meter:
  6/8 and 9/8: kick on every dotted-quarter beat (1 and 4 in 6/8), side stick on each beat's
  third eighth, hi-hat on every eighth; 12/8: kick on beats 1 and 3, snare on 2 and 4, hi-hat
  on eighths; 2/4, C and C| (counted in quarters): kick on odd quarters, snare on even ones
  (2/4: kick 1, snare 2), hi-hat on every eighth; 3/4: kick 1, snare 2 and 3, hi-hat on
  quarters; any other meter: kick on 1, hi-hat on quarters. A crash on the first full bar.
- **Melody:** the tune's notes and chords (double stops), ties merged. Grace notes have no
  duration in music21 and are left out.

Files are written with mido (480 ticks per quarter) to ``<out>/<ABC file name>.mid`` and read
back with :func:`composer.midi.load`: melodic notes on programs 40 and 32 only, and drum notes
on channel 10 (which ``load`` leaves out by default and counts). The script is deterministic
(fixed file order, no randomness).

Usage::

    python datasets/build_dance.py [--out DIR] [--every N] [--min-per-kind N] [--limit N]
"""

from __future__ import annotations

import argparse
import re
import sys
from fractions import Fraction
from pathlib import Path

import mido
from music21 import corpus, key, meter, repeat, stream

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # composer, from the source tree

from composer.midi import load  # noqa: E402

TPQ = 480
MELODY, BASS = 40, 32  # Violin, Acoustic Bass
KICK, SIDE_STICK, SNARE, HIHAT, CRASH = 36, 37, 38, 42, 49
BARS_PER_MINUTE = {"reel": 56, "jig": 58, "hornpipe": 42, "clog": 42, "strathspey": 32,
                   "fling": 36, "slip jig": 39, "slide": 33, "walkaround": 50}  # simple meters
DOTTED_QUARTERS_PER_MINUTE = {"slide": 130}  # compound meters (6/8, 9/8, 12/8); others 116
KINDS = {"highland fling": "fling", "slipjig": "slip jig"}  # R: spellings -> kind
_RHYTHM = re.compile(r"^R:\s*(.+?)\s*$", re.MULTILINE)


def select_tunes(every: int, min_per_kind: int) -> tuple[list[tuple[Path, str]], list[str]]:
    """The (ABC file, kind) pairs to build, and a skip message per file without a kind."""
    by_kind: dict[str, list[Path]] = {}
    skipped = []
    for path in sorted(Path(p) for p in corpus.getComposer("ryansMammoth")):
        found = _RHYTHM.search(path.read_text(errors="replace"))
        kind = KINDS.get(found.group(1).lower(), found.group(1).lower()) if found else None
        if kind not in BARS_PER_MINUTE:
            skipped.append(f"skip {path.name}: no known dance kind (R: {kind})")
            continue
        by_kind.setdefault(kind, []).append(path)
    chosen = []
    for kind, paths in sorted(by_kind.items()):
        k = min(len(paths), max(min_per_kind, round(len(paths) / every)))
        chosen += [(paths[i * len(paths) // k], kind) for i in range(k)]
    return sorted(chosen), skipped


def bars(part: stream.Part, bar: Fraction) -> list[tuple[Fraction, Fraction, Fraction]]:
    """(bar start, first and end offset of its music) per measure; see the module docstring."""
    result = []
    previous_short = True  # the first measure, if short, is a pickup
    for m in part.getElementsByClass(stream.Measure):
        start, length = Fraction(m.offset), Fraction(m.highestTime)
        if length == 0:
            continue
        short = length < bar
        pickup = short and (previous_short or m.paddingLeft > 0)
        result.append((start + length - bar if pickup else start, start, start + length))
        previous_short = short
    return result


def drum_pattern(ts: meter.TimeSignature) -> list[tuple[Fraction, int, int]]:
    """(offset in the bar, GM drum key, velocity) for one bar of this meter."""
    n, d = ts.numerator, ts.denominator
    eighth, quarter = Fraction(1, 2), Fraction(1)
    hits = []
    if d == 8 and n in (6, 9):
        for beat in range(n // 3):
            at = beat * 3 * eighth
            hits += [(at, KICK, 100), (at + 2 * eighth, SIDE_STICK, 70)]
        hits += [(i * eighth, HIHAT, 80 if i % 3 == 0 else 60) for i in range(n)]
    elif d == 8 and n == 12:
        hits += [(b * 3 * eighth, KICK if b % 2 == 0 else SNARE, 100 if b % 2 == 0 else 90)
                  for b in range(4)]
        hits += [(i * eighth, HIHAT, 80 if i % 3 == 0 else 60) for i in range(12)]
    elif Fraction(n, d) in (Fraction(2, 4), Fraction(4, 4)):  # 2/4, C, C| (2/2)
        quarters = int(Fraction(n, d) * 4)
        hits += [(q * quarter, KICK if q % 2 == 0 else SNARE, 100 if q % 2 == 0 else 90)
                  for q in range(quarters)]
        hits += [(i * eighth, HIHAT, 80 if i % 2 == 0 else 60) for i in range(2 * quarters)]
    elif (n, d) == (3, 4):
        hits += [(0, KICK, 100), (quarter, SNARE, 70), (2 * quarter, SNARE, 70)]
        hits += [(q * quarter, HIHAT, 70) for q in range(3)]
    else:
        hits += [(0, KICK, 100)]
        hits += [(q * quarter, HIHAT, 70) for q in range(int(Fraction(n, d) * 4))]
    return sorted(hits)


def pulses(ts: meter.TimeSignature) -> tuple[Fraction, int]:
    """The bass pulse (quarter lengths) and how many pulses a chord lasts."""
    compound = ts.denominator == 8 and ts.numerator % 3 == 0
    pulse = Fraction(3, 2) if compound else Fraction(4, ts.denominator)
    if not compound and ts.denominator == 2:
        pulse = Fraction(1)  # cut time counted in quarters
    per_bar = int(Fraction(ts.barDuration.quarterLength) / pulse)
    return pulse, (per_bar // 2 if per_bar == 4 else per_bar)


def chords_of(k: key.Key) -> list[tuple[int, set[int]]]:
    """(root pitch class, triad pitch classes) for I, V, IV and (if a major triad) VII."""
    pcs = [p.pitchClass for p in k.getPitches()[:7]]
    triads = []
    for degree in (0, 4, 3, 6):
        triad = [pcs[degree], pcs[(degree + 2) % 7], pcs[(degree + 4) % 7]]
        if degree == 6 and (triad[1] - triad[0]) % 12 != 4:
            continue
        triads.append((triad[0], set(triad)))
    return triads


def choose_chord(melody: list[tuple[Fraction, Fraction, int]], start: Fraction, end: Fraction,
                 candidates: list[tuple[int, set[int]]]) -> int:
    """The root of the candidate whose tones cover most of the melody in [start, end)."""
    def score(tones: set[int]) -> Fraction:
        total = Fraction(0)
        for on, off, pitch in melody:
            overlap = min(off, end) - max(on, start)
            if overlap > 0 and pitch % 12 in tones:
                total += overlap * (2 if on == start else 1)
        return total
    best = max(range(len(candidates)), key=lambda i: (score(candidates[i][1]), -i))
    return candidates[best][0]


def arrange(source: Path, kind: str) -> tuple[dict, str]:
    """The notes of one tune with its bass and drums: {channel: [(on, off, pitch, velocity)]},
    and its title; raises ValueError with a reason when the tune cannot be arranged."""
    score = corpus.parse(str(source))
    part, repeats = score.parts[0], "repeats expanded"
    try:
        part = part.expandRepeats()
    except repeat.ExpanderException:
        repeats = "repeats as notated (music21 cannot expand them)"
    signatures = list(part.recurse().getElementsByClass(meter.TimeSignature))
    if len({ts.ratioString for ts in signatures}) != 1:
        raise ValueError(f"meter changes or is missing ({[ts.ratioString for ts in signatures]})")
    ts = signatures[0]
    keys = list(part.recurse().getElementsByClass(key.KeySignature))
    if not keys:
        raise ValueError("no key")
    k = keys[0] if isinstance(keys[0], key.Key) else keys[0].asKey("major")
    melody = []
    for element in part.flatten().stripTies().notes:
        on, length = Fraction(element.offset), Fraction(element.quarterLength)
        if length > 0:  # grace notes have no duration
            melody += [(on, on + length, p.midi) for p in element.pitches]
    if not melody:
        raise ValueError("no notes")
    end = max(off for _, off, _ in melody)
    bar = Fraction(ts.barDuration.quarterLength)
    pulse, per_chord = pulses(ts)
    pattern = drum_pattern(ts)
    candidates = chords_of(k)
    tonic = k.tonic.pitchClass
    bass, drums, crashed = [], [], False
    layout = bars(part, bar)
    for index, (bar_start, first, last) in enumerate(layout):
        for at, drum, velocity in pattern:
            t = bar_start + at
            if first <= t < min(last, end):
                drums.append((t, t + Fraction(1, 4), drum, velocity))
        if not crashed and first == bar_start:
            drums.append((first, first + Fraction(1, 4), CRASH, 100))
            crashed = True
        span = pulse * per_chord
        for s in range(int(bar / span)):
            span_start = bar_start + s * span
            beats = [span_start + i * pulse for i in range(per_chord)]
            beats = [b for b in beats if first <= b < min(last, end)]
            if not beats:
                continue
            final = index == len(layout) - 1 and s == int(bar / span) - 1
            root = tonic if final else choose_chord(melody, span_start, span_start + span,
                                                    candidates)
            for b in beats:
                pitch = 36 + root + (7 if b != span_start else 0)
                off = min(b + pulse * Fraction(9, 10), end)
                bass.append((b, off, pitch, 80))
    notes = {0: [(on, off, p, 90) for on, off, p in melody], 1: bass, 9: drums}
    title = score.metadata.title if score.metadata and score.metadata.title else source.stem
    if ts.denominator == 8 and ts.numerator % 3 == 0:
        bpm = 1.5 * DOTTED_QUARTERS_PER_MINUTE.get(kind, 116)
    else:
        bpm = BARS_PER_MINUTE[kind] * float(bar)
    return {"notes": notes, "ts": ts, "bpm": bpm, "title": title, "repeats": repeats}, kind


def write(tune: dict, out: Path) -> None:
    """Write a type-1 MIDI file: conductor, melody, bass and drum tracks."""
    ts = tune["ts"]
    conductor = mido.MidiTrack([
        mido.MetaMessage("track_name", name=tune["title"], time=0),
        mido.MetaMessage("time_signature", numerator=ts.numerator,
                         denominator=ts.denominator, time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tune["bpm"]), time=0),
    ])
    midi = mido.MidiFile(type=1, ticks_per_beat=TPQ)
    midi.tracks.append(conductor)
    for channel, name, program in ((0, "Violin", MELODY), (1, "Acoustic Bass", BASS),
                                   (9, "Drums", None)):
        events = []
        for on, off, pitch, velocity in tune["notes"][channel]:
            events.append((round(on * TPQ), 1, pitch, velocity))
            events.append((round(off * TPQ), 0, pitch, 0))  # offs before ons at one tick
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
        if program is not None:
            track.append(mido.Message("program_change", channel=channel, program=program))
        now = 0
        for tick, is_on, pitch, velocity in sorted(events):
            kind = "note_on" if is_on else "note_off"
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=velocity,
                                      time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(out)


def convert(source: Path, kind: str, out: Path) -> str:
    """Arrange and write one tune; returns a one-line report."""
    try:
        tune, kind = arrange(source, kind)
    except ValueError as e:
        return f"skip {source.name}: {e}"
    write(tune, out)
    piece = load(out)
    programs = sorted(set(piece.notes["program"].tolist()))
    drums = len(tune["notes"][9])
    if programs != sorted({MELODY, BASS}) or piece.drums_left_out != drums:
        out.unlink()
        return (f"skip {source.name}: read back programs {programs}, "
                f"{piece.drums_left_out} drum notes (wrote {drums})")
    return (f"{out.name}: {kind}, {tune['ts'].ratioString}, {tune['bpm']:.0f} bpm, "
            f"{len(piece.notes)} notes + {drums} drum notes, {piece.duration:.0f} s, "
            f"{tune['repeats']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "dance")
    ap.add_argument("--every", type=int, default=12,
                    help="take about one tune in N of each kind (default: 12)")
    ap.add_argument("--min-per-kind", type=int, default=6,
                    help="but at least this many of each kind (default: 6)")
    ap.add_argument("--limit", type=int, help="Convert at most this many tunes.")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chosen, skipped = select_tunes(max(1, args.every), args.min_per_kind)
    for message in skipped:
        print(message)
    for source, kind in chosen[: args.limit]:
        try:
            print(convert(source, kind, args.out / f"{source.stem}.mid"), flush=True)
        except Exception as e:  # noqa: BLE001 (one bad tune must not stop the build)
            print(f"skip {source.name}: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
