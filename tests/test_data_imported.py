"""Imported animations (glTF/GLB/FBX through bpy in a subprocess) and the Blender renderer.

The import tests use the assets in ``../shared/assets`` and skip without them or without a
``bpy`` module in this interpreter; the retiming and validation tests need neither.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gvf_core.data.imported import (
    ImportedClip,
    bpy_available,
    find_assets,
    import_animations,
    load_extracted,
    render_blender,
    resample_clip,
)

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"

needs_assets = pytest.mark.skipif(not ASSETS.is_dir(), reason="../shared/assets is absent")
needs_bpy = pytest.mark.skipif(not bpy_available(), reason="this Python has no bpy module (pip install bpy==5.0.1)")

# folder -> (file, number of clips, vertices after evaluation), README of ../shared/assets
EXPECTED = {
    "greenman": ("greenman.glb", 4, 196),  # skinned, 4 actions
    "CesiumMilkTruck": ("CesiumMilkTruck.glb", 1, 3564),  # rigid node animation (wheels)
    "AnimatedMorphCube": ("AnimatedMorphCube.gltf", 1, 24),  # morph targets
    "AnimatedMorphSphere": ("AnimatedMorphSphere.gltf", 1, 1876),  # morph targets
    "SimpleMorph": ("SimpleMorph.gltf", 1, 3),  # one triangle, morph targets
}
# greenman's "0_pose" is a 4-key action whose keys all equal the bind pose (largest deviation
# of any channel from identity: 2.4e-7), so the file itself makes it static.
STATIC_CLIPS = {("greenman", "0_pose")}

_cache: dict[str, tuple[list[ImportedClip], float]] = {}


def _import(folder: str) -> tuple[list[ImportedClip], float]:
    """Clips of an asset at 24 fps and the seconds the import took (imported once per session)."""
    if folder not in _cache:
        t0 = time.perf_counter()
        clips = import_animations(ASSETS / folder / EXPECTED[folder][0], fps=24.0)
        _cache[folder] = (clips, time.perf_counter() - t0)
    return _cache[folder]


# --------------------------------------------------------------------------- every clip of every asset


@needs_assets
@needs_bpy
@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_every_clip_imports(folder):
    clips, seconds = _import(folder)
    _file, num_clips, V = EXPECTED[folder]
    assert len(clips) == num_clips, [c.name for c in clips]
    assert seconds < 20.0
    for clip in clips:
        assert clip.source.name == EXPECTED[folder][0]
        assert clip.fps == 24.0
        assert clip.num_frames >= 2
        assert clip.vertices.shape == (clip.num_frames, V, 3)
        assert clip.rest_vertices.shape == (V, 3) and clip.rest_vertices.dtype == np.float64
        assert np.isfinite(clip.vertices).all() and np.isfinite(clip.rest_vertices).all()
        assert clip.faces.dtype == np.int64 and clip.faces.shape[1] == 3
        assert clip.faces.min() >= 0 and clip.faces.max() < V
        assert clip.colors is not None and clip.colors.shape == (V, 3)
        assert 0.0 <= clip.colors.min() and clip.colors.max() <= 1.0
        moves = float(np.abs(clip.vertices - clip.vertices[:1]).max())
        size = float(np.ptp(clip.rest_vertices, axis=0).max())
        if (folder, clip.action) in STATIC_CLIPS:
            assert moves < 1e-4 * size
        else:
            assert moves > 1e-2 * size, f"{folder}/{clip.action} does not move"
        mesh = clip.rest_mesh()
        assert mesh.num_vertices == V and mesh.vertex_colors is not None


def test_expected_covers_shared_assets():
    if not ASSETS.is_dir():
        pytest.skip("../shared/assets is absent")
    found = {p.parent.name for p in find_assets(ASSETS)}
    assert found == set(EXPECTED)


@needs_assets
@needs_bpy
def test_greenman_clip_names_and_lengths():
    clips, _ = _import("greenman")
    # glTF times 1/24 .. t_end, keys every 1/24 s: the actions span frames [1, n].
    assert [(c.action, c.num_frames) for c in clips] == [("0_pose", 4), ("1_idle", 60), ("2_move", 30), ("3_attack", 20)]
    # skinning deforms: the clip does not stay rigid
    c = clips[3]
    e = c.faces[:, :2]
    lengths = np.linalg.norm(c.vertices[:, e[:, 0]] - c.vertices[:, e[:, 1]], axis=-1)
    assert np.ptp(lengths, axis=0).max() > 1e-3
    # world frame +Z up: a humanoid stands on z ~ 0 and is taller than deep
    r = c.rest_vertices
    ext = np.ptp(r, axis=0)
    assert abs(r[:, 2].min()) < 0.1 and ext[2] > ext[1]


@needs_assets
@needs_bpy
def test_truck_wheels_are_rigid_and_on_the_ground():
    (clip,), _ = _import("CesiumMilkTruck")
    assert clip.num_frames == 31  # 1.25 s at 24 fps, both ends
    v = clip.vertices
    e = clip.faces[:, :2]
    lengths = np.linalg.norm(v[:, e[:, 0]] - v[:, e[:, 1]], axis=-1)
    assert np.ptp(lengths, axis=0).max() < 1e-4  # node animation: rigid parts, no deformation
    moving = np.abs(v - v[:1]).max(axis=(0, 2)) > 1e-4
    assert 0 < moving.sum() < clip.num_vertices  # the wheels turn, the body stays
    assert np.allclose(v[0], clip.rest_vertices, atol=1e-5)  # rest = first frame for node animation
    assert abs(clip.rest_vertices[:, 2].min()) < 0.05  # +Z up, wheels on the ground
    assert clip.colors.std(axis=0).max() > 0.05  # texture sampled at the UVs, not uniform


@needs_assets
@needs_bpy
def test_morph_rest_is_the_basis_and_resampling_follows_the_curves():
    (clip24,), _ = _import("SimpleMorph")
    assert clip24.num_frames == 97  # keys at 0..4 s
    # rest = basis shape (morph weights 0), even though the file's default weights are 0.5
    assert np.allclose(clip24.rest_vertices, [[0, 0, 0], [1, 0, 0], [0.5, 0, 0.5]], atol=1e-6)
    (clip10,) = import_animations(ASSETS / "SimpleMorph" / "SimpleMorph.gltf", fps=10.0)
    assert clip10.fps == 10.0 and clip10.num_frames == 41
    # linear keys: Blender's subframe sampling == linear retiming of the 24 fps samples
    np.testing.assert_allclose(clip10.vertices, resample_clip(clip24.vertices, 24.0, 10.0), atol=1e-5)


# --------------------------------------------------------------------------- FBX


_MAKE_FBX = textwrap.dedent(
    """
    import sys, bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=sys.argv[1], disable_bone_shape=True)
    bpy.ops.export_scene.fbx(filepath=sys.argv[2], bake_anim=True, bake_anim_use_all_actions=True,
                             bake_anim_use_nla_strips=False)
    """
)


@needs_assets
@needs_bpy
def test_fbx_skinned_takes(tmp_path):
    fbx = tmp_path / "greenman.fbx"
    subprocess.run([sys.executable, "-c", _MAKE_FBX, str(ASSETS / "greenman" / "greenman.glb"), str(fbx)], check=True, capture_output=True, timeout=120)
    clips = import_animations(fbx, fps=24.0)
    gltf, _ = _import("greenman")
    assert len(clips) == 4
    assert all(c.num_vertices >= 196 for c in clips)
    moving = [c for c in clips if np.abs(c.vertices - c.vertices[:1]).max() > 1e-2]
    assert len(moving) == 3
    # the same motion as the glTF: the attack clip reaches the same extent
    attack = next(c for c in clips if c.action.endswith("3_attack"))
    np.testing.assert_allclose(np.ptp(attack.vertices, axis=1).max(0), np.ptp(gltf[3].vertices, axis=1).max(0), rtol=0.05)


# --------------------------------------------------------------------------- errors


@needs_bpy
def test_corrupt_asset_names_the_file(tmp_path):
    bad = tmp_path / "broken_asset.glb"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="broken_asset.glb"):
        import_animations(bad)


def _triangle_gltf(path: Path) -> Path:
    """A valid, static glTF: one triangle, no animation (buffer embedded as a data URI)."""
    import base64
    import json

    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "buffers": [{"byteLength": 36, "uri": "data:application/octet-stream;base64," + base64.b64encode(pos.tobytes()).decode()}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]}],
    }
    path.write_text(json.dumps(doc))
    return path


@needs_bpy
def test_static_gltf_has_no_clips(tmp_path):
    assert import_animations(_triangle_gltf(tmp_path / "static_triangle.gltf")) == []


def test_missing_and_unsupported_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_asset.glb"):
        import_animations(tmp_path / "no_such_asset.glb")
    obj = tmp_path / "static_mesh.obj"
    obj.write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="static_mesh.obj"):
        import_animations(obj)


def test_corrupt_extracted_npz_names_the_file(tmp_path):
    bad = tmp_path / "cached_clip.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="cached_clip.npz"):
        load_extracted(bad)
    good = dict(faces=np.array([[0, 1, 2]]), rest_vertices=np.eye(3), fps=np.float64(24), num_clips=np.int64(1))
    np.savez(bad, **good, clip_0_vertices=np.full((3, 3, 3), np.nan))
    with pytest.raises(ValueError, match="cached_clip.npz.*NaN"):
        load_extracted(bad)
    np.savez(bad, **good, clip_0_vertices=np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        load_extracted(bad)
    np.savez(bad, **good, clip_0_vertices=np.zeros((2, 3, 3)))
    (clip,) = load_extracted(bad, source="asset.glb")
    assert clip.num_frames == 2 and clip.source == Path("asset.glb")


# --------------------------------------------------------------------------- retiming (numpy)


@pytest.mark.parametrize("src,dst", [(24.0, 24.0), (30.0, 24.0), (24.0, 10.0), (10.0, 24.0)])
def test_resample_clip_is_exact_for_linear_motion(src, dst):
    T = 13
    t = np.arange(T) / src
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 5, 3))
    v = a[None] + t[:, None, None] * b[None]  # [T, V, 3], linear in time
    out = resample_clip(v, src, dst)
    n = int(np.floor((T - 1) / src * dst + 1e-6)) + 1
    assert out.shape == (n, 5, 3)
    t2 = np.arange(n) / dst
    np.testing.assert_allclose(out, a[None] + t2[:, None, None] * b[None], atol=1e-12)
    if src == dst:
        np.testing.assert_array_equal(out, v)


# --------------------------------------------------------------------------- Blender rendering


def _camera_for(points: np.ndarray, width=96, height=80) -> dict:
    """An OpenCV camera looking at ``points`` from the front-right, principal point off centre."""
    centre = (points.min(0) + points.max(0)) / 2
    radius = np.linalg.norm(np.ptp(points, axis=0)) / 2
    eye = centre + np.array([0.6, -1.0, 0.5]) / np.linalg.norm([0.6, -1.0, 0.5]) * 3.0 * radius
    fwd = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([right, down, fwd])
    w2c[:3, 3] = -w2c[:3, :3] @ eye
    return {"width": width, "height": height, "fx": 90.0, "fy": 90.0, "cx": width / 2 - 6.0, "cy": height / 2 + 4.0, "world_to_camera": w2c}


def _projected_bbox(points: np.ndarray, cam: dict) -> np.ndarray:
    w2c = np.asarray(cam["world_to_camera"])
    p = points @ w2c[:3, :3].T + w2c[:3, 3]
    u = cam["fx"] * p[:, 0] / p[:, 2] + cam["cx"]
    v = cam["fy"] * p[:, 1] / p[:, 2] + cam["cy"]
    return np.array([u.min(), u.max(), v.min(), v.max()])


def _alpha_bbox(rgba: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(rgba[..., 3] > 127)
    return np.array([xs.min(), xs.max() + 1, ys.min(), ys.max() + 1], dtype=np.float64)


@needs_assets
@needs_bpy
@pytest.mark.parametrize("engine", ["workbench", "cycles"])
def test_blender_render_silhouette_matches_projection(engine):
    clips, _ = _import("greenman")
    clip = clips[3]
    frames = clip.vertices[[0, clip.num_frames // 2]]
    cam = _camera_for(frames.reshape(-1, 3))
    t0 = time.perf_counter()
    images = render_blender(frames, clip.faces, cam, colors=clip.colors, engine=engine, samples=4)
    seconds = time.perf_counter() - t0
    if seconds > 30.0:
        pytest.skip(f"{engine} took {seconds:.0f} s")
    assert images.shape == (2, 80, 96, 4) and images.dtype == np.uint8
    for img, verts in zip(images, frames):
        assert img[0, 0, 3] == 0  # transparent film
        np.testing.assert_allclose(_alpha_bbox(img), _projected_bbox(verts, cam), atol=1.5)
        body = img[..., 3] > 200
        assert img[body][:, 1].mean() > img[body][:, 2].mean()  # the green man is green
    assert np.abs(images[0].astype(int) - images[1].astype(int)).max() > 0  # frames differ
