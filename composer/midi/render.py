"""Hear it, see it: MIDI to audio, piano-roll pictures, and the reports of the metrics.

- :func:`render`: a 44.1 kHz 16-bit WAV through the ``fluidsynth`` program and a General MIDI
  soundfont. Where FluidSynth or a soundfont is missing, or FluidSynth fails, hangs or
  renders silence, it says so in one line (``RenderResult.notice``, logged at INFO) and
  falls back to sine waves (mono, :func:`composer.midi.io.synthesize`) instead of failing.
  What it renders is bounded before FluidSynth runs: pieces over ``RenderConfig.max_seconds``
  or ``max_notes`` are refused in one line; a stack of notes on one key of one instrument
  (:func:`composer.midi.io.max_unison`, which makes FluidSynth write without end) is rendered
  from a copy with each stack merged into one note (:func:`composer.midi.io.merge_unisons`);
  and FluidSynth is stopped when its WAV grows past what the piece's length can need, or it
  runs past its time. The audio is the music's length capped at ``RenderConfig.seconds``
  (10 minutes; a user raises it up to :data:`composer.core.bounds.RENDER_SECONDS`, an hour):
  a longer piece renders its first part, said in one line (``RenderResult.notice``), so a
  tiny file holding one note at 59 minutes does not become a 600 MB WAV.
- Outputs follow :func:`composer.core.files.check_output`: never the input, and an existing
  file only with ``force``.
- :func:`plot_piano_roll`: time x pitch, velocity as colour, a seed part shaded.
- :func:`plot_distributions`: the distance densities of
  :func:`composer.evaluation.musicstats.compare_sets` (the terminal tables are in
  :mod:`composer.cli.report`, beside the CLI).

Pictures use matplotlib's Agg canvas directly (no pyplot, no display needed).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from composer.core.bounds import MAX_UNISON, RENDER_SECONDS
from composer.core.config import Config
from composer.core.files import atomic_write, check_output
from composer.core.messages import ComposerError
from composer.midi.instruments import program_name
from composer.midi.io import (
    LoadConfig,
    NoteInput,
    Piece,
    as_note_array,
    load,
    merge_unisons,
    save,
    synthesize,
)

log = logging.getLogger(__name__)

# Where a General MIDI soundfont is looked for, in order, when none is given: the
# COMPOSER_SOUNDFONT environment variable, then these standard install locations.
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian/Ubuntu: fluid-soundfont-gm
    "/usr/share/sounds/sf2/default-GM.sf2",  # Debian/Ubuntu: the default GM alternative
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora fluid-soundfont-gm, Arch soundfont-fluid
    "/usr/share/soundfonts/default.sf2",  # Fedora/Arch default link
    "/usr/share/sounds/sf2/TimGM6mb.sf2",  # Debian/Ubuntu: timgm6mb-soundfont
    "/usr/share/sounds/sf3/default-GM.sf3",  # Debian/Ubuntu: compressed GM soundfonts
)
INSTALL_HINT = "apt-get install fluidsynth fluid-soundfont-gm"
SILENT = "the piece has no notes: the audio is silence"  # RenderResult.notice of one
WATCH_SECONDS = 0.05  # how often FluidSynth's output size is checked while it runs
SILENCE_RMS = 1e-4  # audio quieter than this (of full scale) counts as silent
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class RenderError(ComposerError):
    """A file cannot be rendered or drawn (no notes, a --soundfont that is not a soundfont)."""


@dataclass(frozen=True)
class RenderConfig(Config):
    """How :func:`render` makes audio."""

    _error = RenderError
    _name = "render settings"

    sample_rate: int = 44100  # Hz
    gain: float = 0.8  # FluidSynth master gain; peak level of the sine fallback
    timeout_seconds: float = 60.0  # FluidSynth is stopped after this plus the piece's length
    fluidsynth: str = "fluidsynth"  # the program to run
    # Bounds checked on the notes before anything is rendered (a user raises them on purpose):
    max_seconds: float = RENDER_SECONDS.hi  # longer pieces are refused (an hour)
    seconds: float = 600.0  # audio past this is not rendered (a longer piece: its first part,
    #                         said in a notice); raised on purpose up to RENDER_SECONDS
    max_notes: int = 200_000  # pieces with more notes are refused
    # More notes than this sounding at once on one key of one instrument are rendered as one:
    # FluidSynth's event buffer overflows on such a stack (about 100) and it then writes
    # audio without end (2.6 GB in 60 s before this bound).
    max_unison: int = MAX_UNISON
    tail_seconds: float = 10.0  # FluidSynth's WAV may run this long past the last note;
    #                             past it (in bytes, watched while it runs) it is stopped


@dataclass
class RenderResult:
    """What :func:`render` wrote."""

    wav_path: Path
    backend: str  # "fluidsynth", "sine" (pretty_midi's synthesizer) or "silence" (no notes)
    seconds: float  # length of the audio
    sample_rate: int
    soundfont: Path | None  # soundfont used (None for the sine fallback)
    notice: str | None  # one line on why the fallback was used, else None
    elapsed: float  # seconds the rendering took


def _is_soundfont(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"sfbk"


def bundled_soundfont() -> Path | None:
    """The General MIDI soundfont pretty_midi's package carries (TimGM6mb.sf2), if there
    is one: a bare install renders instruments, not sine waves, once FluidSynth is there."""
    import importlib.util

    spec = importlib.util.find_spec("pretty_midi")  # found, not imported
    where = spec.submodule_search_locations if spec else None
    return next((f for d in where or () for f in sorted(Path(d).glob("*.sf2"))
                 if _is_soundfont(f)), None)


def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path | None:
    """The soundfont to use: ``soundfont`` if given (RenderError unless it is an SF2/SF3
    file), else ``$COMPOSER_SOUNDFONT`` or the first of :data:`SOUNDFONT_PATHS` that is one,
    else pretty_midi's (:func:`bundled_soundfont`); None if there is none."""
    if soundfont is not None:
        path = Path(soundfont)
        if not _is_soundfont(path):
            why = "no such file" if not path.exists() else "not an SF2/SF3 soundfont"
            raise RenderError(f"{path}: {why}")
        return path
    candidates = [os.environ.get("COMPOSER_SOUNDFONT", ""), *SOUNDFONT_PATHS]
    found = next((Path(p) for p in candidates if p and _is_soundfont(Path(p))), None)
    return found or bundled_soundfont()


