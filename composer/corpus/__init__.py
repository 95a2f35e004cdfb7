"""A folder of MIDI files prepared once into a token cache keyed by content.

``prepare`` ingests (isolated workers, one line per skipped file); ``cache`` holds the
prepared :class:`~composer.corpus.cache.Corpus` and its config; ``facts`` what the corpus
teaches beyond tokens (vocabulary choice, guards, tempo); ``scan`` one file's record;
``sources`` finds or prepares the corpus a command names."""

from composer.corpus.cache import Corpus, CorpusConfig
from composer.corpus.sources import open_or_prepare

__all__ = ["Corpus", "CorpusConfig", "open_or_prepare"]
