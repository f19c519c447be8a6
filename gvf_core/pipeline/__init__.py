"""The end-to-end pipeline: mesh + driving video → animation (see animate.py)."""

from .animate import Animation, AnimateSettings, animate, extend
from .core import Models, load_models
from .inputs import DEFAULT_CAMERA, InputError

__all__ = ["Animation", "AnimateSettings", "DEFAULT_CAMERA", "InputError", "Models", "animate", "extend", "load_models"]
