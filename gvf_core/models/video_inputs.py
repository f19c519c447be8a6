"""From a driving video and its camera to the DiT's video inputs.

``prepare_video`` finds the object in every frame (alpha when the video has it, else
the difference from the plain background estimated on the image border), crops one
square window around the union of the object's boxes over all frames (one window for
the whole clip, so motion within it stays visible), resizes it to ``size``² and
composites it on white. Output channels: RGB on white and the object mask. The camera
intrinsics are carried through the crop and resize, so rays and projections of the
canonical Gaussians land on the same pixels as in the original video.

``ray_embedding`` gives each token cell its Plücker ray (direction, moment) in the model
frame; ``project`` maps model-frame points to normalised crop coordinates (0..1).
Training (data-engine samples) and inference (user videos) both go through these
functions, so crop and normalisation are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 0.5
"""A pixel belongs to the object when its mask value exceeds this."""
BACKGROUND_TOLERANCE = 0.08
"""Colour distance (max over RGB, 0..1) under which a pixel counts as background."""
MIN_OBJECT_FRACTION = 0.0005
"""The object must cover at least this fraction of some frame."""
MAX_OBJECT_FRACTION = 0.9
"""... and at most this fraction of every frame (else there is no background to separate)."""


class VideoInputError(ValueError):
    """A driving video from which no object can be separated."""


@dataclass
class VideoInputs:
    pixels: Tensor
    """[T, 4, S, S] float 0..1: RGB composited on white, then the mask."""
    K: Tensor
    """[3, 3] intrinsics of the crop (pixels of the S×S image)."""
    crop: tuple[int, int, int]
    """(x0, y0, side) of the crop window in the input frames (may extend past the edges)."""
    object_fraction: float
    """Largest fraction of a frame the object covers."""

    @property
    def size(self) -> int:
        return int(self.pixels.shape[-1])


def foreground_mask(frames: np.ndarray, source: str = "video") -> tuple[np.ndarray, np.ndarray]:
    """(rgb float [T, H, W, 3] in 0..1, mask float [T, H, W] in 0..1) of uint8 frames.

    RGBA frames with a non-trivial alpha use it; otherwise the background colour is the
    median of the 2-pixel image border over all frames and the mask is a soft threshold
    of each pixel's distance to it.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise VideoInputError(f"{source}: expected frames [T, H, W, 3 or 4], got shape {frames.shape}")
    if len(frames) < 2:
        raise VideoInputError(f"{source}: a driving video needs at least 2 frames, got {len(frames)}")
    return _key(frames, source)


def has_alpha(frames: np.ndarray) -> bool:
    """Whether :func:`foreground_mask` takes these frames' object from their alpha channel
    (an RGBA video whose alpha is opaque everywhere is keyed like an RGB one)."""
    frames = np.asarray(frames)
    if frames.shape[-1] != 4:
        return False
    alpha = frames[..., 3].astype(np.float32) / (255.0 if frames.dtype == np.uint8 else 1.0)
    return bool(alpha.min() < 0.99)


def with_alpha(frames: np.ndarray, source: str = "video") -> np.ndarray:
    """uint8 RGBA frames [T, H, W, 4] whose alpha is the object mask :func:`foreground_mask`
    finds in ``frames`` (uint8 [T >= 1, H, W, 3 or 4]): their own alpha, or the plain background
    keyed out. Two clips joined into one video (``extend``) are keyed each on its own first."""
    rgb, mask = _key(np.asarray(frames), source)
    return np.concatenate([np.round(rgb * 255), np.round(mask * 255)[..., None]], -1).astype(np.uint8)


