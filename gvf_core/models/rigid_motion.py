"""One rigid transform per frame of the whole asset, fitted to 2-D point tracks.

From one view, the flow of a point gives its motion in the image plane only. When the whole
asset moves rigidly, its known shape gives the rest: a turn out of the image plane shows as
the foreshortening of that shape and a move in depth as its growth. :func:`fit_rigid_motion`
fits one rotation + shift per frame so the asset's tracked points, moved by it and keeping
their rest shape, land on their tracks; the residual it leaves, against the tracked motion
itself, tells whether the video shows one rigid motion (measured on 16 validation clips:
0.03–0.10 for the rigid ones, 0.2–0.9 for the deforming ones; docs/models.md).

Used by the track lift (:mod:`gvf_core.models.track_lift`, the DiT's base) and by test-time
refinement (:mod:`gvf_core.pipeline.refine`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gvf_core.gaussians import Gaussians, quat_to_rotmat
from gvf_core.models.video_inputs import project
from gvf_core.normalize import quat_multiply

RIGID_ITERATIONS = 300
RIGID_SMOOTHNESS = 100.0
"""Weight of the squared second difference over frames of the transform (without it the transform
shook: jitter 0.10 on a validation clip whose ground truth has 0.011)."""
RIGID_RESIDUAL = 0.15
"""A video shows one rigid motion when the fit leaves less than this fraction of the tracked motion."""


class RootTransform:
    """One rigid transform per frame of the whole asset: rotation ``q_t = normalize(1, r_t)`` about
    the centre of the rest points and shift ``s_t`` in bounding-box diagonals; frame 0 is the identity.

    :func:`fit_rigid_motion` sets it from point tracks alone, the asset keeping its rest shape: one
    view then reads a turn out of the image plane from the foreshortening of a known shape and a
    move in depth from its growth, which a fit point by point does not find. Refinement keeps it
    fixed once fitted (moving it with the latent made it worse: Adam's first steps knock a fitted
    transform off) and fits the latent, from the rest state, to what is left; the lift
    (:mod:`gvf_core.models.track_lift`) takes it as the motion when it explains the tracks.
    """

    def __init__(self, frames: int, points: Tensor):
        """The identity at every one of ``frames`` frames, about the centre of ``points`` [N, 3],
        shifts in units of their bounding-box diagonal."""
        points = points.detach()
        self.rotation = torch.zeros(frames, 3, device=points.device, requires_grad=True)
        self.shift = torch.zeros(frames, 3, device=points.device, requires_grad=True)
        self.centre = points.mean(0)
        self.scale = float((points.max(0).values - points.min(0).values).norm())

    def parameters(self) -> list[Tensor]:
        return [self.rotation, self.shift]

    def quats(self, frames: Tensor) -> Tensor:
        r = self.rotation[frames]
        return F.normalize(torch.cat([torch.ones_like(r[..., :1]), r], -1), dim=-1)

    def apply(self, points: Tensor, frames: Tensor) -> Tensor:
        """Points [F, N, 3] of ``frames`` → moved points."""
        R = quat_to_rotmat(self.quats(frames))
        local = points - self.centre
        return torch.einsum("fij,fnj->fni", R, local) + self.centre + self.scale * self.shift[frames][:, None]

    def jerk(self) -> Tensor:
        """Mean squared second difference of the parameters over frames (0 for fewer than 3)."""
        both = torch.cat([self.rotation, self.shift], -1)
        if len(both) < 3:
            return both.sum() * 0
        return (both[2:] - 2 * both[1:-1] + both[:-2]).pow(2).sum(-1).mean()

    def move(self, canonical: Gaussians, deltas: Tensor, frames: Tensor) -> Tensor:
        """Deltas [F, N, 14] of ``canonical`` in ``frames`` → the deltas of the moved Gaussians
        (positions moved, rotations turned; colour, opacity and scale as they were)."""
        positions = self.apply(canonical.means + deltas[..., :3], frames) - canonical.means
        quats = canonical.rotations + deltas[..., 10:]
        turned = quat_multiply(self.quats(frames)[:, None].expand_as(quats), quats) - canonical.rotations
        return torch.cat([positions, deltas[..., 3:10], turned], -1)


def track_pixel_error(points: Tensor, positions: Tensor, K: Tensor, world_to_camera: Tensor, size: int,
                      pixels: float) -> Tensor:
    """[F, P] distance in pixels (``pixels`` per crop side) between the projections of ``points``
    [F, P, 3] (model frame, K for a ``size``² crop) and tracked ``positions`` [F, P, 2] (crop units)."""
    return (project(points, K, world_to_camera, size) - positions).norm(dim=-1) * pixels


def weighted_track_loss(error: Tensor, weights: Tensor, cauchy: float = 0.0) -> Tensor:
    """Weighted smooth L1 of pixel errors [F, P] (weights [F, P]); with ``cauchy`` > 0 the Cauchy
    loss ½c²·log(1 + (e/c)²) of scale c = ``cauchy`` pixels instead, whose pull fades for errors
    well beyond c (the flow's errors have a heavy tail: median 0.37 px, mean 1.4 px on 16
    validation clips), and which matches smooth L1's ½e² for small errors."""
    if cauchy > 0:
        rho = 0.5 * cauchy * cauchy * torch.log1p((error / cauchy) ** 2)
    else:
        rho = F.smooth_l1_loss(error, torch.zeros_like(error), reduction="none")
    return (weights * rho).sum() / weights.sum().clamp(min=1.0)


