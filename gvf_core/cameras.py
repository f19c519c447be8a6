"""Pinhole cameras in the OpenCV convention (docs/conventions.md).

Camera axes: x right, y down, z forward. ``world_to_camera`` maps world points to
camera points; intrinsics are pixels with the pixel-centre of pixel (i, j) at
(i + 0.5, j + 0.5). The world is right-handed with +Z up (as in Blender); azimuth 0
looks from -Y towards +Y (Blender's front view), positive azimuth turns the camera
counter-clockwise seen from above.

:func:`camera_from_json` / :func:`camera_to_json` read and write one camera as JSON in the
same convention::

    {"width": 512, "height": 512, "fx": 700.0, "fy": 700.0, "cx": 256.0, "cy": 256.0,
     "world_to_camera": [[r00, r01, r02, tx], [r10, r11, r12, ty], [r20, r21, r22, tz], [0, 0, 0, 1]]}

``world_to_camera`` is a rigid transform (rotation + translation, no scale); other keys are ignored.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gvf_core import camera_math


@dataclass
class Cameras:
    """C cameras: intrinsics ``K`` [C, 3, 3] and extrinsics ``world_to_camera`` [C, 4, 4]."""

    K: Tensor
    world_to_camera: Tensor

    def __post_init__(self) -> None:
        if self.K.dim() == 2:
            self.K = self.K[None]
        if self.world_to_camera.dim() == 2:
            self.world_to_camera = self.world_to_camera[None]
        C = self.K.shape[0]
        if tuple(self.K.shape) != (C, 3, 3) or tuple(self.world_to_camera.shape) != (C, 4, 4):
            raise ValueError(
                f"Cameras need K [C,3,3] and world_to_camera [C,4,4]; got {tuple(self.K.shape)} and {tuple(self.world_to_camera.shape)}"
            )

    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, index) -> "Cameras":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(self.K[index], self.world_to_camera[index])

    def to(self, *args, **kwargs) -> "Cameras":
        return Cameras(self.K.to(*args, **kwargs), self.world_to_camera.to(*args, **kwargs))

    @property
    def camera_to_world(self) -> Tensor:
        return torch.linalg.inv(self.world_to_camera)

    @property
    def centers(self) -> Tensor:
        """[C, 3] camera centres in world coordinates."""
        R = self.world_to_camera[:, :3, :3]
        t = self.world_to_camera[:, :3, 3]
        return -(R.transpose(1, 2) @ t[..., None])[..., 0]

    @staticmethod
    def cat(items: list["Cameras"]) -> "Cameras":
        return Cameras(torch.cat([c.K for c in items]), torch.cat([c.world_to_camera for c in items]))

    # ------------------------------------------------------------------ builders
    @staticmethod
    def intrinsics(width: int, height: int, fov_deg: float, dtype=torch.float32) -> Tensor:
        """[3, 3] intrinsics with ``fov_deg`` across the larger image side, centred."""
        return torch.as_tensor(camera_math.intrinsics(width, height, fov_deg), dtype=dtype)

    @staticmethod
    def look_at_matrix(eye, target, up=(0.0, 0.0, 1.0), dtype=torch.float32) -> Tensor:
        """[4, 4] world-to-camera matrix of a camera at ``eye`` looking at ``target``."""
        as_np = (lambda v: v.detach().cpu().double().numpy() if isinstance(v, Tensor) else np.asarray(v, np.float64))
        return torch.as_tensor(camera_math.look_at(as_np(eye), as_np(target), as_np(up)), dtype=dtype)

    @classmethod
    def orbit(
        cls,
        azimuths_deg,
        elevation_deg: float = 15.0,
        distance: float = 2.5,
        fov_deg: float = 40.0,
        width: int = 256,
        height: int = 256,
        target=(0.0, 0.0, 0.0),
        dtype=torch.float32,
    ) -> "Cameras":
        """Cameras on a circle around ``target`` (Z up), one per azimuth."""
        target_np = np.asarray(target, dtype=np.float64)
        mats = []
        for az_deg in torch.as_tensor(azimuths_deg, dtype=torch.float64).reshape(-1).tolist():
            eye = target_np + distance * camera_math.orbit_offset(az_deg, elevation_deg)
            mats.append(torch.as_tensor(camera_math.look_at(eye, target_np), dtype=dtype))
        K = cls.intrinsics(width, height, fov_deg, dtype=dtype)
        return cls(K.expand(len(mats), 3, 3).clone(), torch.stack(mats))


# ---------------------------------------------------------------------------------- JSON
_JSON_KEYS = ("width", "height", "fx", "fy", "cx", "cy", "world_to_camera")
_ROTATION_TOL = 1e-4


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _validate_camera_dict(d, name: str) -> tuple[int, int, list[list[float]]]:
    """Check a camera dict; returns (width, height, world_to_camera rows). ``name`` goes into errors."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{name}: a camera must be a JSON object with keys {list(_JSON_KEYS)}; got {type(d).__name__}")
    missing = [k for k in _JSON_KEYS if k not in d]
    if missing:
        raise ValueError(f"{name}: camera lacks the keys {missing}; a camera needs {list(_JSON_KEYS)}")
    for k in ("width", "height", "fx", "fy", "cx", "cy"):
        v = d[k]
        if not _is_number(v) or not math.isfinite(v):
            raise ValueError(f"{name}: {k!r} must be a finite number; got {v!r}")
    for k in ("width", "height"):
        if d[k] <= 0 or d[k] != int(d[k]):
            raise ValueError(f"{name}: {k!r} must be a positive whole number of pixels; got {d[k]!r}")
    for k in ("fx", "fy"):
        if d[k] <= 0:
            raise ValueError(f"{name}: {k!r} (focal length in pixels) must be positive; got {d[k]!r}")

    M = d["world_to_camera"]
    if (
        not isinstance(M, (list, tuple))
        or len(M) != 4
        or not all(isinstance(row, (list, tuple)) and len(row) == 4 for row in M)
    ):
        raise ValueError(f"{name}: 'world_to_camera' must be a 4x4 list of lists (4 rows of 4 numbers)")
    if not all(_is_number(v) and math.isfinite(v) for row in M for v in row):
        raise ValueError(f"{name}: 'world_to_camera' must hold finite numbers only (no NaN, inf, null or strings)")
    if max(abs(v - w) for v, w in zip(M[3], (0, 0, 0, 1))) > 1e-6:
        raise ValueError(f"{name}: the last row of 'world_to_camera' must be [0, 0, 0, 1]; got {list(M[3])}")
    R = torch.tensor([row[:3] for row in M[:3]], dtype=torch.float64)  # [3, 3]
    err = (R @ R.T - torch.eye(3, dtype=torch.float64)).abs().max().item()
    det = torch.linalg.det(R).item()
    if err > _ROTATION_TOL or det < 0:
        what = "a reflection (determinant -1)" if err <= _ROTATION_TOL else f"not orthonormal (max |R R^T - I| = {err:.2g})"
        raise ValueError(
            f"{name}: the rotation part (upper-left 3x3) of 'world_to_camera' is {what}; it must be a rigid "
            f"transform without scale or shear: a rotation with orthonormal rows (tolerance {_ROTATION_TOL}) and a translation"
        )
    return int(d["width"]), int(d["height"]), [list(row) for row in M[:3]] + [[0.0, 0.0, 0.0, 1.0]]


