"""Generation: ``config`` (torch-free :class:`~composer.generation.config.SampleConfig`),
``processors`` (the guards and sampling settings, one object each), ``loop`` (seed, step,
process, draw), ``seeds`` (what a continuation starts from), ``output`` (tokens to MIDI
files) and ``session`` (load a model, seed, generate, write: what ``composer generate``
and the server call)."""

from composer.generation.config import SampleConfig

__all__ = ["SampleConfig"]
