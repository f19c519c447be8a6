"""Make the bundled sample driving video: the greenman walking, seen from the default camera.

    .venv/bin/python scripts/make_sample_video.py   # needs bpy (pip install -e ".[blender]")

Writes gvf_core/assets/greenman/walk.mp4 (256×256, 24 fps, white background). The clip
starts at the mesh's rest pose (frame 0 must show the pose of the mesh being animated),
eases into the glTF's "2_move" action over 6 frames and plays it once: 36 frames. The
asset is rendered with the project's splat renderer from the documented default front
camera (gvf_core/pipeline/inputs.py: DEFAULT_CAMERA), so `gvf animate` needs no --camera.
"""

from __future__ import annotations


import numpy as np
import torch

from gvf_core.canonical import mesh_to_gaussians
from gvf_core.data.imported import import_animations
from gvf_core.demo import SAMPLE_ASSET
from gvf_core.mesh import load_mesh, mesh_from_arrays
from gvf_core.pipeline.inputs import default_camera
from gvf_core.render import rasterize
from gvf_core.video import write_video

OUT = SAMPLE_ASSET.parent / "walk.mp4"
ACTION, EASE_FRAMES, SIZE = "2_move", 6, 256


def main() -> None:
    clip = next(c for c in import_animations(SAMPLE_ASSET, fps=24.0) if c.action == ACTION)
    rest = clip.rest_vertices
    u = np.arange(1, EASE_FRAMES + 1, dtype=np.float64)[:, None, None] / EASE_FRAMES
    w = 3 * u ** 2 - 2 * u ** 3
    ease = (1 - w) * rest[None] + w * clip.vertices[:1]
    track = np.concatenate([rest[None], ease[:-1], clip.vertices])  # rest, easing, the action
    mesh = mesh_from_arrays(rest, clip.faces, vertex_colors=clip.colors)
    bound = mesh_to_gaussians(mesh, n=16384, seed=0)
    cam = default_camera(load_mesh(SAMPLE_ASSET).vertices, SIZE, SIZE)
    with torch.no_grad():
        states = bound.gaussians_at(torch.as_tensor(track, dtype=torch.float32))
        frames = rasterize(states, cam, SIZE, SIZE, background=1.0).rgb[:, 0]
    write_video(OUT, frames, fps=24.0)
    print(f"wrote {OUT} ({len(track)} frames)")


if __name__ == "__main__":
    main()