def camera_from_json(path_or_dict) -> tuple[Cameras, int, int]:
    """Read one camera from a JSON file (path) or an already-parsed dict: ``(Cameras [1], width, height)``.

    The format is in the module docstring (OpenCV convention, pixels). Returns float32 tensors.
    Raises ``ValueError`` naming the file and the fix for missing keys, non-positive
    ``width``/``height``/``fx``/``fy``, a ``world_to_camera`` that is not a 4x4 rigid transform
    (last row ``[0, 0, 0, 1]``, orthonormal rotation within 1e-4), or non-finite numbers.
    """
    if isinstance(path_or_dict, Mapping):
        d, name = path_or_dict, "camera dict"
    else:
        path = Path(path_or_dict)
        name = str(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{name} is not valid JSON ({e}); a camera file holds one JSON object") from None
    width, height, M = _validate_camera_dict(d, name)
    K = torch.tensor([[d["fx"], 0.0, d["cx"]], [0.0, d["fy"], d["cy"]], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return Cameras(K, torch.tensor(M, dtype=torch.float32)), width, height


def camera_to_json(cameras: Cameras, width: int, height: int, path: str | os.PathLike | None = None) -> dict:
    """One camera as a JSON-ready dict (format in the module docstring); also written to ``path`` if given.

    ``cameras`` must hold exactly one camera with a skew-free ``K``. The dict is checked as
    :func:`camera_from_json` checks it, so whatever this writes reads back.
    """
    name = str(path) if path is not None else "camera_to_json"
    if len(cameras) != 1:
        raise ValueError(f"{name}: camera_to_json writes one camera; got {len(cameras)} (pass cameras[i])")
    K = cameras.K[0].detach().to("cpu", torch.float64)
    if K[0, 1].item() != 0 or K[1, 0].item() != 0 or K[2].tolist() != [0.0, 0.0, 1.0]:
        raise ValueError(f"{name}: K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew); got {K.tolist()}")
    d = {
        "width": width.item() if hasattr(width, "item") else width,  # numpy / torch scalars -> Python
        "height": height.item() if hasattr(height, "item") else height,
        "fx": K[0, 0].item(),
        "fy": K[1, 1].item(),
        "cx": K[0, 2].item(),
        "cy": K[1, 2].item(),
        "world_to_camera": cameras.world_to_camera[0].detach().to("cpu", torch.float64).tolist(),
    }
    d["width"], d["height"], _ = _validate_camera_dict(d, name)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
    return d
