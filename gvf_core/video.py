"""Reading driving videos and writing frame sequences.

Reading (:func:`read_video`) gives a :class:`VideoClip` of uint8 frames ``[T, H, W, C]``:

* ``.mp4 .webm .mov .avi`` through OpenCV (its bundled FFmpeg), converted BGR -> RGB, C = 3;
* ``.gif`` through Pillow, every frame composited onto the full canvas (Pillow applies the
  GIF disposal rules); C = 4 when the GIF has a transparent colour, else C = 3;
* a folder of ``.png`` frames, in natural order (``frame_2.png`` before ``frame_10.png``);
  C = 4 when any frame has an alpha channel (RGB frames then get alpha 255), else C = 3.
  Grey and grey+alpha frames are expanded to RGB / RGBA, 16-bit frames scaled to 8 bits.

``fps`` comes from the file; it is 24 when the source has none (a PNG folder, a GIF without
frame durations). GIF durations are stored in 1/100 s, so 24 fps reads back as 25 fps.
Anything that cannot be read raises :class:`VideoError` (a ``ValueError``) naming the path
and what to do.

Writing: :func:`write_video` writes RGB frames as ``.gif`` (Pillow) or ``.mp4`` (OpenCV,
lossy mp4v codec); :func:`write_png_frames` writes RGB or RGBA frames losslessly as
``frame_0000.png, frame_0001.png, ...``, a folder :func:`read_video` reads back exactly.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoClip",
    "VideoError",
    "read_video",
    "to_uint8",
    "write_png_frames",
    "write_video",
]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".avi", ".gif")
"""File extensions :func:`read_video` reads (besides a folder of ``.png`` frames)."""

_OPENCV_EXTENSIONS = (".mp4", ".webm", ".mov", ".avi")
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".exr")
_DEFAULT_FPS = 24.0
_SUPPORTED = f"{', '.join(VIDEO_EXTENSIONS)} or a folder of .png frames"


class VideoError(ValueError):
    """A video that cannot be read; the message names the path and the fix."""


@dataclass
class VideoClip:
    """Frames of one video, as :func:`read_video` returns them."""

    frames: np.ndarray
    """uint8 ``[T, H, W, C]``, T >= 2; C = 4 (RGBA, straight alpha) when the source has alpha, else 3 (RGB)."""
    fps: float
    """Frames per second; 24 when the source does not say."""
    source: str
    """The path the frames were read from."""

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def has_alpha(self) -> bool:
        return self.frames.shape[-1] == 4


# ---------------------------------------------------------------------------------- reading
def read_video(path: str | os.PathLike, max_frames: int | None = None) -> VideoClip:
    """Read a video file or a folder of PNG frames (see the module docstring).

    ``max_frames`` keeps only the first ``max_frames`` frames (at least 2); the rest are not
    decoded. Raises :class:`VideoError` for a missing path, an unsupported or single-image
    file, a file no frame can be decoded from, fewer than 2 frames, or PNG frames of
    different sizes.
    """
    path = Path(path)
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2):
        raise VideoError(f"max_frames must be an integer >= 2 (a video needs at least 2 frames) or None; got {max_frames!r}")
    if not path.exists():
        raise VideoError(f"{path} does not exist; pass a video file ({_SUPPORTED})")
    suffix = path.suffix.lower()
    if path.is_dir():
        frames, fps = _read_png_folder(path, max_frames), _DEFAULT_FPS
    elif suffix in _OPENCV_EXTENSIONS:
        frames, fps = _read_opencv(path, max_frames)
    elif suffix == ".gif":
        frames, fps = _read_gif(path, max_frames)
    elif suffix in _IMAGE_EXTENSIONS:
        raise VideoError(
            f"{path} is a single image, not a video; a video needs at least 2 frames: "
            f"pass a video file ({', '.join(VIDEO_EXTENSIONS)}) or a folder of .png frames"
        )
    else:
        raise VideoError(f"unsupported video format {suffix or '(no extension)'!r} for {path}; use {_SUPPORTED}")
    if len(frames) == 0:
        raise VideoError(f"no frames in {path}; the file may be empty or corrupt (re-export it, or export a PNG folder)")
    if len(frames) == 1:
        raise VideoError(f"a video needs at least 2 frames; got 1 in {path}")
    return VideoClip(frames=np.ascontiguousarray(frames), fps=float(fps), source=str(path))


def _read_opencv(path: Path, max_frames: int | None) -> tuple[np.ndarray, float]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        frames = []
        if cap.isOpened():
            while max_frames is None or len(frames) < max_frames:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
                elif frame.shape[-1] == 4:
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
                else:
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                frames.append(frame)
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    if not frames:
        raise VideoError(
            f"OpenCV could not decode any frame of {path} (corrupt file, or a codec OpenCV lacks); "
            f"re-encode it (e.g. `ffmpeg -i {path.name} -c:v libx264 -pix_fmt yuv420p out.mp4`) or export a folder of .png frames"
        )
    fps = fps if math.isfinite(fps) and fps > 0 else _DEFAULT_FPS
    return np.stack(frames), fps  # [T, H, W, 3]


def _read_gif(path: Path, max_frames: int | None) -> tuple[np.ndarray, float]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            frames, alpha, durations = [], False, []
            for frame in ImageSequence.Iterator(im):
                if max_frames is not None and len(frames) >= max_frames:
                    break
                # Pillow composites each frame onto the full canvas; after the first frame the
                # mode is RGBA exactly when the GIF has a transparent colour.
                alpha |= frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info
                frames.append(np.asarray(frame.convert("RGBA")))  # [H, W, 4]
                durations.append(frame.info.get("duration", 0) or 0)
    except (UnidentifiedImageError, OSError, EOFError) as e:
        raise VideoError(f"could not read GIF {path} ({e}); the file may be corrupt; re-export it") from None
    if not frames:
        return np.zeros((0, 1, 1, 3), np.uint8), _DEFAULT_FPS
    stack = np.stack(frames)  # [T, H, W, 4]
    if not alpha:
        stack = stack[..., :3]
    positive = [d for d in durations if d > 0]
    fps = 1000.0 / float(np.median(positive)) if positive else _DEFAULT_FPS
    return stack, fps


def _natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: ``frame_2`` before ``frame_10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name.lower())]


def _png_to_array(path: Path) -> np.ndarray:
    """One PNG file -> uint8 [H, W, 3] or [H, W, 4]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grey
                grey = (np.asarray(im).astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=-1)
            has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
            return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise VideoError(f"could not read PNG frame {path} ({e}); the file may be corrupt; re-export it") from None


