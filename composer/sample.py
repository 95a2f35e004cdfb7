"""Generation: continue a seed with a trained model and write the continuations as MIDI.

The seed (a MIDI file's opening, a pitch list, or the start context) goes through the LSTM
once, in one forward call, to set the recurrent state; then events are drawn one at a time
for all ``num`` continuations in one batch, carrying ``(h, c)`` forward. The prefix is
never re-run.

**Sampling.** Every path draws through :func:`filter_logits` (silence guard, temperature,
top-k, top-p) and :func:`draw` (Gumbel-max). The Gumbel noise is counter-based: a hash of
(row seed, step, token id), so row ``i`` of ``rng_seed=S`` draws exactly what a single run
with ``rng_seed=S+i`` draws, on any device and inside a CUDA graph.

**Guards.** ``max_silence_seconds``: while nothing sounds, a TIME_SHIFT that would stretch
the running silence past the limit is masked out, so the model must play. A pitch "sounds"
from a NOTE_ON until the next NOTE_OFF of that pitch or ``max_note_seconds``, whichever
comes first (a pitch struck again before release counts as silent at its first NOTE_OFF:
the guard then errs towards forcing notes, never towards longer silences).
``max_note_seconds``: on decoding, a note left hanging is closed after at most that long and
every note is clipped to it. NOTE_OFFs with nothing sounding are ignored (``events.decode``).

**Paths** (``engine``): ``plain`` calls ``model.step`` (``nn.LSTM``) once per event;
``fused`` is a hand-written cell: the embedding and layer 0's input weights folded into one
``(V, 4H)`` table, then one ``addmm`` per layer on pre-concatenated ``[W_ih | W_hh]``;
``int8`` is the fused cell with its matrices quantized by ``quantize_dynamic``. On CUDA the
fused step, sampling and guards are captured in a CUDA graph, ``CHUNK`` steps per replay.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

import composer
from composer import Config, MidiError
from composer._engine import (
    _M32,
    CHUNK,
    GenerateError,
    Stepper,
    _inference,
    _Loop,
    _Rules,
    _Runner,
    _Track,
    make_stepper,
)
from composer.events import (
    DEFAULT_CONFIG,
    DEFAULT_VELOCITY,
    NOTE_OFF,
    TIME_SHIFT,
    VELOCITY,
    EventConfig,
    Vocabulary,
    VocabularyError,
    decode,
    encode,
    velocity_to_bin,
)
from composer.metrics import silence_fraction
from composer.midi import NOTE_DTYPE, load, save
from composer.model import ComposerLSTM

MAX_EVENTS_PER_SECOND = 300  # a continuation given in seconds stops after this many events/s
SEED_VELOCITY = 80  # velocity of pitch-list seeds
CHORD_SECONDS, ARPEGGIO_SECONDS = 0.5, 0.25


@dataclass(frozen=True)
class SampleConfig(Config):
    """How events are drawn and how long a continuation is."""

    _error = GenerateError
    _name = "sample config"

    temperature: float = 1.0  # logits / temperature; 0 = greedy (argmax)
    top_k: int = 0  # keep the k most likely events (0: off)
    top_p: float = 1.0  # keep the smallest set of events holding this much mass (1: off)
    max_silence_seconds: float = 2.0  # longest run of silence the guard lets through
    max_note_seconds: float = 5.0  # no generated note lasts longer
    seconds: float = 30.0  # length of music to generate (stops at the shift reaching it) ...
    events: int | None = None  # ... or, when set, exactly this many events instead

    def __post_init__(self) -> None:
        rules = {"temperature": ("a number >= 0", lambda v: v >= 0),
                 "top_p": ("a number in (0, 1]", lambda v: 0 < v <= 1)}
        for name in ("temperature", "top_p", "max_silence_seconds", "max_note_seconds",
                     "seconds"):
            rule, ok = rules.get(name, ("a number > 0", lambda v: v > 0))
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and ok(v)):
                raise GenerateError(f"sample config: {name} must be {rule}, got {v!r}")
        for name, least in (("top_k", 0), ("events", 1)):
            v = getattr(self, name)
            if (v is not None or name == "top_k") and (
                    isinstance(v, bool) or not isinstance(v, int) or v < least):
                raise GenerateError(f"sample config: {name} must be an integer >= {least}, "
                                    f"got {v!r}")


# ------------------------------------------------------------------------------- seeds


def start_tokens(event_config: EventConfig) -> np.ndarray:
    """The context of an unseeded continuation: one VELOCITY token, the bin of
    DEFAULT_VELOCITY (a mid bin; encoded pieces carry one before their first note)."""
    vocab = Vocabulary(event_config)
    return np.array([vocab.ranges[VELOCITY][int(velocity_to_bin(DEFAULT_VELOCITY,
                                                                event_config))]], np.int64)


def _encode_seed(notes: np.ndarray, event_config: EventConfig, what: str) -> np.ndarray:
    try:
        tokens = encode(notes, event_config).astype(np.int64)
    except VocabularyError as e:
        raise GenerateError(f"{what}: {e}") from None
    if not (tokens < Vocabulary(event_config).ranges[NOTE_OFF].start).any():
        raise GenerateError(f"{what} has no notes in the model's pitch range "
                            f"{event_config.min_pitch}..{event_config.max_pitch}")
    return tokens


def seed_from_midi(path: str | os.PathLike[str], seconds: float | None = None,
                   event_config: EventConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Tokens of the first ``seconds`` of a MIDI file (all of it when None): notes starting
    before that time are kept and cut off at it, then encoded. GenerateError when the file
    cannot be read or holds no notes there."""
    if seconds is not None and not seconds > 0:
        raise GenerateError(f"seed seconds must be > 0, got {seconds}")
    try:
        notes = load(path).notes
    except MidiError as e:
        raise GenerateError(f"seed {path}: {e}") from None
    if seconds is not None:
        notes = notes[notes["start"] < seconds].copy()
        notes["end"] = np.minimum(notes["end"], seconds)
    span = "" if seconds is None else f" in its first {seconds:g} s"
    if len(notes) == 0:
        raise GenerateError(f"seed {path} has no notes{span}")
    return _encode_seed(notes, event_config, f"seed {path}{span}")


