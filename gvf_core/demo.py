"""The bundled sample, and ``gvf canonical``: mesh → canonical Gaussians → PLY + turntable.

``gvf canonical MESH --out DIR`` writes ``canonical.ply`` (the Gaussians in the input file's own axes and units, so
they line up with the asset in any 3DGS viewer) and ``turntable.gif`` (rendered in
the model frame), plus ``report.json`` with settings and timings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from gvf_core.cameras import Cameras
from gvf_core.canonical import mesh_to_gaussians
from gvf_core.mesh import load_mesh
from gvf_core.normalize import Normalization
from gvf_core.ply import write_ply
from gvf_core.render import rasterize
from gvf_core.video import write_video

SAMPLE_ASSET = Path(__file__).resolve().parent / "assets" / "greenman" / "greenman.glb"
SAMPLE_VIDEO = SAMPLE_ASSET.parent / "walk.mp4"
"""The bundled driving video: the sample asset walking, seen from the default camera
(made by scripts/make_sample_video.py)."""


def render_turntable(gaussians, frames: int = 36, size: int = 256, elevation_deg: float = 15.0,
                     distance: float = 2.6, background: float = 1.0, backend: str = "auto",
                     views_per_batch: int = 6, progress=None) -> torch.Tensor:
    """[frames, size, size, 3] renders of model-frame Gaussians on a circle of cameras."""
    azimuths = np.linspace(0.0, 360.0, frames, endpoint=False)
    cams = Cameras.orbit(azimuths, elevation_deg=elevation_deg, distance=distance, fov_deg=40.0, width=size, height=size)
    out = []
    with torch.no_grad():
        for start in range(0, frames, views_per_batch):
            out.append(rasterize(gaussians, cams[start : start + views_per_batch], size, size, background=background, backend=backend).rgb)
            if progress is not None:
                progress(min(start + views_per_batch, frames), frames)
    return torch.cat(out)


def canonical_turntable(mesh_path, out_dir, num_gaussians: int = 8192, seed: int = 0, frames: int = 36,
                        size: int = 256, video_format: str = "gif", up: str = "auto", backend: str = "auto",
                        progress=None) -> dict:
    out_dir = Path(out_dir)
    timings = {}
    t0 = time.perf_counter()
    mesh = load_mesh(mesh_path, up=up)
    # normalize from the file's own axes so the inverse lands back in them
    norm = Normalization.fit(mesh.to_file_frame(mesh.vertices), rotation=mesh.to_world_from_file)
    model_mesh = mesh.with_vertices(norm.apply(mesh.to_file_frame(mesh.vertices)))
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bound = mesh_to_gaussians(model_mesh, n=num_gaussians, seed=seed)
    gaussians = bound.canonical
    timings["canonical_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    images = render_turntable(gaussians, frames=frames, size=size, backend=backend, progress=progress)
    timings["turntable_render_s"] = time.perf_counter() - t0

    out_dir.mkdir(parents=True, exist_ok=True)
    ply_path = write_ply(out_dir / "canonical.ply", norm.invert_gaussians(gaussians))
    video_path = write_video(out_dir / f"turntable.{video_format}", images, fps=12)
    report = {
        "mesh": str(mesh_path),
        "vertices": mesh.num_vertices,
        "faces": mesh.num_faces,
        "num_gaussians": gaussians.num,
        "seed": seed,
        "normalization": norm.to_dict(),
        "outputs": {"ply": str(ply_path), "turntable": str(video_path)},
        "timings": timings,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report
