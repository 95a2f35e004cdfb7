"""Where corpora come from: open a prepared cache or prepare a MIDI folder, in one call, and
find the corpus a checkpoint was trained on; :func:`load_folder` reads a small folder whole.

Checkpoints record their corpus as absolute paths (``data.corpus``: the cache,
``data.source``: the MIDI folder it was prepared from) and its content key (``data.key``),
so they are found from any working folder; when neither is here, callers say so.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from composer.core.messages import ComposerError, MidiError
from composer.corpus.cache import Corpus, CorpusConfig, default_cache_dir, is_prepared
from composer.corpus.facts import PrepareReport
from composer.corpus.keys import corpus_keys, style_keys
from composer.corpus.prepare import prepare
from composer.corpus.scan import scan
from composer.midi.io import LoadConfig, Piece, load
from composer.tokens.performance import EventConfig
from composer.tokens.vocab import Events, vocabulary_of

REPOSITORY = Path(__file__).resolve().parents[2]  # a source checkout's root (datasets/ there)


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
    sampling guards measured on its train split (with its keys and openings) and its median
    tempo (microseconds per quarter: the tempo of unseeded beat-vocabulary output)."""
    train = (corpus.tokens, corpus.index, corpus.events, corpus.files("train"))
    return {"corpus": str(Path(corpus.cache_dir).resolve()), "source": corpus.source,
            "key": corpus.key,
            "splits": {"valid_fraction": corpus.config.valid_fraction,
                       "test_fraction": corpus.config.test_fraction},
            "files": {s: int(len(corpus.files(s))) for s in ("train", "valid", "test")},
            "train_events": int(corpus.index["length"][corpus.files("train")].sum()),
            "guards": replace(corpus.guards, keys=corpus_keys(*train), style_keys=style_keys(
                *train, corpus.paths)).to_dict(),
            "tempo": corpus.clock.us_per_quarter}


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
    None when neither is. A model trained on several folders, one style each, records them
    as ``data.sources`` (style -> folder): they are linked into one folder of style
    subfolders (:func:`linked_sources`). Relative paths (shipped models record folders of
    the source repository, such as ``datasets/bach-chorales``) are tried from the current
    folder, then from the repository holding this package."""
    ev = vocabulary_of(events)
    settings = CorpusConfig(vocabulary=ev.kind, **{"notes" if ev.is_notes else "events": ev.config},
                            **data.get("splits", {}))
    cache, source = data.get("corpus"), data.get("source")
    cache = cache if cache and is_prepared(cache) else None
    if cache and cache_events(cache) == ev:
        return cache, settings
    sources = data.get("sources")
    if isinstance(sources, dict) and sources:
        folders = {str(style): find_folder(path) for style, path in sources.items()}
        if all(folders.values()):
            return str(linked_sources(folders)), settings  # type: ignore[arg-type]
    found = find_folder(source) if source else None
    if found is not None:
        return str(found), settings
    return cache, settings


def find_folder(path: Any) -> Path | None:
    """``path`` as a folder that exists: as given (absolute, or from the current folder),
    else relative to the source repository holding this package; None when neither is."""
    if not isinstance(path, str) or not path:
        return None
    for candidate in (Path(path), REPOSITORY / path):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def linked_sources(folders: dict[str, Path]) -> Path:
    """One folder whose subfolder STYLE holds a link to every MIDI file of ``folders[STYLE]``
    (as training on several folders saw them), under the cache root; made once per set of
    folders, refreshed when their files change, so its prepared cache is reused."""
    key = json.dumps({k: str(v) for k, v in sorted(folders.items())})
    tag = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    root = default_cache_dir(REPOSITORY).parent.parent / "sources" / f"linked-{tag}"
    for style, folder in folders.items():
        for rel in scan(folder):
            link = root / style / rel
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(folder / rel)
    return root


def missing_corpus(data: dict[str, Any]) -> str:
    """One line naming the recorded training corpus that is not here."""
    sources = data.get("sources")
    where = [f"{p} as {s}/" for s, p in sources.items()] if isinstance(sources, dict) else []
    where = " and ".join(where) or " or ".join(p for p in (data.get("corpus"),
                                                          data.get("source")) if p)
    if not where:
        return "not recorded"
    listed = sources.values() if isinstance(sources, dict) else ()
    relative = [p for p in (*listed, data.get("source"))
                if isinstance(p, str) and not Path(p).is_absolute()]
    return where + (" (folders of composer's source repository: pass them from a clone)"
                    if relative else "")