def render(midi_path: str | os.PathLike, wav_path: str | os.PathLike,
           soundfont: str | os.PathLike | None = None,
           config: RenderConfig = RenderConfig(), force: bool = False) -> RenderResult:
    """Render a MIDI file to a WAV file (see the module docstring); the WAV is written to a
    temporary name and renamed (over an existing ``wav_path`` only with ``force``; never
    over ``midi_path``: FileTaken). A piece without notes renders as its length of silence
    (backend ``"silence"``, with a notice). Raises MidiError for an unreadable file,
    RenderError for a bad ``soundfont`` or a piece past ``config``'s bounds."""
    began = time.perf_counter()
    check_output(wav_path, [midi_path], force)
    RENDER_SECONDS.check(config.seconds, RenderError, "render length (seconds)")
    piece = load(midi_path, LoadConfig(keep_drums=True))
    if len(piece.notes) > config.max_notes:
        raise RenderError(f"{midi_path}: {len(piece.notes):,} notes; render takes at most "
                          f"{config.max_notes:,}")
    if piece.duration > config.max_seconds:
        raise RenderError(f"{midi_path}: lasts {piece.duration:,.0f} s; render takes at most "
                          f"{config.max_seconds:,.0f} s")
    sf, exe = find_soundfont(soundfont), shutil.which(config.fluidsynth)
    out, done, cut = Path(wav_path), {}, None
    if piece.duration > config.seconds:  # its first config.seconds only
        cut = (f"rendered the first {config.seconds:,.0f} s of {piece.duration:,.0f} s "
               f"(--max-length raises it, up to {RENDER_SECONDS.hi:,.0f} s)")
        notes = piece.notes[piece.notes["start"] < config.seconds].copy()
        notes["end"] = np.minimum(notes["end"], config.seconds)
        piece = Piece(notes, config.seconds)
    merged = merge_unisons(piece.notes, above=config.max_unison)  # the notes themselves if
    #                                                               no key holds a stack

    def write(tmp: Path) -> None:
        notice, used = None, sf
        if len(piece.notes) == 0:  # an empty piece is a result: its length of silence
            _write_wav(tmp, np.zeros(round(piece.duration * config.sample_rate)),
                       config.sample_rate)
            done.update(seconds=piece.duration, notice=SILENT, sf=None)
            return
        if exe is None:
            notice = f"FluidSynth is not installed ({INSTALL_HINT})"
        elif sf is None:
            notice = (f"no General MIDI soundfont found (give --soundfont, or {INSTALL_HINT})")
        elif merged is not piece.notes or cut:  # a copy: each stack as one note, or cut
            copy = tmp.with_name(tmp.name + ".mid")
            try:
                save(merged, copy)
                notice = _fluidsynth(exe, sf, copy, tmp, piece.duration, config)
            finally:
                copy.unlink(missing_ok=True)
            log.info("%s: notes stacked on one key were rendered as one", midi_path)
        else:
            notice = _fluidsynth(exe, sf, midi_path, tmp, piece.duration, config)
        if notice is not None:
            notice += "; rendered with simple sine waves instead"
            log.info("%s", notice)
            used = None
            pitched = piece.notes[~piece.notes["is_drum"]]
            _write_wav(tmp, _sine(merge_unisons(pitched), config), config.sample_rate)
        with wave.open(str(tmp)) as w:
            done.update(seconds=w.getnframes() / w.getframerate(), notice=notice, sf=used)

    atomic_write(out, write, replace=force)
    notice, seconds, sf = done["notice"], done["seconds"], done["sf"]
    backend = "fluidsynth" if notice is None else "silence" if notice == SILENT else "sine"
    if cut:
        log.info("%s: %s", midi_path, cut)
        notice = cut if notice is None else f"{cut}; {notice}"
    return RenderResult(out, backend, seconds, config.sample_rate, sf, notice,
                        time.perf_counter() - began)


