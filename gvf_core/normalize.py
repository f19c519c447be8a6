"""The model frame: the rest-pose bounding box centred at the origin, longest side 1.

``Normalization`` maps points from an input frame (world, or a file's axes when
``rotation`` is an axis conversion) to the model frame and back, exactly:

    model = scale * (points @ rotation.T - center)
    points = (model / scale + center) @ rotation

``center`` is expressed in the *rotated* axes (it is the bounding-box centre of
``points @ rotation.T``), so the box is axis-aligned in the model frame. Works on numpy
arrays and torch tensors with any leading shape ``[..., 3]``; torch keeps dtype, device
and gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gvf_core.gaussians import Gaussians, rotmat_to_quat


@dataclass(frozen=True, eq=False)
class Normalization:
    """Similarity transform into the model frame (rotation, then centring and scaling)."""

    center: np.ndarray
    """[3] float64 bounding-box centre, in the rotated axes, input units."""
    scale: float
    """Model units per input unit (1 / longest bounding-box side)."""
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    """[3, 3] float64 proper rotation applied first (e.g. a Y-up to Z-up conversion)."""

    def __post_init__(self) -> None:
        c = np.asarray(self.center, dtype=np.float64).reshape(-1)
        R = np.asarray(self.rotation, dtype=np.float64)
        if c.shape != (3,) or not np.isfinite(c).all():
            raise ValueError(f"Normalization.center must be 3 finite numbers, got {self.center!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Normalization.scale must be a positive finite number, got {self.scale!r}")
        if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-9) or np.linalg.det(R) < 0:
            raise ValueError(f"Normalization.rotation must be a 3x3 proper rotation (orthonormal, det +1), got {R}")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "rotation", R)

    @classmethod
    def fit(cls, vertices, rotation: np.ndarray | None = None) -> "Normalization":
        """Fit to rest-pose vertices ``[V, 3]`` (numpy or torch), after ``rotation`` if given."""
        v = _to_numpy(vertices).reshape(-1, 3).astype(np.float64)
        if len(v) == 0 or not np.isfinite(v).all():
            raise ValueError("Normalization.fit needs at least one finite vertex; the mesh is empty or has NaN vertices")
        R = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        v = v @ R.T
        lo, hi = v.min(0), v.max(0)
        longest = float((hi - lo).max())
        if not longest > 0:
            raise ValueError("Normalization.fit: all vertices coincide (zero-size bounding box); the mesh is degenerate")
        return cls(center=(lo + hi) / 2, scale=1.0 / longest, rotation=R)

    # ------------------------------------------------------------------ points
    def apply(self, points):
        """[..., 3] input-frame points -> model frame (numpy or torch, same kind out)."""
        R, c = self._consts(points)
        return (points @ R.T - c) * self.scale

    def invert(self, points):
        """[..., 3] model-frame points -> input frame (exact inverse of :meth:`apply`)."""
        R, c = self._consts(points)
        return (points / self.scale + c) @ R

    def apply_vectors(self, vectors):
        """[..., 3] directions/displacements -> model frame (rotation and scale, no shift)."""
        R, _ = self._consts(vectors)
        return (vectors @ R.T) * self.scale

    def invert_vectors(self, vectors):
        """[..., 3] model-frame displacements -> input frame."""
        R, _ = self._consts(vectors)
        return (vectors / self.scale) @ R

    # ------------------------------------------------------------------ Gaussians
    def apply_gaussians(self, g: Gaussians) -> Gaussians:
        """Means mapped, log-scales shifted by log(scale), quaternions rotated by ``rotation``."""
        return self._map_gaussians(g, forward=True)

    def invert_gaussians(self, g: Gaussians) -> Gaussians:
        """Exact inverse of :meth:`apply_gaussians`."""
        return self._map_gaussians(g, forward=False)

    def _map_gaussians(self, g: Gaussians, forward: bool) -> Gaussians:
        q_rot = rotmat_to_quat(torch.as_tensor(self.rotation, dtype=torch.float64)).to(g.quats)  # [4]
        if not forward:
            q_rot = q_rot * q_rot.new_tensor([1.0, -1.0, -1.0, -1.0])  # conjugate = inverse rotation
        log_s = math.log(self.scale)
        return Gaussians(
            means=self.apply(g.means) if forward else self.invert(g.means),
            quats=quat_multiply(q_rot.expand_as(g.quats), g.quats),
            log_scales=g.log_scales + log_s if forward else g.log_scales - log_s,
            opacity_logits=g.opacity_logits,
            sh0=g.sh0,
        )

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; floats survive a JSON round trip exactly."""
        return {"center": self.center.tolist(), "scale": self.scale, "rotation": self.rotation.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalization":
        missing = {"center", "scale"} - set(d)
        if missing:
            raise ValueError(f"Normalization.from_dict: missing keys {sorted(missing)}; expected center, scale and optionally rotation")
        return cls(center=np.asarray(d["center"], dtype=np.float64), scale=float(d["scale"]), rotation=np.asarray(d.get("rotation", np.eye(3)), dtype=np.float64))

    # ------------------------------------------------------------------ helpers
    def _consts(self, like):
        if isinstance(like, torch.Tensor):
            dtype = like.dtype if like.is_floating_point() else torch.float64
            return (
                torch.as_tensor(self.rotation, dtype=dtype, device=like.device),
                torch.as_tensor(self.center, dtype=dtype, device=like.device),
            )
        return self.rotation, self.center


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` of [..., 4] quaternions (w, x, y, z); rotates by b, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
