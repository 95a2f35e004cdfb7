"""What a model can be steered by: the feature vector of a window (``features``: density,
pitch classes, style, tempo, and the :class:`~composer.controls.features.ControlSpec` a model
is trained with) and the plan of those values over time (``plan``)."""

from composer.controls.features import ControlSpec
from composer.controls.plan import ControlPlan, make_plan

__all__ = ["ControlPlan", "ControlSpec", "make_plan"]