def seed_from_pitches(pitches: str | Sequence[int], style: str = "chord",
                      event_config: EventConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Tokens of a pitch list such as ``"60,64,67"`` at velocity SEED_VELOCITY.

    ``chord``: all pitches together for CHORD_SECONDS (0.5 s). ``arpeggio``: one after
    another, each starting ARPEGGIO_SECONDS (0.25 s) after the previous and lasting that long.
    """
    if isinstance(pitches, str):
        parts = [p.strip() for p in pitches.split(",")]
        if not pitches.strip() or not all(re.fullmatch(r"-?\d+", p) for p in parts):
            raise GenerateError(f"seed {pitches!r} is not a pitch list like 60,64,67")
        pitches = [int(p) for p in parts]
    if len(pitches) == 0:
        raise GenerateError("seed pitch list is empty")
    lo, hi = event_config.min_pitch, event_config.max_pitch
    for p in pitches:
        if not lo <= p <= hi:
            raise GenerateError(f"seed pitch {p} is outside the model's pitch range {lo}..{hi}")
    if style not in ("chord", "arpeggio"):
        raise GenerateError(f"seed style must be chord or arpeggio, got {style!r}")
    notes = np.zeros(len(pitches), NOTE_DTYPE)
    notes["pitch"], notes["velocity"] = pitches, SEED_VELOCITY
    step = ARPEGGIO_SECONDS if style == "arpeggio" else 0.0
    notes["start"] = np.arange(len(pitches)) * step
    notes["end"] = notes["start"] + (ARPEGGIO_SECONDS if step else CHORD_SECONDS)
    return _encode_seed(notes, event_config, f"seed {pitches}")


def resolve_seed(spec: str | None, event_config: EventConfig, seconds: float | None = None,
                 style: str = "chord") -> np.ndarray:
    """Seed tokens of a CLI ``--seed``: None (start context), an existing file, a pitch
    list like ``60,64,67``, or else a MIDI path (which then fails as unreadable)."""
    if spec is None:
        return start_tokens(event_config)
    if not Path(spec).exists() and re.fullmatch(r"[\d\s,+-]+", spec):
        return seed_from_pitches(spec, style, event_config)
    return seed_from_midi(spec, seconds, event_config)


def find_checkpoint(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else $COMPOSER_CHECKPOINT, else the shipped ``checkpoints/default``."""
    if path is not None:
        return Path(path)
    if os.environ.get("COMPOSER_CHECKPOINT"):
        return Path(os.environ["COMPOSER_CHECKPOINT"])
    default = Path(composer.__file__).resolve().parents[1] / "checkpoints" / "default"
    if not default.exists():
        raise GenerateError(f"no default model is installed ({default} is missing); pass "
                            "--checkpoint or set COMPOSER_CHECKPOINT")
    return default


# ------------------------------------------------------------------------ generation


@dataclass
class Generation:
    """Token ids drawn by :func:`generate`."""

    tokens: list[np.ndarray]  # per row: seed + continuation (int64); rows may differ in length
    seed_len: int  # tokens of the seed (start context included) at the front of each row
    rng_seed: int  # row i used rng_seed + i
    engine: str  # path that drew them, e.g. "int8" or "fused+cuda-graph"
    logits: torch.Tensor | None  # (B, T, V) logits of each drawn event, when asked for


def _steps(seconds: float, event_config: EventConfig) -> int:
    return max(0, round(seconds * event_config.steps_per_second))


def _shift_steps(tokens: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Steps each token advances time by (0 unless a TIME_SHIFT), same shape as tokens."""
    r = vocab.ranges[TIME_SHIFT]
    return np.where((tokens >= r.start) & (tokens < r.stop), tokens - r.start + 1, 0)


def _seconds_of(tokens: np.ndarray, event_config: EventConfig) -> float:
    """Music time (seconds) that token ids (T,) span."""
    steps = _shift_steps(tokens, Vocabulary(event_config)).sum()
    return float(steps) / event_config.steps_per_second


def generate(model: ComposerLSTM, event_config: EventConfig,
             seed: Sequence[int] | np.ndarray | None = None, num: int = 1,
             config: SampleConfig = SampleConfig(), rng_seed: int | None = None,
             engine: str | Stepper = "auto", cuda_graph: bool | None = None,
             keep_logits: bool = False, threads: int | None = 1,
             progress: Callable[[int, int], None] | None = None) -> Generation:
    """Draw ``num`` continuations of ``seed`` (token ids; None: :func:`start_tokens`) in one
    batch; row i uses ``rng_seed + i`` (None: a random seed). ``cuda_graph``: capture the
    loop as a CUDA graph (None: when the model is on CUDA; without CUDA it warns and runs
    eagerly). ``threads``: torch's CPU threads meanwhile (None: unchanged; more than one is
    many times slower when other work shares the cores). ``progress(done, total)`` counts
    events (``config.events``) or whole seconds of music."""
    vocab = Vocabulary(event_config)
    V = vocab.size
    if V != model.config.vocab_size:
        raise GenerateError(f"vocabulary mismatch: the event config has {V} tokens, the "
                            f"model {model.config.vocab_size}")
    seed = start_tokens(event_config) if seed is None else np.asarray(seed, dtype=np.int64)
    if seed.ndim != 1 or seed.size == 0:
        raise GenerateError("the seed is empty")
    bad = seed[(seed < 0) | (seed >= V)]
    if bad.size:
        raise GenerateError(f"vocabulary mismatch: seed token id {bad[0]} is outside the "
                            f"model's vocabulary (0..{V - 1})")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise GenerateError(f"num must be a positive integer, got {num!r}")
    rng_seed = secrets.randbelow(2**31) if rng_seed is None else int(rng_seed)
    target = max(1, _steps(config.seconds, event_config))  # music steps per continuation
    limit = config.events or math.ceil(config.seconds * MAX_EVENTS_PER_SECOND) + CHUNK
    with _inference(model, threads):
        device = model.head.weight.device
        stepper = make_stepper(model, engine)
        keys = (torch.arange(num, device=device) + rng_seed) & _M32  # (B,)
        rules = _Rules(config, vocab, keys, max(1, _steps(config.max_note_seconds, event_config)),
                       _steps(config.max_silence_seconds, event_config))
        lp = _prime(model, stepper, rules, torch.as_tensor(seed, device=device), num)
        now0 = int(lp.track.now[0])
        capture = device.type == "cuda" if cuda_graph is None else cuda_graph
        try:
            runner = _Runner(rules, stepper, lp, keep_logits, capture)
        except (RuntimeError, AssertionError) as e:  # no graph here: the same steps eagerly
            warnings.warn(f"CUDA graph capture failed ({e}); generating without it",
                          stacklevel=2)
            runner, capture = _Runner(rules, stepper, lp, keep_logits, False), False
        chunks, logit_chunks = [], []
        while True:
            runner.run()
            chunks.append(runner.tokens.clone())
            if keep_logits:
                logit_chunks.append(runner.logits.clone())
            drawn = len(chunks) * CHUNK
            if config.events:
                finished, done, total = drawn >= limit, min(drawn, limit), limit
            else:  # whole seconds of music of the slowest row
                reached = int(runner.lp.track.now.min()) - now0
                finished, total = reached >= target or drawn >= limit, math.ceil(config.seconds)
                done = total if finished else reached // event_config.steps_per_second
            if progress is not None:
                progress(done, total)
            if finished:
                break
    out = []
    for row in torch.cat(chunks, 1).cpu().numpy():  # (drawn,) per row
        if config.events:
            row = row[: config.events]
        else:  # up to the event that reaches the length
            reached = np.flatnonzero(np.cumsum(_shift_steps(row, vocab)) >= target)
            row = row[: reached[0] + 1 if reached.size else limit]
        out.append(np.concatenate([seed, row]))
    kept = torch.cat(logit_chunks, 1).cpu() if keep_logits else None
    return Generation(out, len(seed), rng_seed, stepper.name + "+cuda-graph" * capture, kept)


def _prime(model: ComposerLSTM, stepper: Stepper, rules: _Rules, seed: torch.Tensor,
           num: int) -> _Loop:
    """Loop state after the seed (T,): one forward for the LSTM state and the logits of the
    first draw, the track replayed token by token, all repeated for ``num`` rows."""
    logits, (h, c) = model(seed[None])  # (1, T, V); h, c (L, 1, H)
    zeros = torch.zeros(1, rules.n_pitches, dtype=torch.long, device=seed.device)
    track = _Track(torch.zeros(1, dtype=torch.long, device=seed.device), zeros)
    for tok in seed.split(1):
        track = rules.update(track, tok)

    def rows(t: torch.Tensor, dim: int = 0) -> torch.Tensor:  # size 1 -> num along dim
        return t.expand(*t.shape[:dim], num, *t.shape[dim + 1 :]).contiguous()

    return _Loop(rows(logits[:, -1]), stepper.from_lstm(rows(h, 1), rows(c, 1)),
                 _Track(*map(rows, track)), torch.zeros(1, dtype=torch.long, device=seed.device))


def to_notes(tokens: Sequence[int] | np.ndarray, event_config: EventConfig, *,
             seed_len: int = 0, include_seed: bool = True, max_note_seconds: float = 5.0,
             program: int = 0) -> np.ndarray:
    """Notes (NOTE_DTYPE) of a generated row: ``events.decode`` with hanging notes closed
    after at most ``max_note_seconds``, every note clipped to that length. Without
    ``include_seed`` only notes starting after the first ``seed_len`` tokens are kept,
    moved so that the continuation starts at 0."""
    tokens = np.asarray(tokens, dtype=np.int64)
    hang = min(event_config.max_hanging_seconds, max_note_seconds)
    try:
        notes = decode(tokens, replace(event_config, max_hanging_seconds=hang), program)
    except VocabularyError as e:
        raise GenerateError(str(e)) from None
    notes["end"] = np.minimum(notes["end"], notes["start"] + max_note_seconds)
    if not include_seed:
        t0 = _seconds_of(tokens[:seed_len], event_config)
        notes = notes[notes["start"] >= t0 - 1e-9]
        notes["start"] -= t0
        notes["end"] -= t0
    return notes


@dataclass
class Output:
    """One written continuation."""

    path: Path
    seconds: float  # duration: end of the last note
    notes: int
    silence: float  # metrics.silence_fraction over [0, seconds]
    tokens: int  # events drawn (seed not counted)
    seed_seconds: float  # music time of the seed (0 without one)


def output_paths(out_dir: str | os.PathLike[str], prefix: str, num: int,
                 force: bool = False) -> list[Path]:
    """``num`` paths ``OUT/PREFIX-NNN.mid``: from 001 on when ``force`` (overwriting), else
    the lowest numbers not taken yet, so earlier outputs are never overwritten.
    GenerateError if the prefix is not a plain file name."""
    if not prefix or Path(prefix).name != prefix or prefix in (".", ".."):
        raise GenerateError(f"prefix {prefix!r} must be a plain file name")
    paths: list[Path] = []
    i = 1
    while len(paths) < num:
        path = Path(out_dir) / f"{prefix}-{i:03d}.mid"
        if force or not path.exists():
            paths.append(path)
        i += 1
    return paths


def compose(model: ComposerLSTM, event_config: EventConfig, out_dir: str | os.PathLike[str],
            seed: Sequence[int] | np.ndarray | None = None, num: int = 1,
            config: SampleConfig = SampleConfig(), *, rng_seed: int | None = None,
            prefix: str = "composer", include_seed: bool = True, program: int = 0,
            force: bool = False, engine: str | Stepper = "auto", threads: int | None = 1,
            progress: Callable[[int, int], None] | None = None
            ) -> tuple[list[Output], Generation]:
    """Generate ``num`` continuations of ``seed`` and write them as ``OUT/PREFIX-NNN.mid``
    (:func:`output_paths`); returns one :class:`Output` per file and the tokens."""
    if isinstance(program, bool) or not isinstance(program, int) or not 0 <= program <= 127:
        raise GenerateError(f"program must be in 0..127, got {program!r}")
    paths = output_paths(out_dir, prefix, num, force)
    gen = generate(model, event_config, seed, num, config, rng_seed, engine, threads=threads,
                   progress=progress)
    seed_seconds = _seconds_of(gen.tokens[0][: gen.seed_len], event_config)
    outputs = []
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for path, tokens in zip(paths, gen.tokens, strict=True):
            notes = to_notes(tokens, event_config, seed_len=gen.seed_len,
                             include_seed=include_seed,
                             max_note_seconds=config.max_note_seconds, program=program)
            save(notes, path)
            end = float(notes["end"].max()) if len(notes) else 0.0
            outputs.append(Output(path, end, len(notes), silence_fraction(notes),
                                  len(tokens) - gen.seed_len, seed_seconds))
    except OSError as e:
        raise GenerateError(f"cannot write to {out_dir}: {e.strerror or e}") from None
    return outputs, gen