def fit_rigid_motion(root: RootTransform, points: Tensor, positions: Tensor, weights: Tensor, K: Tensor,
                     world_to_camera: Tensor, size: int, pixels: float | None = None,
                     iterations: int = RIGID_ITERATIONS, smoothness: float = RIGID_SMOOTHNESS,
                     cauchy: float = 0.0) -> dict:
    """Fit ``root`` (in place) so ``points`` [P, 3] (rest, model frame), moved only by it, follow
    their tracked ``positions`` [T, P, 2] (crop units of a ``size``² crop with intrinsics ``K``)
    with ``weights`` [T, P] (frame 0 ignored), plus ``smoothness`` × its jerk over frames; the
    track loss is smooth L1, or with ``cauchy`` > 0 a Cauchy loss of that scale in pixels
    (:func:`weighted_track_loss`).

    Returns the weighted mean track error left (``residual_px``) beside the tracked motion itself
    (``motion_px``), in pixels of a crop ``pixels`` wide (default ``size``).
    """
    pixels = float(size if pixels is None else pixels)
    gradient = rigid_fit_closure(root, points, positions, weights, K, world_to_camera, size, pixels, smoothness, cauchy)
    optimizer = torch.optim.Adam(root.parameters(), lr=0.02)
    with torch.enable_grad():
        for _ in range(iterations):
            gradient()
            optimizer.step()
    return rigid_fit_report(root, points, positions, weights, K, world_to_camera, size, pixels)


def rigid_fit_closure(root: RootTransform, points: Tensor, positions: Tensor, weights: Tensor, K: Tensor,
                      world_to_camera: Tensor, size: int, pixels: float, smoothness: float, cauchy: float):
    """The loss :func:`fit_rigid_motion` minimises (arguments as there), as an optimiser closure:
    each call clears ``root``'s gradients, evaluates the loss at its current parameters,
    back-propagates it (frame 0, the rest state, gets no gradient) and returns it."""
    T = positions.shape[0]
    frames = torch.arange(1, T, device=positions.device)
    rest = points.detach()[None].expand(T - 1, -1, -1)
    w = weights[1:]

    def closure() -> Tensor:
        for p in root.parameters():
            p.grad = None
        error = track_pixel_error(root.apply(rest, frames), positions[1:], K, world_to_camera, size, pixels)
        loss = weighted_track_loss(error, w, cauchy) + smoothness * root.jerk()
        loss.backward()
        for p in root.parameters():
            p.grad[0] = 0  # frame 0 is the rest state
        return loss

    return closure


def rigid_fit_report(root: RootTransform, points: Tensor, positions: Tensor, weights: Tensor, K: Tensor,
                     world_to_camera: Tensor, size: int, pixels: float) -> dict:
    """The weighted mean track error ``root`` leaves (``residual_px``) beside the tracked motion
    itself (``motion_px``), in pixels of a crop ``pixels`` wide (arguments as :func:`fit_rigid_motion`)."""
    T = positions.shape[0]
    frames = torch.arange(1, T, device=positions.device)
    rest = points.detach()[None].expand(T - 1, -1, -1)
    w = weights[1:]
    with torch.no_grad():
        total = w.sum().clamp(min=1e-9)
        error = track_pixel_error(root.apply(rest, frames), positions[1:], K, world_to_camera, size, pixels)
        residual = (error * w).sum() / total
        motion = ((positions[1:] - positions[:1]).norm(dim=-1) * pixels * w).sum() / total
    return {"residual_px": float(residual), "motion_px": float(motion)}


def explains(fit: dict, threshold: float = RIGID_RESIDUAL) -> bool:
    """Whether a :func:`fit_rigid_motion` result leaves less than ``threshold`` of the tracked motion."""
    return fit["residual_px"] < threshold * fit["motion_px"]


__all__ = ["RIGID_ITERATIONS", "RIGID_RESIDUAL", "RIGID_SMOOTHNESS", "RootTransform", "explains", "fit_rigid_motion",
           "rigid_fit_closure", "rigid_fit_report", "track_pixel_error", "weighted_track_loss"]
