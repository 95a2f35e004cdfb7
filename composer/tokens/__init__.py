"""Note arrays to token sequences and back, from one ordered range table per vocabulary.

``performance``: Performance RNN's events on a 10 ms grid; ``beats``: notes with durations
on a beat grid; ``ensemble``: instruments and drums, an option of both; ``vocab``: the
:class:`~composer.tokens.vocab.Events` a corpus or checkpoint records (``vocabulary_of``)."""

from composer.tokens.vocab import Events, vocabulary_of

__all__ = ["Events", "vocabulary_of"]
