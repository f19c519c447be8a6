"""Shape from template (gvf_core/models/template_fit.py): points of a known rest shape fitted to
their 2-D tracks, their neighbour distances kept."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from gvf_core.models.sampler import Cancelled
from gvf_core.models.template_fit import (TemplateFitSettings, fit_template, local_rotations, neighbour_spokes,
                                          neighbours, rotation_matrices)
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


def test_a_cauchy_track_loss_lets_tracks_that_follow_the_wrong_surface_go():
    """Flow errors are heavy-tailed (a track that slid onto another part is pixels off, not a
    fraction of one): with ``cauchy`` the fit follows the good tracks and lets those go."""
    from gvf_core.models.rigid_motion import weighted_track_loss

    small = torch.tensor([[0.1, 0.3]])
    ones = torch.ones_like(small)
    torch.testing.assert_close(weighted_track_loss(small, ones, cauchy=1.0), weighted_track_loss(small, ones),
                               rtol=0.05, atol=0)  # ½e² for small errors either way
    error = torch.tensor([[10.0]], requires_grad=True)
    weighted_track_loss(error, torch.ones(1, 1), cauchy=1.0).backward()
    assert 0 < float(error.grad) < 0.15  # the pull of a 10-pixel error fades (smooth L1: 1)

    K, w2c = _camera()
    points, truth = _hinged_plate()
    positions = project(truth, K, w2c, SIZE)
    gen = torch.Generator().manual_seed(2)
    wrong = torch.rand(positions.shape[:2], generator=gen) < 0.15
    wrong[0] = False
    slid = positions + wrong[..., None] * torch.tensor([6.0, -4.0]) / SIZE  # 15 % of the tracks 7 px off
    errors = {}
    for name, cauchy in (("smooth L1", 0.0), ("Cauchy", 1.0)):
        fitted = fit_template(points, truth - points, slid, torch.ones(slid.shape[:2]), K, w2c, SIZE,
                              settings=TemplateFitSettings(cauchy=cauchy))  # from the truth: what pulls it off
        errors[name] = float(_camera_frame(w2c, points + fitted - truth)[..., :2].norm(dim=-1).mean())
    print(f"image-plane error with 15 % slid tracks: smooth L1 {errors['smooth L1']:.4f}, Cauchy {errors['Cauchy']:.4f}")
    assert errors["Cauchy"] < 0.7 * errors["smooth L1"], errors  # measured: 0.0037 → 0.0013


def test_rotation_matrices_and_local_rotations():
    from scipy.spatial.transform import Rotation

    vectors = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [0.0, 2.5, 0.0], [1e-7, 0.0, 0.0]])
    torch.testing.assert_close(rotation_matrices(vectors),
                               torch.as_tensor(Rotation.from_rotvec(vectors.numpy()).as_matrix(), dtype=torch.float32),
                               atol=1e-6, rtol=0)
    gen = torch.Generator().manual_seed(3)
    rest = torch.rand(60, 3, generator=gen)
    edges = neighbours(rest, 6)
    turn = rotation_matrices(torch.tensor([0.4, -0.7, 0.2]))
    moved = torch.stack([rest, rest @ turn.T + torch.tensor([0.5, 0.0, -1.0])])  # [2, P, 3]: still, turned and moved
    found = local_rotations(rest, moved, edges)
    assert found.shape == (2, 60, 3, 3)
    torch.testing.assert_close(found[0], torch.eye(3).expand(60, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(found[1], turn.expand(60, 3, 3), atol=1e-5, rtol=0)
    mirrored = local_rotations(rest, rest * torch.tensor([1.0, 1.0, -1.0]), edges)
    assert torch.allclose(torch.linalg.det(mirrored), torch.ones(60), atol=1e-5)  # a rotation, never a reflection


def _arap_energy(points, moved, edges):
    """Mean squared distance of each neighbourhood in ``moved`` from its best-turned rest copy."""
    turned = (local_rotations(points, moved, edges) @ neighbour_spokes(points, edges).transpose(-1, -2))
    return float((neighbour_spokes(moved, edges) - turned.transpose(-1, -2)).pow(2).sum(-1).mean())


def test_the_arap_term_keeps_each_neighbourhood_a_turned_copy_of_its_rest_one():
    """Distances alone let a neighbourhood shear or fold along the camera's rays while keeping its
    lengths near; with ``w_arap`` each neighbourhood stays closer to a rigidly turned copy."""
    K, w2c = _camera()
    points, truth = _hinged_plate()
    gen = torch.Generator().manual_seed(4)
    noisy = project(truth, K, w2c, SIZE) + torch.randn(truth.shape[0], truth.shape[1], 2, generator=gen) / SIZE
    start = 0.3 * (truth - points)
    edges = neighbours(points, TemplateFitSettings().neighbours)
    energy = {}
    for w_arap in (0.0, 10.0):
        fitted = fit_template(points, start, noisy, torch.ones(noisy.shape[:2]), K, w2c, SIZE,
                              settings=TemplateFitSettings(iterations=150, cauchy=1.0, w_arap=w_arap))
        assert torch.all(fitted[0] == 0)
        energy[w_arap] = _arap_energy(points, (points + fitted)[1:], edges)
    print(f"ARAP energy of the fit: without the term {energy[0.0]:.3e}, with it {energy[10.0]:.3e}")
    assert energy[10.0] < 0.7 * energy[0.0]


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
