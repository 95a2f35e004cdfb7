"""Note arrays to token sequences and back, from one ordered range table per vocabulary.

``vocab``: the base :class:`~composer.tokens.vocab.Events` (the shared pipeline, the saved
dict, ``vocabulary_of``); ``performance``: :class:`Performance`, Performance RNN's events on
a 10 ms grid; ``beats``: :class:`BeatNotes`, notes with durations on a beat grid;
``ensemble``: instruments and drums, an option composed into either."""

from composer.tokens.beats import BeatNotes
from composer.tokens.performance import Performance
from composer.tokens.vocab import Events, vocabulary_of

__all__ = ["BeatNotes", "Events", "Performance", "vocabulary_of"]
