"""Where the anchors go in the video: 2-D point tracks from optical flow.

The DiT has to turn what it sees into motion latents. Reading motion from raw pixels
is slow to learn (docs/models.md: the tiny DiT trained on pixels alone did not beat the
static baseline on a CPU budget). This module measures the observed 2-D motion of each
latent anchor directly, so the DiT only has to lift it to 3-D:

1. every anchor's rest position is projected into the video crop (frame 0 shows the
   rest pose);
2. whether it faces the camera at frame 0 is judged by a depth test against the
   canonical Gaussians (:func:`anchor_visibility`): a hidden anchor's flow is the
   flow of the surface in front of it;
3. dense optical flow (OpenCV's DIS, on the crop upsampled ``UPSAMPLE`` times) moves
   each anchor from frame 0 to every frame, both straight from frame 0 and chained
   frame to frame; the straight estimate is kept where its forward-backward check
   passes, else the chained one (:func:`anchor_tracks`).

Features per anchor and frame (:data:`TRACK_FEATURES`): displacement (x, y) in units
of the crop side × ``DISPLACEMENT_SCALE``, forward-backward error (same units), the
frame-0 visibility, and the object mask at the tracked point. Training (cached crops of
the data engine) and inference (user videos) go through the same function on the same
crops, so the features mean the same in both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gvf_core.models.vae_inputs import anchor_indices
from gvf_core.models.video_inputs import ALPHA_THRESHOLD, project

TRACK_FEATURES = 5
UPSAMPLE = 4
"""Flow is computed on the crop upsampled this many times (DIS needs more than 64 px)."""
DISPLACEMENT_SCALE = 10.0
"""Displacements are given in crop sides × this (a tenth of the crop ≈ 1)."""
FB_TOLERANCE = 0.02
"""Forward-backward error (crop sides) under which the straight-from-frame-0 flow is trusted."""
CHAINED_TRACK_WEIGHT = 1.0
"""Weight of a point whose straight (frame 0 → t) flow failed its forward-backward check: its
chained track (measured: 1.7 px error against 2.6 px for straight-only tracks)."""
SURFACE_POINTS = 1024
"""Canonical Gaussians the visibility test uses: the M = 1024 farthest-point samples the data
engine stores per clip (gvf_core.data.encode.CANONICAL_TOKENS), so training and the pipeline
test against the same surface."""


def visibility_surface(means: Tensor) -> Tensor:
    """The [min(SURFACE_POINTS, N), 3] farthest-point samples of canonical Gaussian centres
    ``means`` [N, 3] that :func:`anchor_visibility` tests against."""
    return means[anchor_indices(means, min(SURFACE_POINTS, len(means))).to(means.device)]


def _grey(pixels: Tensor, upsample: int) -> list[np.ndarray]:
    """[T, 4, S, S] 0..1 → uint8 luminance frames upsampled (object on white)."""
    import cv2

    rgb = pixels[:, :3].float().clamp(0, 1)
    grey = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).numpy()
    S = grey.shape[-1]
    out = []
    for g in grey:
        u8 = (g * 255 + 0.5).astype(np.uint8)
        out.append(cv2.resize(u8, (S * upsample, S * upsample), interpolation=cv2.INTER_CUBIC) if upsample > 1 else u8)
    return out


def _sample(field: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``field`` [H, W, C] at pixel-centre coordinates ``xy`` [N, 2] (clamped)."""
    import cv2

    H, W = field.shape[:2]
    x = np.clip(xy[:, 0] - 0.5, 0, W - 1).astype(np.float32)[None]
    y = np.clip(xy[:, 1] - 0.5, 0, H - 1).astype(np.float32)[None]
    return cv2.remap(field, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0].reshape(len(xy), -1)


def anchor_visibility(anchors: Tensor, points: Tensor, K: Tensor, world_to_camera: Tensor, size: int,
                      grid: int = 16, tolerance: float = 0.08) -> Tensor:
    """[L] 1.0 where an anchor is not behind the surface at frame 0, else 0.0.

    Depth test against ``points`` [M, 3] (e.g. the FPS-sampled canonical Gaussians): a
    grid × grid z-buffer of the points' camera depths over the crop; an anchor is
    visible when its depth is within ``tolerance`` × the object's depth extent of its
    cell's nearest point (or its cell is empty).
    """
    R, t = world_to_camera[:3, :3].float(), world_to_camera[:3, 3].float()
    z_pts = (points.float() @ R.T + t)[:, 2]
    z_anc = (anchors.float() @ R.T + t)[:, 2]
    cell_pts = (project(points.float(), K.float(), world_to_camera.float(), size) * grid).floor().long().clamp(0, grid - 1)
    cell_anc = (project(anchors.float(), K.float(), world_to_camera.float(), size) * grid).floor().long().clamp(0, grid - 1)
    zbuf = torch.full((grid * grid,), float("inf"))
    zbuf.scatter_reduce_(0, cell_pts[:, 1] * grid + cell_pts[:, 0], z_pts, reduce="amin")
    extent = (z_pts.max() - z_pts.min()).clamp(min=1e-6)
    nearest = zbuf[cell_anc[:, 1] * grid + cell_anc[:, 0]]
    return (z_anc <= nearest + tolerance * extent).float()


