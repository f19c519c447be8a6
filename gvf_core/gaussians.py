"""The Gaussians type: raw parameters plus activated views.

Conventions (docs/conventions.md):
- tensors are ``[..., N, C]``: optional leading batch/frame axes, then Gaussians;
- quaternions are ``w, x, y, z`` and stored unnormalized;
- scales are stored as natural logs, opacities as logits;
- colors are stored as the degree-0 spherical-harmonic coefficient (SH DC), the
  way 3DGS PLY files store ``f_dc_*``; ``rgb = 0.5 + SH_C0 * sh0``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
"""Degree-0 real spherical-harmonic constant, 1 / (2 sqrt(pi))."""


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] quaternions (w, x, y, z; any norm) -> [..., 3, 3] rotation matrices."""
    q = torch.nn.functional.normalize(quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_quat(R: Tensor) -> Tensor:
    """[..., 3, 3] rotation matrices -> [..., 4] unit quaternions (w, x, y, z), w >= 0.

    Uses the numerically stable branch per element (largest diagonal term).
    """
    m = R
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    candidates = torch.stack(
        [
            torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22], -1),
        ],
        dim=-2,
    )  # [..., 4 branches, 4]
    best = torch.stack([trace, m00, m11, m22], dim=-1).argmax(dim=-1)  # [...]
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = torch.nn.functional.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


@dataclass
class Gaussians:
    """A set of 3D Gaussians, optionally with leading batch/frame axes.

    All fields share the leading shape ``[..., N]``.
    """

    means: Tensor
    """[..., N, 3] centres, in the frame of whoever holds them (model or world)."""
    quats: Tensor
    """[..., N, 4] rotation quaternions, w x y z, unnormalized."""
    log_scales: Tensor
    """[..., N, 3] natural log of the standard deviations along the local axes."""
    opacity_logits: Tensor
    """[..., N] opacity before the sigmoid."""
    sh0: Tensor
    """[..., N, 3] degree-0 SH color coefficient (3DGS ``f_dc``)."""

    def __post_init__(self) -> None:
        lead = self.means.shape[:-1]
        expected = {
            "means": (*lead, 3),
            "quats": (*lead, 4),
            "log_scales": (*lead, 3),
            "opacity_logits": tuple(lead),
            "sh0": (*lead, 3),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Gaussians.{name} has shape {got}, expected {shape} (means is {tuple(self.means.shape)})")

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_activated(
        cls,
        means: Tensor,
        rotations: Tensor,
        scales: Tensor,
        opacities: Tensor,
        rgb: Tensor,
    ) -> "Gaussians":
        """Build from activated values: unit quats, positive scales, opacities in (0, 1), RGB."""
        eps = torch.finfo(opacities.dtype).eps
        opacities = opacities.clamp(eps, 1 - eps)
        return cls(
            means=means,
            quats=rotations,
            log_scales=torch.log(scales),
            opacity_logits=torch.log(opacities) - torch.log1p(-opacities),
            sh0=rgb_to_sh0(rgb),
        )

    # ----------------------------------------------------------------- activated views
    @property
    def rotations(self) -> Tensor:
        """[..., N, 4] unit quaternions."""
        return torch.nn.functional.normalize(self.quats, dim=-1)

    @property
    def scales(self) -> Tensor:
        """[..., N, 3] standard deviations."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        """[..., N] opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def rgb(self) -> Tensor:
        """[..., N, 3] linear RGB (not clamped)."""
        return sh0_to_rgb(self.sh0)

    @property
    def rotation_matrices(self) -> Tensor:
        """[..., N, 3, 3]."""
        return quat_to_rotmat(self.quats)

    @property
    def covariances(self) -> Tensor:
        """[..., N, 3, 3] world covariances R S S^T R^T."""
        M = self.rotation_matrices * self.scales[..., None, :]
        return M @ M.transpose(-1, -2)

    # ----------------------------------------------------------------- shape helpers
    @property
    def num(self) -> int:
        return self.means.shape[-2]

    @property
    def batch_shape(self) -> torch.Size:
        return self.means.shape[:-2]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def _map(self, fn) -> "Gaussians":
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, *args, **kwargs) -> "Gaussians":
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Gaussians":
        return self._map(lambda t: t.detach())

    def clone(self) -> "Gaussians":
        return self._map(lambda t: t.clone())

    def select(self, index: Tensor) -> "Gaussians":
        """Keep the Gaussians picked by a boolean mask or index tensor over the N axis."""
        return self._map(lambda t: t[..., index, :] if t.dim() == self.means.dim() else t[..., index])

    def __getitem__(self, batch_index) -> "Gaussians":
        """Index the leading batch/frame axes (never the N axis)."""
        if not self.batch_shape:
            raise IndexError("these Gaussians have no batch axis to index")
        return self._map(lambda t: t[batch_index])

    @staticmethod
    def stack(items: list["Gaussians"], dim: int = 0) -> "Gaussians":
        """Stack unbatched Gaussians with equal N into a new leading axis."""
        return Gaussians(**{f.name: torch.stack([getattr(g, f.name) for g in items], dim) for f in fields(Gaussians)})

    @staticmethod
    def cat_batch(items: list["Gaussians"]) -> "Gaussians":
        """Concatenate along the first batch axis (e.g. frames [T1, N] + [T2, N] → [T1 + T2, N])."""
        return Gaussians(**{f.name: torch.cat([getattr(g, f.name) for g in items], 0) for f in fields(Gaussians)})

    @staticmethod
    def cat(items: list["Gaussians"]) -> "Gaussians":
        """Concatenate along the N axis."""
        out = {}
        for f in fields(Gaussians):
            ts = [getattr(g, f.name) for g in items]
            out[f.name] = torch.cat(ts, dim=-1 if f.name == "opacity_logits" else -2)
        return Gaussians(**out)
