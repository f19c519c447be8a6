"""Turning parameter dicts with numpy values into plain JSON values (sample metadata)."""

from __future__ import annotations

import numpy as np


def to_jsonable(x, digits: int | None = None):
    """dicts, lists, tuples, numpy arrays and scalars → JSON types; floats rounded to ``digits``."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v, digits) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist(), digits)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if digits is None else round(float(x), digits)
    if isinstance(x, (np.integer, int)):
        return int(x)
    return x