def visibility_over_frames(points: Tensor, surface: Tensor, K: Tensor, world_to_camera: Tensor, size: int) -> Tensor:
    """[T, P] 1.0 where ``points`` [T, P, 3] are not behind ``surface`` [T, M, 3] in frame t
    (:func:`anchor_visibility` frame by frame): which tracks a posed motion says the video shows."""
    if points.shape[0] != surface.shape[0]:
        raise ValueError(f"visibility_over_frames: points {tuple(points.shape)} and surface {tuple(surface.shape)} "
                         "disagree on the number of frames")
    return torch.stack([anchor_visibility(p, s, K, world_to_camera, size) for p, s in zip(points, surface)])


def anchor_tracks(pixels: Tensor, screen: Tensor, visible: Tensor, upsample: int = UPSAMPLE) -> Tensor:
    """Track features [T, L, TRACK_FEATURES] of anchors at ``screen`` [L, 2] (crop units, frame 0).

    ``pixels`` [T, 4, S, S] in 0..1 (video_inputs.prepare_video), ``visible`` [L] from
    :func:`anchor_visibility`. Frame 0's displacement is zero by definition.
    """
    import cv2

    # the crops in 8 bits, as the training cache keeps them: the flow is sensitive to a grey level
    # (a tenth of the lifted motion on 64² crops), so the pipeline tracks exactly what training did
    pixels = torch.floor(pixels.detach().cpu().float().clamp(0, 1) * 255 + 0.5) / 255
    T, S = pixels.shape[0], pixels.shape[-1]
    L = screen.shape[0]
    grey = _grey(pixels, upsample)
    mask = pixels[:, 3].float().numpy()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    scale = S * upsample  # crop units → upsampled pixels
    start = screen.detach().cpu().float().numpy() * scale  # [L, 2]
    chained = start.copy()
    out = np.zeros((T, L, TRACK_FEATURES), np.float32)
    out[:, :, 3] = visible.detach().cpu().float().numpy()[None]
    out[0, :, 4] = _sample(mask[0][..., None], start / upsample)[:, 0]
    for f in range(1, T):
        step = dis.calc(grey[f - 1], grey[f], None)
        chained = chained + _sample(step, chained)
        forward = dis.calc(grey[0], grey[f], None)
        direct = start + _sample(forward, start)
        backward = dis.calc(grey[f], grey[0], None)
        fb = np.linalg.norm(direct + _sample(backward, direct) - start, axis=-1) / scale
        trusted = (fb < FB_TOLERANCE)[:, None]
        pos = np.where(trusted, direct, chained)
        out[f, :, :2] = (pos - start) / scale * DISPLACEMENT_SCALE
        out[f, :, 2] = fb * DISPLACEMENT_SCALE
        out[f, :, 4] = _sample(mask[f][..., None], pos / upsample)[:, 0]
    return torch.from_numpy(out)


def track_weights(tracks: Tensor, hidden_weight: float = 1.0) -> Tensor:
    """[T, P] trust in each tracked position of track features [T, P, TRACK_FEATURES]: falls off with
    the forward-backward error of the straight track, is CHAINED_TRACK_WEIGHT where that check failed
    and the chained track was used, ``hidden_weight`` × that for points hidden at frame 0, and 0
    where the track leaves the object mask and in frame 0."""
    fb = tracks[..., 2] / DISPLACEMENT_SCALE
    visible = tracks[..., 3]
    trust = torch.where(fb < FB_TOLERANCE, torch.exp(-(fb / FB_TOLERANCE) ** 2), torch.full_like(fb, CHAINED_TRACK_WEIGHT))
    weight = (visible + hidden_weight * (1 - visible)) * trust * (tracks[..., 4] > ALPHA_THRESHOLD).float()
    weight[0] = 0
    return weight


def clip_tracks(anchors: Tensor, surface: Tensor, pixels: Tensor, K: Tensor, world_to_camera: Tensor) -> Tensor:
    """Track features [T, L, TRACK_FEATURES] of one clip: the anchors' [L, 3] rest positions,
    ``surface`` [M, 3] points for the visibility test (:func:`visibility_surface`), the
    prepared crop ``pixels`` [T, 4, S, S] with its intrinsics ``K`` and camera (model frame)."""
    size = int(pixels.shape[-1])
    anchors, K, world_to_camera = anchors.detach().cpu().float(), K.detach().cpu().float(), world_to_camera.detach().cpu().float()
    visible = anchor_visibility(anchors, surface.detach().cpu().float(), K, world_to_camera, size)
    return anchor_tracks(pixels, project(anchors, K, world_to_camera, size), visible)
