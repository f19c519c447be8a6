"""Mesh loading, colour lookup, geometry helpers and the model-frame normalization."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from gvf_core.gaussians import Gaussians
from gvf_core.geometry import face_areas, face_frames, farthest_point_sampling, knn, vertex_laplacian
from gvf_core.mesh import Y_UP_TO_Z_UP, load_mesh, mesh_from_arrays, sample_colors
from gvf_core.normalize import Normalization

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
GREENMAN = ASSETS / "greenman" / "greenman.glb"


# --------------------------------------------------------------------------- loading
@pytest.mark.skipif(not GREENMAN.is_file(), reason="shared test assets not present")
def test_load_greenman_glb_textured_and_z_up():
    mesh = load_mesh(GREENMAN)
    assert mesh.vertices.shape == (196, 3) and mesh.faces.shape[1] == 3
    assert mesh.texture is not None and mesh.uvs is not None
    np.testing.assert_array_equal(mesh.to_world_from_file, Y_UP_TO_Z_UP)
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert extent.argmax() in (0, 2) and extent[2] > extent[1]  # standing figure: tall along +Z
    # texture colours come out non-grey (the figure is green)
    rng = np.random.default_rng(0)
    face_idx = rng.integers(0, mesh.num_faces, 500)
    bary = rng.dirichlet(np.ones(3), 500)
    rgb = sample_colors(mesh, face_idx, bary)
    assert rgb.shape == (500, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert np.abs(rgb - 0.8).max() > 0.2
    assert rgb[:, 1].mean() > rgb[:, 2].mean()
    # the axis conversion is exactly invertible
    file_vertices = mesh.to_file_frame(mesh.vertices)
    raw = trimesh.load_scene(str(GREENMAN), process=False)
    np.testing.assert_allclose(file_vertices, next(iter(raw.geometry.values())).vertices, atol=1e-12)


def test_obj_keeps_vertex_order_and_up_axis(tmp_path):
    src = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(src.vertices))  # a vertex order trimesh would never produce itself
    inv = np.argsort(perm)
    vertices = src.vertices[perm]
    faces = inv[src.faces]
    uvs = (vertices[:, :2] + 1.0) / 2.0
    texture = np.zeros((8, 8, 3), dtype=np.uint8)
    texture[..., 0] = 200  # a red texture; the exported Kd 0.4 must not darken it
    from PIL import Image

    visual = trimesh.visual.TextureVisuals(uv=uvs, image=Image.fromarray(texture))
    path = tmp_path / "sphere.obj"
    trimesh.Trimesh(vertices, faces, visual=visual, process=False).export(path)

    as_z = load_mesh(path, up="z")
    np.testing.assert_allclose(as_z.vertices, vertices, atol=1e-6)  # OBJ text keeps ~7-8 digits
    np.testing.assert_array_equal(as_z.faces, faces)
    as_y = load_mesh(path)  # auto: OBJ is +Y up
    np.testing.assert_allclose(as_y.vertices, vertices @ Y_UP_TO_Z_UP.T, atol=1e-6)
    np.testing.assert_allclose(as_y.to_file_frame(as_y.vertices), as_z.vertices, atol=1e-12)
    np.testing.assert_allclose(as_z.uvs, uvs, atol=1e-6)
    rgb = sample_colors(as_z, np.arange(10), np.full((10, 3), 1 / 3))
    np.testing.assert_allclose(rgb, np.tile([200 / 255, 0, 0], (10, 1)), atol=1e-12)


def test_ply_vertex_colors_and_order(tmp_path):
    src = trimesh.creation.box()
    colors = np.tile(np.array([[255, 0, 0, 255]], dtype=np.uint8), (len(src.vertices), 1))
    colors[::2] = [0, 0, 255, 255]
    mesh_in = trimesh.Trimesh(src.vertices, src.faces, vertex_colors=colors, process=False)
    path = tmp_path / "box.ply"
    mesh_in.export(path)
    mesh = load_mesh(path, up="z")
    np.testing.assert_allclose(mesh.vertices, src.vertices)
    np.testing.assert_allclose(mesh.vertex_colors, colors[:, :3] / 255.0)
    # a corner sample takes exactly that vertex's colour
    rgb = sample_colors(mesh, np.array([0]), np.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(rgb[0], colors[src.faces[0, 0], :3] / 255.0)


def test_stl_is_z_up_and_corners_merged(tmp_path):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    path = tmp_path / "box.stl"
    box.export(path)
    mesh = load_mesh(path)  # auto: STL is +Z up (CAD convention, Blender's STL importer)
    assert mesh.num_vertices == 8 and mesh.num_faces == 12
    np.testing.assert_allclose(mesh.vertices.max(0) - mesh.vertices.min(0), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(mesh.to_world_from_file, np.eye(3))


def test_mesh_without_faces_raises_clear_error(tmp_path):
    path = tmp_path / "points.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(path)
    with pytest.raises(ValueError, match="points.ply.*no triangle faces"):
        load_mesh(path)
    with pytest.raises(ValueError, match="no triangle faces"):
        mesh_from_arrays(np.zeros((3, 3)), np.zeros((0, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="no vertices"):
        mesh_from_arrays(np.zeros((0, 3)), np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="NaN"):
        mesh_from_arrays(np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]]), [[0, 1, 2]])


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "broken.glb"
    bad.write_bytes(b"this is not a glb file")
    with pytest.raises(ValueError, match="broken.glb"):
        load_mesh(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_mesh(tmp_path / "missing.obj")
    with pytest.raises(ValueError, match="unsupported format"):
        (tmp_path / "x.fbx").write_text("x")
        load_mesh(tmp_path / "x.fbx")


def test_texture_lookup_bilinear_and_v_flip():
    # 2x2 texture: top row red, green; bottom row blue, white. UV (0,0) = bottom-left.
    tex = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    uvs = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75]])  # texel centres: blue, white, red
    mesh = mesh_from_arrays(v, [[0, 1, 2]], uvs=uvs, texture=tex)
    rgb = sample_colors(mesh, np.zeros(3, dtype=np.int64), np.eye(3))
    np.testing.assert_allclose(rgb, [[0, 0, 1], [1, 1, 1], [1, 0, 0]], atol=1e-12)
    mid = sample_colors(mesh, np.zeros(1, dtype=np.int64), np.array([[0.5, 0.5, 0.0]]))  # between blue and white
    np.testing.assert_allclose(mid[0], [0.5, 0.5, 1.0], atol=1e-12)


def test_color_fallbacks():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    plain = mesh_from_arrays(v, [[0, 1, 2]])
    np.testing.assert_allclose(sample_colors(plain, [0], [[1 / 3] * 3]), [[0.8, 0.8, 0.8]])
    based = mesh_from_arrays(v, [[0, 1, 2]], base_color=(0.1, 0.2, 0.3))
    np.testing.assert_allclose(sample_colors(based, [0], [[1 / 3] * 3]), [[0.1, 0.2, 0.3]])
    vc = mesh_from_arrays(v, [[0, 1, 2]], vertex_colors=np.eye(3))
    np.testing.assert_allclose(sample_colors(vc, [0], [[0.2, 0.3, 0.5]]), [[0.2, 0.3, 0.5]])


# --------------------------------------------------------------------------- geometry
def test_face_frames_orthonormal_batched_float64():
    mesh = trimesh.creation.icosphere(subdivisions=1)
    v = torch.tensor(mesh.vertices)[None].repeat(2, 1, 1)  # [2, V, 3] float64
    v[1] *= 2.0
    F = face_frames(v, torch.tensor(mesh.faces))
    assert F.shape == (2, len(mesh.faces), 3, 3) and F.dtype == torch.float64
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(F.transpose(-1, -2) @ F, eye.expand_as(F), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(F), torch.ones(F.shape[:2], dtype=torch.float64))
    # normals point outward on a sphere
    centers = torch.tensor(mesh.triangles_center)
    assert ((F[0, :, :, 2] * centers).sum(-1) > 0).all()
    torch.testing.assert_close(face_areas(v[0], mesh.faces), torch.tensor(mesh.area_faces))


def test_fps_knn_laplacian():
    pts = torch.rand(32768, 3, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    idx = farthest_point_sampling(pts, 8192, seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"FPS took {elapsed:.2f} s"
    assert idx.shape == (8192,) and len(set(idx.tolist())) == 8192
    torch.testing.assert_close(idx, farthest_point_sampling(pts, 8192, seed=0))
    assert not torch.equal(idx[:10], farthest_point_sampling(pts, 8192, seed=1)[:10])
    dist, nn = knn(pts[:100], pts[:5], 2)
    assert torch.equal(nn[:, 0], torch.arange(5)) and torch.all(dist[:, 0] == 0)

    box = trimesh.creation.box()
    L = vertex_laplacian(8, box.faces)
    np.testing.assert_allclose(np.asarray(L.sum(axis=1)).ravel(), 0)
    np.testing.assert_allclose(L.toarray(), L.toarray().T)
    Ln = vertex_laplacian(8, box.faces, normalized=True)
    np.testing.assert_allclose(Ln.diagonal(), 1.0)


# --------------------------------------------------------------------------- normalization
def _random_points(seed=0, shape=(50, 3)):
    return np.random.default_rng(seed).normal(size=shape) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]


def test_normalization_fit_and_exact_round_trip_numpy_torch():
    pts = _random_points()
    norm = Normalization.fit(pts, rotation=Y_UP_TO_Z_UP)
    model = norm.apply(pts)
    extent = model.max(0) - model.min(0)
    np.testing.assert_allclose(extent.max(), 1.0, atol=1e-15)
    np.testing.assert_allclose((model.max(0) + model.min(0)) / 2, 0.0, atol=1e-15)
    assert np.abs(norm.invert(model) - pts).max() <= 1e-12
    # any leading shape, torch in -> torch out, same dtype
    batch = torch.tensor(_random_points(1, (4, 7, 3)))
    out = norm.apply(batch)
    assert isinstance(out, torch.Tensor) and out.shape == batch.shape and out.dtype == torch.float64
    assert (norm.invert(out) - batch).abs().max() <= 1e-12
    np.testing.assert_allclose(out.numpy(), norm.apply(batch.numpy()), atol=1e-15)
    # JSON round trip is exact
    back = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(back.center, norm.center)
    np.testing.assert_array_equal(back.rotation, norm.rotation)
    assert back.scale == norm.scale
    with pytest.raises(ValueError, match="proper rotation"):
        Normalization(center=np.zeros(3), scale=1.0, rotation=np.diag([1.0, 1.0, -1.0]))


def test_normalization_gaussians_round_trip():
    g = torch.Generator().manual_seed(0)
    gs = Gaussians(
        means=torch.tensor(_random_points(2, (3, 20, 3))),
        quats=torch.randn(3, 20, 4, generator=g, dtype=torch.float64),
        log_scales=torch.randn(3, 20, 3, generator=g, dtype=torch.float64),
        opacity_logits=torch.randn(3, 20, generator=g, dtype=torch.float64),
        sh0=torch.randn(3, 20, 3, generator=g, dtype=torch.float64),
    )
    norm = Normalization.fit(gs.means[0], rotation=Y_UP_TO_Z_UP)
    model = norm.apply_gaussians(gs)
    # covariances transform as s^2 R C R^T
    R = torch.tensor(norm.rotation)
    torch.testing.assert_close(model.covariances, norm.scale**2 * R @ gs.covariances @ R.T, atol=1e-12, rtol=1e-10)
    back = norm.invert_gaussians(model)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh0"):
        assert (getattr(back, name) - getattr(gs, name)).abs().max() <= 1e-12, name
