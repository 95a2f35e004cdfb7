"""Generation: ``config`` (torch-free :class:`~composer.generation.config.SampleConfig` and
:class:`~composer.generation.config.GenerateRequest`), ``track`` (the rows' music time, one
tracker per vocabulary), ``processors`` (the guards and sampling settings, one logits
processor object each), ``noise`` (the Gumbel-max draw; greedy decided there), ``loop``
(feed the seed; per step process, draw, update, step the model; stop), ``seeds`` (what a
continuation starts from), ``output`` (tokens to MIDI files) and ``session`` (carry out a
request: load a model, seed, generate, write; what ``composer generate`` and the server
call)."""

from composer.generation.config import SampleConfig

__all__ = ["SampleConfig"]
