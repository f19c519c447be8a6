"""Writing frame sequences to GIF / MP4 (reading arrives with the pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_uint8(frames) -> np.ndarray:
    """[T, H, W, 3] floats in 0..1 (numpy or torch) or uint8 -> uint8 numpy."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got {frames.shape}")
    return frames


def write_video(path, frames, fps: float = 24.0) -> Path:
    """Write frames to ``path``: .gif (Pillow) or .mp4 (OpenCV, mp4v codec)."""
    path = Path(path)
    frames = to_uint8(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    elif suffix == ".mp4":
        import cv2

        h, w = frames.shape[1:3]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV could not open {path} for writing (mp4v codec unavailable?)")
        for f in frames:
            writer.write(f[..., ::-1])  # RGB -> BGR
        writer.release()
    else:
        raise ValueError(f"unsupported video format {suffix!r} for {path}; use .gif or .mp4")
    return path
