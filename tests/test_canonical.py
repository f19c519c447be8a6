"""Canonical Gaussians: sampling, face bindings, exact deformation, the way back to vertices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from gvf_core.canonical import Binding, BoundGaussians, VertexSolver, mesh_to_gaussians, prune, sample_surface, surface_points
from gvf_core.geometry import face_frames, knn
from gvf_core.mesh import MeshData, mesh_from_arrays

F64 = torch.float64


def _mesh(tm: trimesh.Trimesh) -> MeshData:
    return mesh_from_arrays(tm.vertices, tm.faces)


def _randomize_local(bound: BoundGaussians, seed: int = 0) -> BoundGaussians:
    """Anisotropic discs at random in-plane angles (the default ones are round, angle 0)."""
    g = torch.Generator().manual_seed(seed)
    N = bound.num
    log_s = bound.local_log_scales.clone()
    log_s[:, 0] += torch.rand(N, generator=g, dtype=F64) * 0.8 + 0.1
    log_s[:, 1] -= torch.rand(N, generator=g, dtype=F64) * 0.8
    return BoundGaussians(
        binding=bound.binding,
        local_angle=(torch.rand(N, generator=g, dtype=F64) * 2 - 1) * math.pi,
        local_log_scales=log_s,
        opacity_logits=bound.opacity_logits,
        sh0=bound.sh0,
        faces=bound.faces,
        rest_vertices=bound.rest_vertices,
    )


def _min_spacing(points: np.ndarray) -> float:
    dist, _ = knn(points, points, 2)
    return float(dist[:, 1].min())


# --------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("method", ["area", "blue_noise"])
def test_sampling_deterministic_counts_and_no_degenerate_faces(method):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    V = len(sphere.vertices)
    # append degenerate faces: a repeated vertex and three collinear vertices
    extra_v = np.array([[0.0, 0.0, 2.0], [0.5, 0.0, 2.0], [1.0, 0.0, 2.0]])
    vertices = np.concatenate([sphere.vertices, extra_v])
    faces = np.concatenate([sphere.faces, [[0, 0, 1], [V, V + 1, V + 2]]])
    mesh = mesh_from_arrays(vertices, faces)

    f1, b1 = sample_surface(mesh, 1000, seed=3, method=method)
    f2, b2 = sample_surface(mesh, 1000, seed=3, method=method)
    f3, _ = sample_surface(mesh, 1000, seed=4, method=method)
    assert f1.shape == (1000,) and b1.shape == (1000, 3) and f1.dtype == np.int64
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(f1, f3)
    assert f1.max() < len(sphere.faces)  # the two degenerate faces are never chosen
    assert (b1 >= 0).all() and np.allclose(b1.sum(1), 1.0)


def test_blue_noise_spreads_samples_more_evenly_than_area():
    mesh = _mesh(trimesh.creation.icosphere(subdivisions=3))
    spacing = {}
    for method in ("area", "blue_noise"):
        f, b = sample_surface(mesh, 2000, seed=0, method=method)
        spacing[method] = _min_spacing(surface_points(mesh.vertices, mesh.faces, f, b))
    assert spacing["blue_noise"] > 3 * spacing["area"]


# --------------------------------------------------------------------------- exact deformation
@pytest.fixture(scope="module")
def capsule_bound() -> BoundGaussians:
    mesh = _mesh(trimesh.creation.capsule(height=1.0, radius=0.2, count=[16, 16]))
    return _randomize_local(mesh_to_gaussians(mesh, n=1024, seed=0, dtype=F64))


def test_mesh_to_gaussians_defaults():
    mesh = mesh_from_arrays(trimesh.creation.icosphere(2).vertices, trimesh.creation.icosphere(2).faces, base_color=(0.2, 0.4, 0.6))
    bound = mesh_to_gaussians(mesh, n=512, seed=0)
    assert bound.num == 512 and bound.rest_vertices.dtype == torch.float32
    g = bound.canonical
    assert g.means.shape == (512, 3) and g.dtype == torch.float32
    torch.testing.assert_close(g.opacities, torch.full((512,), 0.9))
    torch.testing.assert_close(g.rgb, torch.tensor([0.2, 0.4, 0.6]).expand(512, 3))
    s = g.scales
    torch.testing.assert_close(s[:, 0], s[:, 1])
    torch.testing.assert_close(s[:, 2], 0.1 * s[:, 0])
    # discs overlap their neighbours: sigma is a good fraction of the spacing
    dist, _ = knn(g.means.numpy(), g.means.numpy(), 2)
    assert np.median(s[:, 0].numpy() / dist[:, 1]) > 0.5
    # means lie on the surface (radius ~1 on the icosphere)
    assert (g.means.norm(dim=1) - 1).abs().max() < 0.05
    # no NaN gradients at the (round, undeformed) rest pose
    v = bound.rest_vertices.clone().requires_grad_(True)
    out = bound.gaussians_at(v)
    (out.means.sum() + out.quats.sum() + out.log_scales.sum()).backward()
    assert torch.isfinite(v.grad).all()


def test_rest_pose_returns_local_parameters_exactly(capsule_bound):
    b = capsule_bound
    g = b.gaussians_at(b.rest_vertices)
    c = b.canonical
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh0"):
        torch.testing.assert_close(getattr(g, name), getattr(c, name), atol=0, rtol=0)
    torch.testing.assert_close(g.log_scales, b.local_log_scales, atol=1e-12, rtol=0)
    frames = face_frames(b.rest_vertices, b.faces)[b.binding.face_idx]  # [N, 3, 3]
    ca, sa = torch.cos(b.local_angle), torch.sin(b.local_angle)
    Rz = torch.zeros(b.num, 3, 3, dtype=F64)
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = ca, -sa, sa, ca, 1.0
    torch.testing.assert_close(g.rotation_matrices, frames @ Rz, atol=1e-12, rtol=0)


def test_rigid_motion_moves_gaussians_rigidly(capsule_bound):
    b = capsule_bound
    R = torch.tensor(Rotation.random(random_state=7).as_matrix())
    t = torch.tensor([0.3, -1.2, 0.5], dtype=F64)
    c = b.canonical
    g = b.gaussians_at(b.rest_vertices @ R.T + t)
    torch.testing.assert_close(g.means, c.means @ R.T + t, atol=1e-5, rtol=0)
    torch.testing.assert_close(g.covariances, R @ c.covariances @ R.T, atol=1e-5 * c.covariances.abs().max().item(), rtol=0)
    torch.testing.assert_close(g.rotation_matrices, R @ c.rotation_matrices, atol=1e-10, rtol=0)  # same axes, not swapped
    torch.testing.assert_close(g.log_scales, c.log_scales, atol=1e-10, rtol=0)


def test_stretch_along_x_stretches_covariances():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    bound = _randomize_local(mesh_to_gaussians(_mesh(box), n=600, seed=1, dtype=F64), seed=1)
    D = torch.diag(torch.tensor([2.0, 1.0, 1.0], dtype=F64))
    c = bound.canonical
    g = bound.gaussians_at(bound.rest_vertices @ D.T)
    normals = face_frames(bound.rest_vertices, bound.faces)[bound.binding.face_idx][..., 2]  # [N, 3]
    along_x = normals[:, 0].abs() > 0.5
    assert 0 < int(along_x.sum()) < bound.num
    # faces in the xy- and xz-planes: Sigma' = D Sigma D^T (in-plane stretch, normal unchanged)
    expected = torch.where(along_x[:, None, None], c.covariances, D @ c.covariances @ D.T)
    scale = c.covariances.abs().max().item()
    torch.testing.assert_close(g.covariances, expected, atol=1e-12 * scale, rtol=1e-10)
    torch.testing.assert_close(g.means, c.means @ D.T, atol=1e-12, rtol=0)
    # e.g. a face in the xy-plane: its in-plane block is A Sigma A^T with A = diag(2, 1)
    on_z = normals[:, 2].abs() > 0.5
    A = torch.diag(torch.tensor([2.0, 1.0], dtype=F64))
    torch.testing.assert_close(g.covariances[on_z][:, :2, :2], A @ c.covariances[on_z][:, :2, :2] @ A.T, atol=1e-12 * scale, rtol=1e-10)


def test_general_linear_map_transforms_in_plane_covariance(capsule_bound):
    b = capsule_bound
    D = torch.eye(3, dtype=F64) + 0.3 * torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert torch.linalg.det(D) > 0
    c = b.canonical
    g = b.gaussians_at(b.rest_vertices @ D.T)
    var_n = b.local_log_scales[:, 2].exp() ** 2  # normal variance, unchanged
    n0 = c.rotation_matrices[..., 2]
    n1 = g.rotation_matrices[..., 2]
    in_plane_rest = c.covariances - var_n[:, None, None] * n0[:, :, None] * n0[:, None, :]
    in_plane_def = g.covariances - var_n[:, None, None] * n1[:, :, None] * n1[:, None, :]
    scale = c.covariances.abs().max().item()
    torch.testing.assert_close(in_plane_def, D @ in_plane_rest @ D.T, atol=1e-11 * scale, rtol=1e-9)


def test_state_is_continuous_in_time():
    # anisotropic discs on an evenly tessellated capsule bending by ~230 degrees in 40 steps
    capsule = trimesh.creation.capsule(height=1.0, radius=0.2, count=[16, 16])
    vertices, faces = trimesh.remesh.subdivide_to_size(capsule.vertices, capsule.faces, max_edge=0.05)
    b = _randomize_local(mesh_to_gaussians(mesh_from_arrays(vertices, faces), n=1024, seed=0, dtype=F64))
    frames = torch.from_numpy(np.stack([_bend(vertices, 4.0 * t / 39) for t in range(40)]))
    g = b.gaussians_at(frames)
    R = g.rotation_matrices  # [T, N, 3, 3]
    assert (R[-1] - R[0]).norm(dim=-2).max() > 1.0  # the motion itself is large
    # scales never swap (the axis that was the longer one at rest stays x or y)
    assert (g.log_scales[1:] - g.log_scales[:-1]).abs().max() < 0.1
    # axes move by small steps, except where the in-plane ellipse is nearly round, where
    # its axes are ill-defined and turn fast (inherent to any eigen-decomposition)
    step = (R[1:] - R[:-1]).norm(dim=-2).amax(-1)  # [T-1, N] largest change of an axis
    log_aniso = (g.log_scales[..., 0] - g.log_scales[..., 1]).abs()  # [T, N]
    round_ = torch.minimum(log_aniso[1:], log_aniso[:-1]) < 0.1  # axes within 10 % of each other
    assert step[~round_].max() < 0.2, step[~round_].max()  # typical steps are ~0.04
    assert int((step > 0.2).sum()) <= 0.001 * step.numel()


def test_batched_leading_axes_and_float32(capsule_bound):
    b = capsule_bound
    frames = b.rest_vertices + 0.01 * torch.randn(2, 3, *b.rest_vertices.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    g = b.gaussians_at(frames)
    assert g.means.shape == (2, 3, b.num, 3) and g.opacity_logits.shape == (2, 3, b.num)
    one = b.gaussians_at(frames[1, 2])
    torch.testing.assert_close(g.means[1, 2], one.means)
    torch.testing.assert_close(g.covariances[1, 2], one.covariances)
    g32 = b.to(torch.float32).gaussians_at(frames.float())
    assert g32.dtype == torch.float32
    torch.testing.assert_close(g32.covariances.double(), g.covariances, atol=1e-5 * g.covariances.abs().max().item(), rtol=0)
    with pytest.raises(ValueError, match="vertices tensor"):
        b.gaussians_at(frames[..., :10, :])


def test_gradients_flow_to_vertices_and_local_parameters():
    # two triangles sharing an edge, deformed away from rest, anisotropic discs
    rest = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.3]], dtype=F64)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    binding = Binding(
        face_idx=torch.tensor([0, 0, 1]),
        bary=torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.3, 0.3, 0.4]], dtype=F64),
        offset=torch.tensor([0.0, 0.05, -0.02], dtype=F64),
    )
    gen = torch.Generator().manual_seed(0)
    posed = (rest + 0.1 * torch.randn(4, 3, generator=gen, dtype=F64)).requires_grad_(True)
    angle = torch.tensor([0.3, -1.1, 2.0], dtype=F64, requires_grad=True)
    log_scales = torch.tensor([[-1.0, -1.6, -3.0], [-1.2, -0.9, -3.0], [-0.7, -1.5, -2.5]], dtype=F64, requires_grad=True)

    def f(vertices, local_angle, local_log_scales):
        bound = BoundGaussians(binding, local_angle, local_log_scales, torch.zeros(3, dtype=F64), torch.zeros(3, 3, dtype=F64), faces, rest)
        g = bound.gaussians_at(vertices)
        return g.means, g.quats, g.log_scales

    assert torch.autograd.gradcheck(f, (posed, angle, log_scales), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- pruning, serialization
def test_prune_removes_low_opacity_and_keeps_bindings_aligned(tmp_path):
    mesh = _mesh(trimesh.creation.icosphere(2))
    bound = mesh_to_gaussians(mesh, n=300, seed=0)
    logits = bound.opacity_logits.clone()
    low = torch.zeros(300, dtype=torch.bool)
    low[::7] = True
    logits[low] = -6.0  # opacity 0.0025
    bound = BoundGaussians(bound.binding, bound.local_angle, bound.local_log_scales, logits, bound.sh0, bound.faces, bound.rest_vertices)
    pruned = prune(bound, min_opacity=0.02)
    assert pruned.num == 300 - int(low.sum())
    torch.testing.assert_close(pruned.binding.face_idx, bound.binding.face_idx[~low])
    torch.testing.assert_close(pruned.binding.bary, bound.binding.bary[~low])
    torch.testing.assert_close(pruned.canonical.means, bound.canonical.means[~low])
    torch.testing.assert_close(pruned.sh0, bound.sh0[~low])

    from safetensors.torch import load_file, save_file

    path = tmp_path / "bound.safetensors"
    save_file(pruned.to_dict(), str(path))
    back = BoundGaussians.from_dict(load_file(str(path)))
    for k, v in pruned.to_dict().items():
        assert torch.equal(back.to_dict()[k], v), k
    with pytest.raises(ValueError, match="missing"):
        BoundGaussians.from_dict({"faces": pruned.faces})


# --------------------------------------------------------------------------- the way back
def _bend(vertices: np.ndarray, curvature: float) -> np.ndarray:
    """Bend a z-aligned shape around the y axis (smooth, large motion)."""
    if abs(curvature) < 1e-12:
        return vertices.copy()
    x, y, z = vertices.T
    r = 1.0 / curvature
    phi = curvature * z
    return np.stack([r - (r - x) * np.cos(phi), y, (r - x) * np.sin(phi)], axis=1)


def _round_trip_error(mesh: MeshData, frames: np.ndarray, n: int) -> float:
    """max |V_rec - V| / bbox diagonal over all vertices and frames."""
    bound = mesh_to_gaussians(mesh, n=n, seed=0, dtype=F64)
    rest = torch.from_numpy(mesh.vertices)
    means = bound.gaussians_at(torch.from_numpy(frames)).means  # [T, N, 3]
    delta = means - bound.gaussians_at(rest).means
    solver = VertexSolver.from_bound(bound)
    recon = rest + solver.solve(delta)  # [T, V, 3], torch in -> torch out
    assert isinstance(recon, torch.Tensor) and recon.shape == frames.shape
    return float((recon - torch.from_numpy(frames)).norm(dim=-1).max()) / mesh.bbox_diagonal


def test_round_trip_bent_capsule():
    mesh = _mesh(trimesh.creation.capsule(height=1.0, radius=0.2))
    frames = np.stack([_bend(mesh.vertices, 2.0 * t / 7) for t in range(8)])  # up to ~100 degrees of bend
    assert np.abs(frames[-1] - frames[0]).max() > 0.3 * mesh.bbox_diagonal
    err = _round_trip_error(mesh, frames, n=4096)
    assert err < 0.005, f"max vertex error {err:.4%} of the bbox diagonal"


def test_round_trip_two_close_parts_stay_apart():
    def part(center):
        tm = trimesh.creation.box(extents=(0.3, 0.3, 0.3))
        tm = tm.subdivide().subdivide()
        return tm.vertices + center, tm.faces

    va, fa = part([-0.16, 0.0, 0.0])  # a 0.02 gap between the boxes
    vb, fb = part([0.16, 0.0, 0.0])
    mesh = mesh_from_arrays(np.concatenate([va, vb]), np.concatenate([fa, fb + len(va)]))
    diag = mesh.bbox_diagonal
    frames = []
    for t in np.linspace(0, 1, 8):
        rot_a = Rotation.from_euler("z", 30 * t, degrees=True).as_matrix()
        rot_b = Rotation.from_euler("x", -30 * t, degrees=True).as_matrix()
        shift = np.array([0.0, 0.3 * diag * t, 0.0])
        a = (va - [-0.16, 0, 0]) @ rot_a.T + [-0.16, 0, 0] - shift
        b = (vb - [0.16, 0, 0]) @ rot_b.T + [0.16, 0, 0] + shift
        frames.append(np.concatenate([a, b]))
    frames = np.stack(frames)
    err = _round_trip_error(mesh, frames, n=4096)
    assert err < 0.005, f"max vertex error {err:.4%} of the bbox diagonal"


def test_vertex_solver_numpy_and_unseen_parts():
    # a second, unsampled component (no Gaussian on it) stays put
    a = trimesh.creation.icosphere(2)
    b = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    vertices = np.concatenate([a.vertices, b.vertices + [3.0, 0, 0]])
    faces = np.concatenate([a.faces, b.faces + len(a.vertices)])
    sphere_only = mesh_from_arrays(a.vertices, a.faces)
    bound = mesh_to_gaussians(sphere_only, n=800, seed=0, dtype=F64)
    solver = VertexSolver(bound.binding, faces, len(vertices), rest_vertices=vertices)
    delta = np.tile([0.1, -0.2, 0.05], (bound.num, 1))
    out = solver.solve(delta)  # [N, 3] numpy -> [V, 3] numpy
    assert isinstance(out, np.ndarray) and out.shape == (len(vertices), 3)
    np.testing.assert_allclose(out[: len(a.vertices)], np.tile([0.1, -0.2, 0.05], (len(a.vertices), 1)), atol=1e-4)
    np.testing.assert_allclose(out[len(a.vertices) :], 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="delta_means"):
        solver.solve(delta[:10])
