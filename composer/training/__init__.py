"""Training: ``config`` (torch-free :class:`~composer.training.config.TrainConfig`),
``data`` (windows and augmentation), ``optim`` (parameter groups, the learning-rate schedule
and the wall-clock budget), ``loop`` (the training loop), ``runs`` (run folders and resume),
``recipe`` (corpus -> model size -> train, what ``composer train`` calls)."""

from composer.training.config import TrainConfig

__all__ = ["TrainConfig"]
