"""Shape from template (gvf_core/models/template_fit.py): points of a known rest shape fitted to
their 2-D tracks, their neighbour distances kept."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from gvf_core.models.sampler import Cancelled
from gvf_core.models.template_fit import TemplateFitSettings, fit_template, neighbours
from gvf_core.models.video_inputs import project

SIZE = 64


def _camera():
    """A camera 3 units in front of the origin looking down −z (OpenCV: +z forward), 64² crop."""
    w2c = torch.eye(4)
    w2c[:3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    w2c[2, 3] = 3.0
    K = torch.tensor([[80.0, 0, SIZE / 2], [0, 80.0, SIZE / 2], [0, 0, 1]])
    return K, w2c


def _hinged_plate(T: int = 6):
    """A flat plate in the image plane, its right half turning about a vertical hinge toward the
    camera (out of the image plane): a motion that keeps every distance on each half."""
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(400, 2, generator=gen) * 2 - 1
    points = torch.cat([xy * 0.5, torch.zeros(400, 1)], -1)
    right = points[:, 0] > 0
    frames = []
    for t in range(T):
        a = math.radians(50.0) * t / (T - 1)
        moved = points.clone()
        x = points[right, 0]
        moved[right, 0] = x * math.cos(a)
        moved[right, 2] = x * math.sin(a)  # toward the camera (it sits at +z)
        frames.append(moved)
    return points, torch.stack(frames)


def _camera_frame(w2c, points):
    return points @ w2c[:3, :3].T


def test_neighbour_distances_take_out_the_noise_of_the_tracks():
    """Flow is noisy point to point; keeping the rest shape's neighbour distances averages it out.
    (From a flat start they do not find the turn in depth: the distance term is flat there to first
    order, and depth stays the start's — the diffusion sample's — business.)"""
    K, w2c = _camera()
    points, truth = _hinged_plate()
    gen = torch.Generator().manual_seed(1)
    noisy = project(truth, K, w2c, SIZE) + torch.randn(truth.shape[0], truth.shape[1], 2, generator=gen) / SIZE  # 1 px
    weights = torch.ones(noisy.shape[:2])
    errors = {}
    for name, w_edge in (("free", 0.0), ("kept", TemplateFitSettings().w_edge)):
        fitted = fit_template(points, torch.zeros_like(truth), noisy, weights, K, w2c, SIZE,
                              settings=TemplateFitSettings(w_edge=w_edge))
        assert torch.all(fitted[0] == 0)  # frame 0 is the rest state
        errors[name] = float(_camera_frame(w2c, points + fitted - truth)[..., :2].norm(dim=-1).mean())
    print(f"image-plane error: points free {errors['free']:.4f}, distances kept {errors['kept']:.4f}")
    assert errors["kept"] < 0.7 * errors["free"]  # measured: 0.0203 → 0.0115


def test_exact_tracks_are_met():
    K, w2c = _camera()
    points, truth = _hinged_plate()
    positions = project(truth, K, w2c, SIZE)
    fitted = fit_template(points, torch.zeros_like(truth), positions, torch.ones(positions.shape[:2]), K, w2c, SIZE,
                          settings=TemplateFitSettings(iterations=200, w_edge=0.0, w_prior=0.0, w_smooth=0.0))
    reprojected = project(points + fitted, K, w2c, SIZE)
    assert (reprojected - positions)[1:].norm(dim=-1).mean() * SIZE < 0.2  # pixels


def test_shapes_cancel_and_neighbours():
    K, w2c = _camera()
    points, truth = _hinged_plate(T=3)
    positions = project(truth, K, w2c, SIZE)
    with pytest.raises(ValueError, match="disagree"):
        fit_template(points, torch.zeros(3, 10, 3), positions, torch.ones(3, 400), K, w2c, SIZE)
    with pytest.raises(Cancelled):
        fit_template(points, torch.zeros_like(truth), positions, torch.ones(3, 400), K, w2c, SIZE, cancel=lambda: True)
    calls = []
    fit_template(points, torch.zeros_like(truth), positions, torch.ones(3, 400), K, w2c, SIZE,
                 settings=replace(TemplateFitSettings(), iterations=5), progress=lambda i, n: calls.append((i, n)))
    assert calls[-1] == (5, 5)
    nb = neighbours(points[:3], 8)
    assert nb.shape == (3, 2) and not (nb == torch.arange(3)[:, None]).any()