def _read_png_folder(folder: Path, max_frames: int | None) -> np.ndarray:
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file()),
        key=lambda p: _natural_key(p.name),
    )
    if not files:
        raise VideoError(
            f"no .png frames in folder {folder}; put the frames there as frame_0000.png, frame_0001.png, ... "
            "(other image formats are not read from a folder)"
        )
    if max_frames is not None:
        files = files[:max_frames]
    frames = []
    for f in files:
        frame = _png_to_array(f)
        if frames and frame.shape[:2] != frames[0].shape[:2]:
            (h0, w0), (h, w) = frames[0].shape[:2], frame.shape[:2]
            raise VideoError(
                f"frame {f} is {w}x{h} pixels but the first frame {files[0]} is {w0}x{h0}; "
                "all frames of a video must have the same size: resize or crop them to match"
            )
        frames.append(frame)
    if any(fr.shape[-1] == 4 for fr in frames):
        opaque = np.full(frames[0].shape[:2] + (1,), 255, np.uint8)
        frames = [fr if fr.shape[-1] == 4 else np.concatenate([fr, opaque], axis=-1) for fr in frames]
    return np.stack(frames)  # [T, H, W, C]


# ---------------------------------------------------------------------------------- writing
def _as_uint8(frames, channels: tuple[int, ...]) -> np.ndarray:
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if frames.ndim != 4 or frames.shape[-1] not in channels:
        c = "|".join(str(c) for c in channels)
        raise ValueError(f"expected frames [T, H, W, {c}], got {frames.shape}")
    return frames


def to_uint8(frames) -> np.ndarray:
    """[T, H, W, 3] floats in 0..1 (numpy or torch) or uint8 -> uint8 numpy."""
    return _as_uint8(frames, (3,))


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


def write_png_frames(folder: str | os.PathLike, frames) -> list[Path]:
    """Write ``[T, H, W, 3|4]`` frames (uint8, or floats in 0..1) as ``frame_0000.png, ...`` in ``folder``.

    Lossless; RGBA frames keep their alpha. Creates ``folder`` if needed and returns the paths
    in frame order. Raises ``ValueError`` when ``folder`` already holds other ``.png`` files,
    which :func:`read_video` would read as part of the video (use an empty folder).
    """
    from PIL import Image

    folder = Path(folder)
    frames = _as_uint8(frames, (3, 4))
    T = frames.shape[0]
    if T == 0:
        raise ValueError(f"no frames to write to {folder}")
    width = max(4, len(str(T - 1)))
    paths = [folder / f"frame_{t:0{width}d}.png" for t in range(T)]
    if folder.is_dir():
        ours = {p.name for p in paths}
        stale = sorted((p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and p.name not in ours), key=_natural_key)
        if stale:
            raise ValueError(
                f"{folder} already holds {len(stale)} other .png file(s) (e.g. {stale[0]}) that read_video would read "
                "as frames of this video; write to an empty folder or remove them"
            )
    folder.mkdir(parents=True, exist_ok=True)
    for p, frame in zip(paths, frames):
        Image.fromarray(frame).save(p)  # mode RGB or RGBA from the shape
    return paths
