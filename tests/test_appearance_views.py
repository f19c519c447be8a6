"""Fitting the canonical appearance to multiview renders (animate(views=...)) and reading them."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from gvf_core.camera_math import camera_dict, front_camera, look_at, orbit_offset
from gvf_core.cameras import Cameras
from gvf_core.canonical import mesh_to_gaussians
from gvf_core.demo import SAMPLE_ASSET
from gvf_core.gaussians import rgb_to_sh0
from gvf_core.mesh import load_mesh
from gvf_core.normalize import Normalization
from gvf_core.pipeline import InputError
from gvf_core.pipeline.animate import fit_appearance
from gvf_core.pipeline.inputs import camera_to_model, read_views
from gvf_core.render import rasterize


def _world_views(world: np.ndarray, count: int = 4, size: int = 64) -> tuple[list[dict], Cameras]:
    K, front = front_camera(world, size, size)
    centre = (world.min(0) + world.max(0)) / 2
    distance = float(np.linalg.norm(np.linalg.inv(front)[:3, 3] - centre))
    views = [camera_dict(K, look_at(centre + distance * orbit_offset(360.0 * i / count, 20.0), centre), size, size)
             for i in range(count)]
    cams = Cameras(K=torch.tensor(np.stack([K] * count)).float(),
                   world_to_camera=torch.tensor(np.stack([v["world_to_camera"] for v in views])).float())
    return views, cams


def test_fit_appearance_moves_colours_toward_the_renders(tmp_path):
    mesh = load_mesh(SAMPLE_ASSET)
    norm = Normalization.fit(mesh.vertices)
    bound = mesh_to_gaussians(mesh.with_vertices(norm.apply(mesh.vertices)), n=512, seed=0)
    red = replace(bound, sh0=rgb_to_sh0(torch.tensor([0.9, 0.1, 0.1]).expand_as(bound.sh0)))
    views, cams = _world_views(mesh.vertices)
    w2c = torch.stack([camera_to_model(cams.world_to_camera[i], norm) for i in range(len(cams))])
    with torch.no_grad():
        out = rasterize(red.canonical, Cameras(cams.K, w2c), 64, 64, background=0.0, backend="torch")
    rgba = torch.cat([out.rgb[:, :, :, :3] / out.alpha.clamp(min=1e-6), out.alpha], -1)
    images = (rgba.clamp(0, 1) * 255).round().byte().numpy()
    for i, view in enumerate(views):  # the folder format the add-on writes
        Image.fromarray(images[i]).save(tmp_path / f"view_{i:02d}.png")
        view["image"] = f"view_{i:02d}.png"
    (tmp_path / "views.json").write_text(json.dumps({"views": views}))
    fitted = fit_appearance(bound, tmp_path, norm, steps=40)
    colour = lambda b: b.canonical.rgb.mean(0)  # noqa: E731
    assert float((colour(fitted) - torch.tensor([0.9, 0.1, 0.1])).abs().sum()) < \
        0.5 * float((colour(bound) - torch.tensor([0.9, 0.1, 0.1])).abs().sum())


def test_read_views_errors(tmp_path):
    with pytest.raises(InputError, match="views.json"):
        read_views(tmp_path)
    (tmp_path / "views.json").write_text(json.dumps({"views": []}))
    with pytest.raises(InputError, match="no views"):
        read_views(tmp_path)
    view = camera_dict(np.array([[50, 0, 32], [0, 50, 32], [0, 0, 1.0]]), np.eye(4), 64, 64)
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(tmp_path / "v.png")
    (tmp_path / "views.json").write_text(json.dumps({"views": [{"image": "v.png", **view}]}))
    with pytest.raises(InputError, match="its camera says 64×64"):
        read_views(tmp_path)
