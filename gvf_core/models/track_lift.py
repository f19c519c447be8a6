"""Lifting point tracks to 3-D: a motion estimate read straight from the video.

Every one of the VAE's rest points is projected into the video crop at frame 0 (the rest
pose) and followed through the clip by optical flow (:mod:`gvf_core.models.video_tracks`).
Holding its frame-0 depth in the camera, the point is moved within its camera plane to
where its track goes (:func:`lift_tracks`). That estimate is exact for motion parallel to
the image plane and blind to depth; a point hidden at frame 0 follows the surface in front
of it. The VAE encodes the lifted displacements into a latent [T, L, C], the *lifted
latent* (:func:`lifted_latent`), which a DiT with ``base="lift"`` denoises from: it only
has to add what the flow cannot see (depth, hidden sides, where the flow is wrong).

Training (cached crops of the data engine) and the pipeline (user videos) call the same
functions on the same crops, so the base means the same in both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gvf_core.models.vae import GVFVAE, encode_points
from gvf_core.models.video_inputs import project
from gvf_core.models.video_tracks import DISPLACEMENT_SCALE


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


def lifted_latent(vae: GVFVAE, rest_points: Tensor, anchors: Tensor, point_tracks: Tensor, K: Tensor,
                  world_to_camera: Tensor, size: int, scale: float = 1.0) -> Tensor:
    """The VAE latent [T, L, C] of the lifted motion of ``rest_points`` [P, 3] (the VAE's points),
    its displacements multiplied by ``scale`` (the pipeline's strength; 1 = as the video shows)."""
    device = anchors.device
    displacement = lift_tracks(rest_points.cpu(), point_tracks.cpu(), K.cpu(), world_to_camera.cpu(), size) * scale
    return encode_points(vae, rest_points.to(device), anchors, displacement.to(device))


__all__ = ["lift_tracks", "lifted_latent"]