def _fluidsynth(exe: str, soundfont: Path, midi_path: str | os.PathLike, wav: Path,
                duration: float, config: RenderConfig) -> str | None:
    """Run FluidSynth into ``wav``; None on success, else why it failed (one line)."""
    cmd = [exe, "-ni", "-g", str(config.gain), "-r", str(config.sample_rate), "-T", "wav",
           "-F", str(wav), os.path.abspath(soundfont), os.path.abspath(midi_path)]
    limit = config.timeout_seconds + duration
    # 16-bit stereo for the piece and its tail, plus room for the header
    most = math.ceil((duration + config.tail_seconds) * config.sample_rate) * 4 + (1 << 16)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace")
    except OSError as e:
        return f"FluidSynth could not be started ({e.strerror or e})"
    deadline = time.monotonic() + limit
    while True:  # wait, watching the time and the size of what it writes
        try:
            stdout, stderr = proc.communicate(timeout=WATCH_SECONDS)
            break
        except subprocess.TimeoutExpired:
            big = wav.exists() and wav.stat().st_size > most
            if big or time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                return (f"FluidSynth wrote more than the {most / 2**20:.1f} MiB a "
                        f"{duration:.1f} s piece needs and was stopped" if big else
                        f"FluidSynth took longer than {limit:.0f} s and was stopped")
    said = [s.strip() for s in (stderr + stdout).splitlines() if s.strip()]
    if proc.returncode != 0:
        return f"FluidSynth failed (exit code {proc.returncode}: {said[-1] if said else ''})"
    failed = [s for s in said if "failed to load" in s.lower()]
    if failed:  # it then renders noise and exits 0
        return f"FluidSynth failed ({failed[-1]})"
    try:
        audio = _read_wav(wav)
    except (OSError, EOFError, wave.Error) as e:
        return f"FluidSynth wrote no readable WAV ({e})"
    if audio.size == 0 or np.sqrt(np.mean(audio ** 2)) < SILENCE_RMS:
        return "FluidSynth rendered only silence"
    return None


def _sine(notes: np.ndarray, config: RenderConfig) -> np.ndarray:
    """Sine synthesis of ``notes`` (:func:`composer.midi.io.synthesize`), float in [-gain, gain]."""
    return synthesize(notes, config.sample_rate) * config.gain


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float audio (samples,) in [-1, 1] as a mono 16-bit WAV."""
    pcm = np.clip(np.rint(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def _read_wav(path: str | os.PathLike) -> np.ndarray:
    """Samples of a 16-bit PCM WAV as float in [-1, 1], shape (frames, channels)."""
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2:
            raise wave.Error(f"{w.getsampwidth() * 8}-bit samples, expected 16")
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return data.reshape(-1, w.getnchannels()) / 32768.0


def note_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI pitch: 60 -> 'C4'."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def matplotlib_part(module: str) -> Any:
    """``module`` of matplotlib, or RenderError in one line naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RenderError("drawing needs matplotlib: pip install 'composer[plot]'") from None


