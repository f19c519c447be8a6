"""Lifting point tracks to 3-D: a motion estimate read straight from the video.

Every one of the VAE's rest points is projected into the video crop at frame 0 (the rest
pose) and followed through the clip by optical flow (:mod:`gvf_core.models.video_tracks`).
Holding its frame-0 depth in the camera, the point is moved within its camera plane to
where its track goes (:func:`lift_tracks`). That estimate is exact for motion parallel to
the image plane and blind to depth; a point hidden at frame 0 follows the surface in front
of it. When one rigid transform per frame explains the tracks (:mod:`gvf_core.models.rigid_motion`:
it leaves less than :data:`LIFT_RIGID_RESIDUAL`, 11.5 %, of the tracked motion), that transform
is the lift instead: the asset's known shape then gives the depth too (:func:`lift_motion`).
Measured on the first 16 validation clips (vertex error / bbox diagonal, VAE-encoded and
decoded; threshold then 15 %): static 0.0876, plane lift 0.0506, with the rigid transform where
it explains the tracks 0.0404 (4 clips; on 3 better, on one 0.073 → 0.094); the rigid transform
plus the plane lift of the tracks it leaves over: 0.0421.

The VAE encodes the lifted displacements into a latent [T, L, C], the *lifted latent*
(:func:`lifted_latent`), which a DiT with ``base="lift"`` denoises from: it only has to add
what the lift cannot see (depth of deforming parts, hidden sides, where the flow is wrong).

Training (cached crops of the data engine) and the pipeline (user videos) call the same
functions on the same crops, so the base means the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gvf_core.models.rigid_motion import RootTransform, explains, fit_rigid_motion
from gvf_core.models.vae import GVFVAE, encode_points
from gvf_core.models.video_inputs import project
from gvf_core.models.video_tracks import DISPLACEMENT_SCALE, track_weights

RIGID_POINTS = 256
"""Points (evenly strided through the VAE's random surface samples) the rigid transform is fitted to."""
LIFT_RIGID_RESIDUAL = 0.115
"""The lift takes the rigid transform when its fit leaves less than this fraction of the tracked
motion (refinement keeps :data:`~gvf_core.models.rigid_motion.RIGID_RESIDUAL`, 0.15). The transform
reads depth from how much an object a few dozen pixels wide grows, and an asset that deforms as it
shrinks can pass for one that moves away. On the first 1000 training clips (vertex error of the
lift against the ground truth, ``scripts/lift_rigid_probe.py``; docs/models.md) the fit leaves
less than 0.15 on 131, where the transform's error is 0.0558 against 0.0670 for the plane lift;
the plane lift on those that leave more than 0.14 / 0.13 / 0.12 / 0.115 / 0.11 / 0.10 gives
0.0557 / 0.0536 / 0.0508 / 0.0479 / 0.0493 / 0.0515. The 39 leaving 0.115–0.15 were mostly (31)
deforming clips read as moves in depth: the transform's error 0.0684 on them, the plane lift's 0.0422."""


def lift_tracks(points: Tensor, tracks: Tensor, K: Tensor, world_to_camera: Tensor, size: int) -> Tensor:
    """Model-frame displacements [T, P, 3] of ``points`` [P, 3] (rest positions, model frame)
    whose track features [T, P, TRACK_FEATURES] (:func:`~gvf_core.models.video_tracks.clip_tracks`)
    were measured in a ``size``² crop with intrinsics ``K`` [3, 3] and camera ``world_to_camera``
    [4, 4]: each point moved in its camera plane, at its frame-0 depth, to its tracked pixel."""
    points, K, w2c = points.float(), K.float(), world_to_camera.float()
    R, t = w2c[:3, :3], w2c[:3, 3]
    camera = points @ R.T + t  # [P, 3]
    depth = camera[:, 2]
    pixel = project(points, K, w2c, size) * size  # [P, 2]
    moved = pixel[None] + tracks[..., :2].float() / DISPLACEMENT_SCALE * size  # [T, P, 2]
    x = (moved[..., 0] - K[0, 2]) * depth / K[0, 0]
    y = (moved[..., 1] - K[1, 2]) * depth / K[1, 1]
    lifted = torch.stack([x, y, depth.expand_as(x)], -1)  # [T, P, 3] camera frame
    displacement = (lifted - camera[None]) @ R  # back to the model frame (Rᵀ on the right)
    displacement[0] = 0  # frame 0 is the rest pose
    return displacement


@dataclass
class LiftedMotion:
    displacement: Tensor  # [T, P, 3] model frame
    rigid: dict  # the rigid fit: residual_px, motion_px, used
    root: RootTransform | None = None  # the fitted transform, used or not (None when none was fitted)


def lift_motion(points: Tensor, tracks: Tensor, K: Tensor, world_to_camera: Tensor, size: int,
                rigid: bool = True, residual: float = LIFT_RIGID_RESIDUAL) -> LiftedMotion:
    """The lifted motion of ``points`` [P, 3] from their track features [T, P, TRACK_FEATURES]:
    one rigid transform per frame where it explains the tracks (``rigid``: its fit leaves less
    than ``residual`` of the tracked motion), else :func:`lift_tracks`."""
    points, tracks, K, w2c = points.float().cpu(), tracks.float().cpu(), K.float().cpu(), world_to_camera.float().cpu()
    fit, root = {"used": False}, None
    if rigid and tracks.shape[0] >= 2:
        subset = torch.arange(0, len(points), max(1, len(points) // RIGID_POINTS))
        root = RootTransform(tracks.shape[0], points)
        position = project(points[subset], K, w2c, size)[None] + tracks[:, subset, :2] / DISPLACEMENT_SCALE
        fit = fit_rigid_motion(root, points[subset], position, track_weights(tracks[:, subset]), K, w2c, size)
        fit["used"] = explains(fit, residual)
        if fit["used"]:
            with torch.no_grad():
                frames = torch.arange(tracks.shape[0])
                moved = root.apply(points[None].expand(len(frames), -1, -1), frames)
            displacement = moved - points[None]
            displacement[0] = 0
            return LiftedMotion(displacement, fit, root)
    return LiftedMotion(lift_tracks(points, tracks, K, w2c, size), fit, root)


def lifted_latent(vae: GVFVAE, rest_points: Tensor, anchors: Tensor, displacement: Tensor, scale: float = 1.0) -> Tensor:
    """The VAE latent [T, L, C] of ``rest_points`` [P, 3] (the VAE's points) moved by the lifted
    ``displacement`` [T, P, 3] × ``scale`` (the pipeline's strength; 1 = as the video shows)."""
    device = anchors.device
    return encode_points(vae, rest_points.to(device), anchors, (displacement * scale).to(device))


__all__ = ["LIFT_RIGID_RESIDUAL", "LiftedMotion", "lift_motion", "lift_tracks", "lifted_latent"]
