"""Where corpora come from: open a prepared cache or prepare a MIDI folder, in one call, and
find the corpus a checkpoint was trained on; :func:`load_folder` reads a small folder whole.

Checkpoints record their corpus as absolute paths (``data.corpus``: the cache,
``data.source``: the MIDI folder it was prepared from) and its content key (``data.key``),
so they are found from any working folder; when neither is here, callers say so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from composer.core.messages import ComposerError, MidiError
from composer.corpus.cache import Corpus, CorpusConfig, is_prepared
from composer.corpus.facts import PrepareReport
from composer.corpus.prepare import prepare
from composer.corpus.scan import scan
from composer.midi.io import LoadConfig, Piece, load
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import Events, vocabulary_of


def open_or_prepare(source: Corpus | str | os.PathLike, config: CorpusConfig | None = None,
                    workers: int | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    report: Callable[[PrepareReport], None] | None = None) -> Corpus:
    """The corpus of ``source``: a :class:`Corpus` as it is, a prepared cache folder opened,
    or a MIDI folder prepared (into its default cache, with ``config``) and then opened.
    ``report(PrepareReport)`` is called after a preparation."""
    if isinstance(source, Corpus):
        return source
    if is_prepared(source):
        return Corpus.open(source)
    done = prepare(source, config=config, workers=workers, progress=progress)
    if report is not None:
        report(done)
    return Corpus.open(done.cache_dir)


def load_folder(midi_dir: str | os.PathLike, config: LoadConfig | None = None
                ) -> tuple[list[str], list[Piece], list[tuple[str, str]]]:
    """Every MIDI file below ``midi_dir`` (in-process, for small folders such as generated
    pieces): ``(names, pieces (notes with their beats), [(name, reason) of files that
    failed])``."""
    names, pieces, skipped = [], [], []
    for rel in scan(midi_dir):
        try:
            pieces.append(load(os.path.join(midi_dir, rel), config or LoadConfig()))
            names.append(rel)
        except MidiError as e:
            skipped.append((rel, str(e)))
    return names, pieces, skipped


def corpus_record(corpus: Corpus) -> dict[str, Any]:
    """What a checkpoint records about its training corpus (``Checkpoint.data``): absolute
    cache and source paths, the content key, the split fractions and file counts, the
    sampling guards measured on its train split and its median tempo (microseconds per
    quarter: the tempo of unseeded beat-vocabulary output)."""
    return {"corpus": str(Path(corpus.cache_dir).resolve()), "source": corpus.source,
            "key": corpus.key,
            "splits": {"valid_fraction": corpus.config.valid_fraction,
                       "test_fraction": corpus.config.test_fraction},
            "files": {s: int(len(corpus.files(s))) for s in ("train", "valid", "test")},
            "train_events": int(corpus.index["length"][corpus.files("train")].sum()),
            "guards": corpus.guards.to_dict(), "tempo": corpus.clock.us_per_quarter}


def cache_events(folder: str | os.PathLike) -> Events | None:
    """The event vocabulary a prepared cache holds now (None: unreadable), read from its
    ``corpus.json`` alone."""
    try:
        return CorpusConfig.from_dict(json.loads(
            (Path(folder) / "corpus.json").read_text())["config"]).vocab_events
    except (OSError, ValueError, KeyError, TypeError, ComposerError):
        return None


def training_corpus(data: dict[str, Any], events: EventConfig | Events
                    ) -> tuple[str | None, CorpusConfig]:
    """Where a checkpoint's training corpus is (``Checkpoint.data``): its cache if still there
    with the checkpoint's vocabulary, else the MIDI folder it came from (which gives the
    same splits when prepared with the recorded fractions and vocabulary: a folder's one
    default cache may since have been encoded in the other vocabulary), else that cache;
    None when neither is. Relative paths (checkpoints written before paths were recorded
    absolute) are tried from the current folder."""
    ev = vocabulary_of(events)
    settings = CorpusConfig(vocabulary=ev.kind, **{"notes" if ev.is_notes else "events": ev.config},
                            **data.get("splits", {}))
    cache, source = data.get("corpus"), data.get("source")
    cache = cache if cache and is_prepared(cache) else None
    if cache and cache_events(cache) == ev:
        return cache, settings
    if source and Path(source).is_dir():
        return str(Path(source).resolve()), settings
    return cache, settings


def missing_corpus(data: dict[str, Any]) -> str:
    """One line naming the recorded training corpus that is not here."""
    where = [p for p in (data.get("corpus"), data.get("source")) if p]
    return " or ".join(where) if where else "not recorded"
