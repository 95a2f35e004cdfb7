"""What the harmonizer is and does, torch-free (the CLI reads its defaults from here):
:class:`HarmonyModelConfig` (the network and the grid), :class:`HarmonyTrainConfig` (a
training run) and :class:`HarmonySampleConfig` (the Gibbs-like resampling), plus the grid's
token numbering shared by every module of :mod:`composer.harmony`."""

from __future__ import annotations

from dataclasses import dataclass

from composer.core.config import Config
from composer.core.messages import ComposerError, check_seed, is_int, is_number, require


class HarmonyError(ComposerError):
    """A harmonize / infill / harmonizer-training request that cannot be met."""


# Grid tokens: one per voice and step. A pitch p sounds from its onset step; HOLD continues
# the note sounding in that voice at the step before; REST is silence.
REST, HOLD, PITCH0 = 0, 1, 2  # token of MIDI pitch p: PITCH0 + p
TOKENS = PITCH0 + 128  # 130 output classes
MASK = TOKENS  # input token of a hidden cell (the embedding table has TOKENS + 1 rows)
SATB = ("Soprano", "Alto", "Tenor", "Bass")


@dataclass(frozen=True)
class HarmonyModelConfig(Config):
    """The network: an embedding per voice cell, stacked bidirectional LSTMs over time,
    and a softmax over TOKENS for every voice at every step."""

    _error = HarmonyError
    _name = "harmony model"

    voices: tuple[str, ...] = SATB  # voice names, top to bottom
    ranges: tuple[tuple[int, int], ...] = ((60, 81), (53, 74), (48, 69), (36, 64))  # MIDI
    steps_per_beat: int = 4  # grid: sixteenths (measured against triplet eighths: docs)
    beats_per_bar: int = 4  # the meter of the position feature when a piece has none
    embed: int = 32  # per-voice cell embedding
    hidden: int = 256  # LSTM units per direction
    layers: int = 2  # stacked bidirectional layers
    dropout: float = 0.3  # between layers and before the output, never across time

    def __post_init__(self) -> None:
        object.__setattr__(self, "voices", tuple(self.voices))
        object.__setattr__(self, "ranges", tuple(tuple(r) for r in self.ranges))
        require(len(self.voices) >= 2 and len(self.ranges) == len(self.voices),
                "harmony model: needs 2+ voices, one range each", HarmonyError)
        for name in ("steps_per_beat", "beats_per_bar", "embed", "hidden", "layers"):
            require(is_int(getattr(self, name)) and getattr(self, name) >= 1,
                    f"harmony model: {name} must be an integer >= 1", HarmonyError)
        require(is_number(self.dropout) and 0 <= self.dropout < 1,
                "harmony model: dropout must be in [0, 1)", HarmonyError)


@dataclass(frozen=True)
class HarmonyTrainConfig(Config):
    """A harmonizer training run (Coconet/DeepBach-style masked-cell prediction)."""

    _error = HarmonyError
    _name = "harmony training"

    minutes: float = 30.0  # wall-clock budget
    steps: int = 0  # stop after this many updates too (0: only the budget)
    batch_size: int = 16
    window_beats: int = 32  # training crops (pieces shorter are padded)
    lr: float = 2e-3  # Adam, cosine-decayed over the budget to 5% of it
    transpose: int = 5  # each crop shifted by k in [-transpose, transpose], kept in range
    eval_every: int = 100  # updates between validation checks (the best is kept)
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        check_seed(self.seed, HarmonyError, "seed")
        require(is_number(self.minutes) and self.minutes > 0, "minutes must be > 0",
                HarmonyError)
        require(is_int(self.steps) and self.steps >= 0, "steps must be an integer >= 0",
                HarmonyError)
        for name in ("batch_size", "window_beats", "eval_every", "threads"):
            require(is_int(getattr(self, name)) and getattr(self, name) >= 1,
                    f"harmony training: {name} must be an integer >= 1", HarmonyError)


@dataclass(frozen=True)
class HarmonySampleConfig(Config):
    """Annealed Gibbs-like resampling (Coconet's schedule): pass n hides a share
    max(alpha_min, alpha_max - n (alpha_max - alpha_min) / (eta passes)) of the cells being
    written and redraws them from the model given all the others."""

    _error = HarmonyError
    _name = "harmony sampling"

    passes: int = 32  # resampling passes (measured, docs/harmonize.md: no gain past 32)
    temperature: float = 0.9  # softmax temperature of every draw
    alpha_max: float = 1.0  # the first pass hides every cell being written
    alpha_min: float = 0.05
    eta: float = 0.75  # share of the passes over which the hidden share shrinks
    rng_seed: int | None = None  # None: a fresh seed

    def __post_init__(self) -> None:
        require(is_int(self.passes) and self.passes >= 1, "passes must be an integer >= 1",
                HarmonyError)
        require(is_number(self.temperature) and 0 < self.temperature <= 10,
                f"temperature must be in (0, 10], got {self.temperature!r}", HarmonyError)
        require(0 < self.alpha_min <= self.alpha_max <= 1 and 0 < self.eta <= 1,
                "need 0 < alpha_min <= alpha_max <= 1 and 0 < eta <= 1", HarmonyError)
        if self.rng_seed is not None:
            check_seed(self.rng_seed, HarmonyError, "rng seed")
