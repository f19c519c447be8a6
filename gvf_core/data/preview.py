"""``gvf data show``: the driving video of a sample beside novel views of its Gaussians."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gvf_core.cameras import Cameras
from gvf_core.data.sample import bound_from_sample
from gvf_core.render import rasterize
from gvf_core.video import write_video


def gaussian_states(arrays: dict) -> "torch.Tensor":
    """Exact per-frame Gaussians [T, N] of a stored sample, from its bindings and vertices."""
    return bound_from_sample(arrays).gaussians_at(torch.as_tensor(np.asarray(arrays["vertices"])))


def _over_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.float32) / 255
    a = rgba[..., 3:].astype(np.float32) / 255
    return rgb * a + (1 - a)


def preview_frames(arrays: dict, meta: dict, views: int = 3) -> np.ndarray:
    """[T, H, (1 + views) * W, 3] floats: driving frame, then novel views around the object."""
    video = np.asarray(arrays["video"])  # [T, H, W, 4]
    T, H, W, _ = video.shape
    cam = meta["camera"]
    azimuths = [cam["azimuth_deg"] + 360.0 * (k + 1) / (views + 1) for k in range(views)]
    cams = Cameras.orbit(azimuths, elevation_deg=cam["elevation_deg"], distance=cam["distance"],
                         fov_deg=cam["fov_deg"], width=W, height=H)
    with torch.no_grad():
        novel = rasterize(gaussian_states(arrays), cams, W, H, background=1.0, backend="torch").rgb  # [T, V, H, W, 3]
    tiles = [_over_white(video)] + [novel[:, k].numpy() for k in range(views)]
    return np.concatenate(tiles, axis=2)


def write_preview(arrays: dict, meta: dict, out_path, views: int = 3, fps: float | None = None) -> list[Path]:
    """Write ``out_path`` (.gif or .mp4) and a .png contact sheet (first, middle, last frame)."""
    frames = preview_frames(arrays, meta, views)
    out_path = Path(out_path)
    paths = [write_video(out_path, frames, fps=fps or meta.get("fps", 24.0))]
    T = frames.shape[0]
    sheet = np.concatenate([frames[i] for i in sorted({0, T // 2, T - 1})], axis=0)
    png = out_path.with_suffix(".png")
    from PIL import Image

    Image.fromarray((np.clip(sheet, 0, 1) * 255 + 0.5).astype(np.uint8)).save(png)
    paths.append(png)
    return paths