def _key(frames: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`foreground_mask` without the check on the number of frames."""
    x = frames.astype(np.float32) / 255.0 if frames.dtype == np.uint8 else frames.astype(np.float32)
    rgb = x[..., :3]
    if has_alpha(frames):
        return rgb, x[..., 3]
    border = np.concatenate([rgb[:, :2].reshape(-1, 3), rgb[:, -2:].reshape(-1, 3),
                             rgb[:, :, :2].reshape(-1, 3), rgb[:, :, -2:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    off_border = (np.abs(border - background).max(-1) > BACKGROUND_TOLERANCE).mean()
    if off_border > 0.5:
        raise VideoInputError(
            f"{source}: the frame border is not a plain background ({off_border:.0%} of border pixels differ from "
            "its median colour); give an RGBA video (alpha = object) or one filmed on a plain background"
        )
    distance = np.abs(rgb - background).max(-1)
    mask = np.clip((distance - BACKGROUND_TOLERANCE) / BACKGROUND_TOLERANCE, 0.0, 1.0)
    return rgb, mask


def crop_window(mask: np.ndarray, margin: float = 0.1, source: str = "video") -> tuple[int, int, int]:
    """Square (x0, y0, side) around the union of the object's boxes over all frames."""
    T, H, W = mask.shape
    inside = mask > ALPHA_THRESHOLD
    fractions = inside.reshape(T, -1).mean(-1)
    if fractions.max() < MIN_OBJECT_FRACTION:
        raise VideoInputError(
            f"{source}: no object found in any frame (largest object area {fractions.max():.2%} of the frame); "
            "the video must show the object on a plain background or carry an alpha channel"
        )
    if fractions.min() > MAX_OBJECT_FRACTION:
        raise VideoInputError(
            f"{source}: the object fills {fractions.min():.0%} of every frame, so it cannot be told from the "
            "background; zoom out, or give an RGBA video whose alpha marks the object"
        )
    ys, xs = np.nonzero(inside.any(0))
    x_lo, x_hi, y_lo, y_hi = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = int(np.ceil(max(x_hi - x_lo, y_hi - y_lo) * (1 + 2 * margin)))
    side = max(side, 8)
    x0 = int(round((x_lo + x_hi - side) / 2))
    y0 = int(round((y_lo + y_hi - side) / 2))
    return x0, y0, side


def prepare_video(frames, K, size: int, margin: float = 0.1, source: str = "video") -> VideoInputs:
    """Crop, resize and composite ``frames`` (uint8 [T, H, W, 3|4]); ``K`` [3, 3] their intrinsics."""
    rgb, mask = foreground_mask(frames, source)
    x0, y0, side = crop_window(mask, margin, source)
    T, H, W = mask.shape
    comp = rgb * mask[..., None] + (1.0 - mask[..., None])  # on white
    image = np.concatenate([comp, mask[..., None]], axis=-1)  # [T, H, W, 4]
    # pad so the window lies inside: white RGB, zero mask
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + side - W), max(0, y0 + side - H)
    if pad_l or pad_t or pad_r or pad_b:
        fill = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
        padded = np.empty((T, H + pad_t + pad_b, W + pad_l + pad_r, 4), np.float32)
        padded[:] = fill
        padded[:, pad_t:pad_t + H, pad_l:pad_l + W] = image
        image = padded
    window = image[:, y0 + pad_t:y0 + pad_t + side, x0 + pad_l:x0 + pad_l + side]
    pixels = torch.from_numpy(np.ascontiguousarray(window)).permute(0, 3, 1, 2)
    pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    K = torch.as_tensor(np.asarray(K), dtype=torch.float32)
    return VideoInputs(pixels=pixels, K=crop_intrinsics(K, x0, y0, side, size), crop=(x0, y0, side),
                       object_fraction=float((mask > ALPHA_THRESHOLD).reshape(T, -1).mean(-1).max()))


def crop_intrinsics(K: Tensor, x0: float, y0: float, side: float, size: int) -> Tensor:
    """Intrinsics of the window (x0, y0, side) resized to size × size."""
    s = size / side
    out = K.clone()
    out[..., 0, 0] = K[..., 0, 0] * s
    out[..., 1, 1] = K[..., 1, 1] * s
    out[..., 0, 2] = (K[..., 0, 2] - x0) * s
    out[..., 1, 2] = (K[..., 1, 2] - y0) * s
    return out


def cell_centres(grid: int, device=None) -> Tensor:
    """[G*G, 2] centres of a grid × grid tiling of the unit square, row-major (x, y)."""
    c = (torch.arange(grid, dtype=torch.float32, device=device) + 0.5) / grid
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def ray_embedding(K: Tensor, world_to_camera: Tensor, size: int, grid: int) -> Tensor:
    """Plücker rays (unit direction, origin × direction) of each grid cell centre.

    K [..., 3, 3] of the size×size crop, world_to_camera [..., 4, 4] → [..., G*G, 6].
    """
    uv = cell_centres(grid, K.device) * size  # [G², 2] pixels
    pix = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=-1)  # [G², 3]
    d_cam = pix @ torch.linalg.inv(K).transpose(-1, -2)  # [..., G², 3]
    R = world_to_camera[..., :3, :3]
    t = world_to_camera[..., :3, 3]
    d = d_cam @ R  # R^T d per row
    d = d / d.norm(dim=-1, keepdim=True)
    origin = -(R.transpose(-1, -2) @ t[..., None])[..., 0]  # [..., 3]
    moment = torch.cross(origin[..., None, :].expand_as(d), d, dim=-1)
    return torch.cat([d, moment], dim=-1)


def project(points: Tensor, K: Tensor, world_to_camera: Tensor, size: int) -> Tensor:
    """Model-frame points [..., N, 3] → crop coordinates [..., N, 2] in units of the crop side."""
    R = world_to_camera[..., :3, :3]
    t = world_to_camera[..., :3, 3]
    cam = points @ R.transpose(-1, -2) + t[..., None, :]
    z = cam[..., 2:].clamp(min=1e-4)
    pix = (cam / z) @ K.transpose(-1, -2)
    return pix[..., :2] / size
