"""Writing an :class:`Animation` to a folder: what ``gvf animate --out DIR`` leaves there.

- ``vertices.npy``  [T, V, 3] float32, the mesh file's frame and vertex order;
- ``animation.pc2`` the same, as a Point Cache 2 file (Blender's Mesh Cache modifier);
- ``gaussians/frame_0000.ply`` … one 3DGS PLY per frame, the mesh file's frame;
- ``preview.mp4``   input video | animated asset from the input view | from a novel view;
- ``camera.json``   the camera used (world frame, OpenCV), reusable with ``--camera``;
- ``report.json``   timings per stage, device, model, settings, figures.

Everything is written into a temporary sibling folder first and moved into place at
the end, so a failure leaves either the previous result or nothing, never half of one.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gvf_core.cameras import Cameras, camera_to_json
from gvf_core.pc2 import write_pc2
from gvf_core.pipeline.animate import Animation
from gvf_core.pipeline.inputs import camera_to_model
from gvf_core.ply import write_ply_sequence
from gvf_core.render import rasterize
from gvf_core.video import write_video

PREVIEW_HEIGHT = 256
NOVEL_AZIMUTH_DEG = 90.0

OUTPUT_FILES = ("vertices.npy", "animation.pc2", "gaussians", "preview.mp4", "camera.json", "report.json")


def _video_on_white(frames: np.ndarray, height: int) -> torch.Tensor:
    x = torch.from_numpy(frames).float() / 255.0  # [T, H, W, C]
    if x.shape[-1] == 4:
        x = x[..., :3] * x[..., 3:] + (1 - x[..., 3:])
    x = x.permute(0, 3, 1, 2)
    w = max(2, int(round(x.shape[-1] * height / x.shape[-2])) // 2 * 2)
    return F.interpolate(x, size=(height, w), mode="bilinear", antialias=True, align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)


@torch.no_grad()
def render_preview(anim: Animation, height: int = PREVIEW_HEIGHT, progress=None) -> np.ndarray:
    """[T, height, W_total, 3] uint8: the input video, the asset from the input camera and
    from a camera turned ``NOVEL_AZIMUTH_DEG`` about the vertical axis."""
    T = anim.num_frames
    video = _video_on_white(anim.video[:T], height)
    w_in = video.shape[2]
    scale = height / anim.height
    K = anim.camera.K[0].clone()
    K[:2] *= scale
    w2c = camera_to_model(anim.camera.world_to_camera[0], anim.world_normalization)
    # the novel view: the input camera turned about the model frame's vertical axis through the origin
    a = np.radians(NOVEL_AZIMUTH_DEG)
    turn = torch.eye(4)
    turn[:2, :2] = torch.tensor([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=torch.float32)
    cams = Cameras(K=torch.stack([K, K]), world_to_camera=torch.stack([w2c, w2c @ turn]))
    out = []
    for t in range(T):
        r = rasterize(anim.model_gaussians[t], cams, w_in, height, background=1.0, backend="auto").rgb  # [2, H, W, 3]
        out.append(torch.cat([video[t], r[0], r[1]], dim=1))
        if progress is not None:
            progress("preview", t + 1, T)
    return (torch.stack(out).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def build_report(anim: Animation, extra: dict | None = None) -> dict:
    v = anim.vertices
    motion = float(np.linalg.norm(v - v[:1], axis=-1).mean()) if len(v) else 0.0
    return {
        "frames": anim.num_frames,
        "fps": anim.fps,
        "vertices": int(v.shape[1]),
        "faces": int(len(anim.faces)),
        "gaussians": int(anim.model_gaussians.num),
        "segments": len(anim.latents),
        "motion_magnitude": {"used": anim.magnitude, "read_from_video": anim.predicted_magnitude},
        "mean_vertex_displacement": motion,
        "settings": anim.settings,
        "refinement": anim.refinement,
        "timings_s": {k: round(float(x), 4) for k, x in anim.timings.items()},
        "torch": torch.__version__,
        "python": platform.python_version(),
        **(extra or {}),
    }


def write_outputs(anim: Animation, out_dir, preview: bool = True, progress=None, extra_report: dict | None = None) -> Path:
    """Write every output of ``anim`` into ``out_dir`` (created; earlier outputs replaced)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        np.save(tmp / "vertices.npy", anim.vertices.astype(np.float32))
        write_pc2(tmp / "animation.pc2", anim.vertices, start_frame=0.0, sample_rate=1.0)
        write_ply_sequence(tmp / "gaussians", anim.normalization.invert_gaussians(anim.model_gaussians), normals=False)
        timings = dict(anim.timings)
        if preview:
            import time

            t0 = time.perf_counter()
            write_video(tmp / "preview.mp4", render_preview(anim, progress=progress), fps=anim.fps)
            timings["preview"] = time.perf_counter() - t0
        camera_to_json(anim.camera, anim.width, anim.height, tmp / "camera.json")
        anim_report = build_report(anim, extra_report)
        anim_report["timings_s"] = {k: round(float(x), 4) for k, x in timings.items()}
        (tmp / "report.json").write_text(json.dumps(anim_report, indent=2, default=str))
        out_dir.mkdir(exist_ok=True)
        swap_in(tmp, out_dir, OUTPUT_FILES)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def swap_in(new_dir: Path, out_dir: Path, names) -> None:
    """Replace the outputs ``names`` in ``out_dir`` with those in ``new_dir`` (same file system) as
    one step: the previous outputs are moved aside into ``new_dir`` first — all of them, so one this
    run did not write (a preview, with ``preview=False``) does not stay beside the new result — and
    when a move fails (a file held open on Windows) the new ones are taken out and the previous ones
    put back before the error is raised."""
    aside = Path(tempfile.mkdtemp(prefix="previous-", dir=new_dir))
    moved_aside, moved_in = [], []
    try:
        for name in names:
            if (out_dir / name).exists():
                os.replace(out_dir / name, aside / name)
                moved_aside.append(name)
        for name in names:
            if (new_dir / name).exists():
                os.replace(new_dir / name, out_dir / name)
                moved_in.append(name)
    except BaseException:
        for name in moved_in:
            _try_replace(out_dir / name, new_dir / name)
        for name in moved_aside:
            _try_replace(aside / name, out_dir / name)
        raise


def _try_replace(src: Path, dst: Path) -> None:
    """os.replace while undoing a failed swap: the first error is the one to report."""
    try:
        os.replace(src, dst)
    except OSError:
        pass
