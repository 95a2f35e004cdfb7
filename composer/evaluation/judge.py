"""Judge generated music: statistics against a reference set and the copy check against
the training data (``composer evaluate --generated``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.core.files import check_output
from composer.core.messages import MetricsError, Notify, Progress, quiet
from composer.corpus.sources import load_folder, open_or_prepare
from composer.evaluation.copycheck import (
    CopyConfig,
    CopyMatch,
    copy_warning,
    corpus_copy_index,
)
from composer.evaluation.musicstats import MusicConfig, compare_sets
from composer.midi.render import matplotlib_part, plot_distributions
from composer.tokens.beats import clock_of

# -------------------------------------------------------------------------------- judge


@dataclass
class Judged:
    """What :func:`judge_music` found (``result``: everything, JSON-ready)."""

    result: dict[str, Any]
    music: dict[str, Any] | None = None  # compare_sets' result
    corpus: Path | None = None  # the corpus of the copy check
    matches: list[CopyMatch] = field(default_factory=list)
    warnings: list[str | None] = field(default_factory=list)
    figure: Path | None = None


def judge_music(generated: str | os.PathLike, reference: str | os.PathLike | None = None,
                corpus: str | os.PathLike | None = None, *, figure: str | os.PathLike | None
                = None, seed_seconds: float = 0.0, copy: CopyConfig = CopyConfig(),
                music: MusicConfig = MusicConfig(), notify: Notify = quiet,
                ingest: Progress | None = None, force: bool = False) -> Judged:
    """``composer evaluate --generated``: music statistics of the MIDI files in ``generated``
    against ``reference`` (:func:`~composer.evaluation.musicstats.compare_sets`, ``figure``: their
    densities) and/or the copy check against the train split of ``corpus`` (a prepared
    corpus or a MIDI folder, prepared first), ignoring each file's first ``seed_seconds``.
    An existing ``figure`` is replaced only with ``force`` (checked before any work)."""
    if figure:  # refused before the work: an existing file, a missing matplotlib
        check_output(figure, (), force)
        matplotlib_part("matplotlib.figure")
    def pieces_of(folder: str | os.PathLike) -> tuple[list[str], list]:
        names, pieces, skipped = load_folder(folder)
        for name, reason in skipped:
            notify(f"skipped {Path(folder) / name}: {reason}")
        return names, pieces

    names, pieces = pieces_of(generated)
    if not pieces:
        raise MetricsError(f"no readable MIDI files in {generated}")
    done = Judged({"generated": str(generated), "files": names})
    if reference:
        done.music = compare_sets(pieces, pieces_of(reference)[1], music)
        if figure:
            done.figure = plot_distributions(done.music, figure, force)
        done.result["music"] = {"reference": str(reference), **done.music}
    if corpus:
        data = open_or_prepare(corpus, progress=ingest)
        index = corpus_copy_index(data, copy)
        done.corpus = data.cache_dir
        done.matches = [index.longest_copy(data.events.encode(p), seed_seconds,
                                           clock_of(p))
                        for p in pieces]
        done.warnings = [copy_warning(m, copy) for m in done.matches]
        done.result["copies"] = [{"file": n, **vars(m), "fraction": m.fraction, "warning": w}
                                 for n, m, w in zip(names, done.matches, done.warnings,
                                                    strict=True)]
    return done
