"""Every asked instrument is heard, and keeps being heard: a logits processor for an
instrument-aware model asked for an ensemble (``SampleConfig.instruments``, and ``drums``).

The instrument filter (:class:`~composer.generation.processors.InstrumentFilter`) keeps a
piece to the asked instruments, but a model may stay with the ones it likes best (issue 23:
asked "flute, acoustic bass, drums", no piece of the shipped model played all three; once
brought in, the cello of "violin, cello" then played in 39% of the 5 s windows and the drums
in 22%). :class:`EnsembleCoverage` adds feedback: while an asked instrument has played no
note in a row, its tokens (its PROGRAM token; for the drums every DRUM token) gain
``instrument_gain`` nats per second of music drawn so far; once it has played, per second
that it has been silent past ``REST_SECONDS`` (at most MAX_BIAS either way). So it enters
within seconds, may rest as the music asks, and comes back. A pitched note belongs to the
instrument of the last PROGRAM token before it (before any, the first asked one, as the
output is written); the seed's notes count as played when the drawing starts. The
processor follows the drawn tokens through :meth:`EnsembleCoverage.observe`, which the loop
calls after every draw (in-place updates, so the chunk stays capturable as a CUDA graph).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from composer.generation.track import Track
from composer.tokens.vocab import Events

MAX_BIAS = 24.0  # nats: the most an unheard instrument's tokens gain
REST_SECONDS = 4.0  # an instrument that has played may be silent this long with no feedback


class EnsembleCoverage:
    """``groups`` (G, V) float: 1 on the tokens that bring in each asked instrument;
    ``program_of`` (V,) long: the group a PROGRAM token switches to (-1: none); ``pitched``
    (V,) bool: the pitched note starts; ``hits`` (V, G) bool: the drum hits' group;
    ``current`` (B,) long: each row's instrument now; ``heard`` (B, G) bool; ``last``
    (B, G) float: the music step of each instrument's last note (not yet heard: the step the
    drawing starts at); ``gain``: nats per music step; ``rest``: music steps of
    ``REST_SECONDS``."""

    def __init__(self, tables: dict[str, torch.Tensor], current: torch.Tensor,
                 heard: torch.Tensor, last: torch.Tensor, gain: float, rest: float) -> None:
        self.groups, self.program_of = tables["groups"], tables["program_of"]
        self.pitched, self.hits = tables["pitched"], tables["hits"]
        self.current, self.heard, self.last = current, heard, last
        self.gain, self.rest = gain, rest

    def __call__(self, scores: torch.Tensor, tr: Track) -> torch.Tensor:
        silent = tr.now[:, None] - self.last - self.rest * self.heard  # (B, G) steps
        bias = (self.gain * silent).clamp(0.0, MAX_BIAS)  # (B, G)
        scores += bias @ self.groups  # (B, G) @ (G, V)
        return scores

    def observe(self, tok: torch.Tensor, now: torch.Tensor) -> None:
        """Follows the drawn tokens ``tok`` (B,), drawn at music steps ``now`` (B,):
        instrument switches and notes played."""
        g = self.program_of.index_select(0, tok)  # (B,)
        self.current.copy_(torch.where(g >= 0, g, self.current))
        at = self.current[:, None]  # (B, 1)
        now = now[:, None].to(self.last.dtype)  # (B, 1)
        note = self.pitched.index_select(0, tok)[:, None]  # (B, 1)
        self.heard.scatter_(1, at, self.heard.gather(1, at) | note)
        self.last.scatter_(1, at, torch.where(note, now, self.last.gather(1, at)))
        hit = self.hits.index_select(0, tok)  # (B, G)
        self.heard |= hit
        self.last.copy_(torch.where(hit, now, self.last))


def ensemble_processors(events: Events, config: Any, seed: np.ndarray, num: int,
                        sps: float, now0: int, device: torch.device | str) -> list[Any]:
    """The :class:`EnsembleCoverage` of an ensemble of two or more asked instruments (drums
    count as one) on an instrument-aware vocabulary with ``config.instrument_gain`` > 0
    (``seed`` (T,): the token ids fed before; ``sps``: music steps per second; ``now0``:
    the step the drawing starts at); else none."""
    programs, drums = events.instrument_ids()
    chosen = config.instruments
    if chosen is None or not len(programs) or config.instrument_gain <= 0:
        return []
    with_drums = bool(config.drums and len(drums))
    G, V = len(chosen) + with_drums, events.size
    if G < 2:
        return []
    groups, hits = np.zeros((G, V), np.float32), np.zeros((V, G), bool)
    program_of, pitched = np.full(V, -1, np.int64), np.zeros(V, bool)
    for g, p in enumerate(chosen):
        groups[g, programs[p]], program_of[programs[p]] = 1.0, g
    if with_drums:
        groups[-1, drums.start : drums.stop], hits[drums.start : drums.stop, -1] = 1.0, True
    starts = events.note_start_ids()
    pitched[starts.start : starts.stop] = True
    tables = {name: torch.as_tensor(a, device=device) for name, a in (
        ("groups", groups), ("program_of", program_of), ("pitched", pitched), ("hits", hits))}
    gain, rest = config.instrument_gain / sps, REST_SECONDS * sps
    last = torch.full((1, G), float(now0), device=device)
    one = EnsembleCoverage(tables, torch.zeros(1, dtype=torch.long, device=device),
                           torch.zeros(1, G, dtype=torch.bool, device=device), last, gain, rest)
    start = torch.full((1,), now0, device=device)
    for t in torch.as_tensor(seed, device=device)[:, None]:  # what the seed plays, all at now0
        one.observe(t, start)
    return [EnsembleCoverage(tables, one.current.repeat(num), one.heard.repeat(num, 1),
                             one.last.repeat(num, 1), gain, rest)]