def _figure(width: float, height: float) -> Any:
    FigureCanvasAgg = matplotlib_part("matplotlib.backends.backend_agg").FigureCanvasAgg
    Figure = matplotlib_part("matplotlib.figure").Figure
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_piano_roll(notes: NoteInput | str | os.PathLike, png_path: str | os.PathLike,
                    seed_seconds: float | None = None, title: str | None = None,
                    force: bool = False) -> Path:
    """Draw a piano roll of a MIDI file (or notes) as a PNG and return its path.

    Time (s) runs along x, pitch along y (labelled with note names at every C, a faint line
    at each); each note is a bar coloured by velocity, or, when the notes hold more than
    one program, by instrument (a legend names each GM program); drums are left out. With
    ``seed_seconds``, the part up to it (the seed ``generate`` continued) sits on a shaded
    band and a dashed line marks where the continuation begins. A piece without notes
    gives an empty roll that says so. ``png_path`` replaces an existing file only with
    ``force``, and is never the MIDI file drawn (FileTaken).
    """
    check_output(png_path, [notes] if isinstance(notes, (str, os.PathLike)) else [], force)
    PolyCollection = matplotlib_part("matplotlib.collections").PolyCollection
    if isinstance(notes, (str, os.PathLike)):
        title = title or Path(notes).name
        notes = load(notes).notes
    arr = as_note_array(notes)
    arr = arr[~arr["is_drum"]]
    end = float(arr["end"].max()) if len(arr) else max(seed_seconds or 0.0, 1.0)
    fig = _figure(min(max(8.0, 4 + end / 6), 24.0), 5.0)
    ax = fig.add_subplot()
    p, s, e = arr["pitch"].astype(float), arr["start"], arr["end"]
    bars = np.stack([np.stack([s, p - 0.4], 1), np.stack([e, p - 0.4], 1),
                     np.stack([e, p + 0.4], 1), np.stack([s, p + 0.4], 1)], 1)  # (n, 4, 2)
    programs = sorted(set(arr["program"].tolist()))
    if len(programs) > 1:  # one colour per instrument
        colormaps = matplotlib_part("matplotlib").colormaps
        Patch = matplotlib_part("matplotlib.patches").Patch

        colours = colormaps["tab10" if len(programs) <= 10 else "tab20"].colors
        index = np.searchsorted(programs, arr["program"]) % len(colours)
        rolls = PolyCollection(bars, facecolors=[colours[i] for i in index], linewidths=0.3,
                               edgecolors="black")
        ax.legend(handles=[Patch(color=colours[i % len(colours)], label=program_name(g))
                           for i, g in enumerate(programs)], loc="upper right", fontsize=7)
    else:
        rolls = PolyCollection(bars, array=arr["velocity"].astype(float), cmap="viridis",
                               clim=(0, 127), linewidths=0.3, edgecolors="black")
    ax.add_collection(rolls)
    lo, hi = (int(p.min()) - 2, int(p.max()) + 2) if len(arr) else (58, 74)
    if len(arr) == 0:  # an empty piece is drawn as one, said in the picture
        ax.text(end / 2, (lo + hi) / 2, "no notes", ha="center", va="center", color="0.4")
    ax.set_xlim(0, end * 1.01)
    ax.set_ylim(lo, hi)
    cs = [c for c in range(lo, hi + 1) if c % 12 == 0]
    ax.set_yticks(cs, [note_name(c) for c in cs])
    ax.set_yticks(range(lo, hi + 1), minor=True)
    for c in cs:
        ax.axhline(c - 0.5, color="0.85", lw=0.6, zorder=0)
    if seed_seconds:
        ax.axvspan(0, seed_seconds, color="tab:orange", alpha=0.15, lw=0, zorder=0)
        ax.axvline(seed_seconds, color="tab:orange", ls="--", lw=1.2)
        ax.text(seed_seconds / 2, hi - 0.5, "seed", ha="center", va="top", color="tab:orange")
        ax.text(seed_seconds, hi - 0.5, "  generated", ha="left", va="top", color="tab:orange")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    ax.set_title(title or "piano roll")
    if len(programs) == 1:
        fig.colorbar(rolls, ax=ax, label="velocity", pad=0.01, fraction=0.03)
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png"), replace=force)
    return Path(png_path)


def plot_distributions(result: dict[str, Any], png_path: str | os.PathLike,
                       force: bool = False) -> Path:
    """Draw the distance densities of :func:`composer.evaluation.musicstats.compare_sets`' result,
    one
    panel per feature (reference intra-set, generated intra-set, inter-set), as a PNG
    (replacing an existing one only with ``force``)."""
    check_output(png_path, (), force)
    feats = result["features"]
    cols = 4
    rows = math.ceil(len(feats) / cols)
    fig = _figure(4.0 * cols, 2.8 * rows)
    styles = {"intra_reference": ("reference (intra)", "tab:blue", "-"),
              "intra_generated": ("generated (intra)", "tab:orange", "-"),
              "inter": ("inter-set", "tab:green", "--")}
    for k, (name, e) in enumerate(feats.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        x = np.asarray(e["kde"]["x"])
        for key, (label, color, ls) in styles.items():
            y = np.asarray(e["kde"][key], dtype=float)
            if np.isfinite(y).all():
                ax.plot(x, y, color=color, ls=ls, label=label)
        ax.set_title(f"{name}\noverlap {e['overlap']:.2f}, KL {e['kl']:.3f}", fontsize=9)
        ax.set_xlabel("distance", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    fig.axes[0].legend(fontsize=7)
    fig.suptitle(f"{result['generated_files']} generated vs {result['reference_files']} "
                 "reference pieces: distance densities per feature")
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png"), replace=force)
    return Path(png_path)
