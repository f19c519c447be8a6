"""Photometric refinement of bound canonical Gaussians, and pruning."""

import numpy as np
import torch
import trimesh

from gvf_core import Cameras
from gvf_core.canonical import RefineConfig, mesh_to_gaussians, refine_canonical
from gvf_core.gaussians import rgb_to_sh0
from gvf_core.mesh import mesh_from_arrays
from gvf_core.render import rasterize

SIZE = 48


def views(n=6):
    return Cameras.orbit(np.linspace(0, 360, n, endpoint=False), elevation_deg=20, distance=2.4, fov_deg=40, width=SIZE, height=SIZE)


def render(bound, cams):
    with torch.no_grad():
        return rasterize(bound.canonical, cams, SIZE, SIZE, background=1.0, backend="torch")


def sphere_and_box():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.35)
    box = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    box.apply_translation((0.55, 0.0, 0.0))
    merged = trimesh.util.concatenate([sphere, box])
    mesh = mesh_from_arrays(merged.vertices, merged.faces, base_color=np.array([0.5, 0.5, 0.5]))
    return mesh, len(sphere.faces)


def test_refinement_recovers_colors_and_keeps_bindings():
    mesh, _ = sphere_and_box()
    start = mesh_to_gaussians(mesh, n=300, seed=0)
    target = mesh_to_gaussians(mesh, n=300, seed=0)
    positions = target.canonical.means
    target.sh0 = rgb_to_sh0(torch.sigmoid(4 * positions))  # a colour ramp over the object
    cams = views()
    images = render(target, cams).rgb
    before = (render(start, cams).rgb - images).abs().mean().item()

    cfg = RefineConfig(steps=60, views_per_step=3, backend="torch", min_opacity=0.0, seed=1)
    result = refine_canonical(start, images, cams, config=cfg)
    after = (render(result.gaussians, cams).rgb - images).abs().mean().item()

    assert after < 0.4 * before, (before, after)
    assert result.losses[-1] < result.losses[0]
    assert torch.equal(result.gaussians.binding.face_idx, start.binding.face_idx)
    assert torch.equal(result.gaussians.binding.bary, start.binding.bary)
    assert result.backend == "torch"
    # the input is untouched, and the run is deterministic under the seed
    assert torch.equal(start.sh0, mesh_to_gaussians(mesh, n=300, seed=0).sh0)
    again = refine_canonical(start, images, cams, config=cfg)
    assert again.losses == result.losses


def test_refinement_prunes_gaussians_the_images_do_not_show():
    mesh, sphere_faces = sphere_and_box()
    start = mesh_to_gaussians(mesh, n=300, seed=0)
    on_box = start.binding.face_idx >= sphere_faces
    target = mesh_to_gaussians(mesh, n=300, seed=0)
    target.opacity_logits = torch.where(on_box, torch.tensor(-12.0), target.opacity_logits)  # box invisible
    cams = views(8)
    images = render(target, cams).rgb
    masks = render(target, cams).alpha[..., 0]

    cfg = RefineConfig(steps=80, views_per_step=4, backend="torch", min_opacity=0.02, seed=0)
    result = refine_canonical(start, images, cams, masks=masks, config=cfg)
    kept_box = int((result.gaussians.binding.face_idx >= sphere_faces).sum())
    kept_sphere = int((result.gaussians.binding.face_idx < sphere_faces).sum())
    assert result.pruned == result.gaussians.num * 0 + (start.num - result.gaussians.num)
    assert kept_box < 0.2 * int(on_box.sum()), kept_box
    assert kept_sphere == int((~on_box).sum())  # nothing visible was pruned


def test_progress_can_stop_refinement_early():
    mesh, _ = sphere_and_box()
    start = mesh_to_gaussians(mesh, n=200, seed=0)
    cams = views(2)
    images = render(start, cams).rgb
    seen = []

    def progress(step, total, loss):
        seen.append(step)
        return step < 3

    result = refine_canonical(start, images, cams, config=RefineConfig(steps=50, backend="torch"), progress=progress)
    assert seen == [1, 2, 3]
    assert len(result.losses) == 3
