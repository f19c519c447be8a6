"""Headless Blender tests of the write-back (gvf_addon/writeback.py): every output mode read back
through the depsgraph, non-destructive, re-run, save/reopen, scene timing, object transform.

Needs the bpy module (``pip install bpy==5.0.1``); skipped without it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from gvf_addon import writeback  # noqa: E402
from gvf_addon.writeback import MODES, WriteBackError, find_results, read_back, remove_result, write_animation  # noqa: E402
from gvf_core.pc2 import read_pc2  # noqa: E402

T = 6
ATOL = 1e-5


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    writeback._session_cache_dir = None
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _make_source(name="Src", transform=False):
    """A low-poly UV sphere with a Subdivision modifier (evaluated vertex count != original)."""
    bpy.ops.mesh.primitive_uv_sphere_add(segments=8, ring_count=5, radius=1.0)
    obj = bpy.context.active_object
    obj.name = name
    obj.data.name = name
    modifier = obj.modifiers.new("Subdivision", "SUBSURF")
    modifier.levels = 1
    if transform:
        obj.location = (1.5, -2.0, 0.75)
        obj.rotation_euler = (0.3, -0.4, 1.1)
        obj.scale = (1.5, 0.5, 2.0)
    bpy.context.view_layer.update()
    return obj


def _evaluated_rest(obj) -> np.ndarray:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = obj.evaluated_get(depsgraph).data
    out = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", out)
    return out.reshape(-1, 3)


def _animation(rest: np.ndarray, frames: int = T, seed: int = 0) -> np.ndarray:
    """[T, V, 3]: frame 0 = rest, then a wave plus per-vertex noise (distinct every frame)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=np.float32)[:, None, None]
    wave = 0.3 * np.sin(t * 0.9 + rest[None, :, :1] * 2.0) * np.array([0.0, 0.0, 1.0], np.float32)
    noise = 0.05 * rng.standard_normal((frames, *rest.shape)).astype(np.float32) * (t > 0)
    return (rest[None] + wave * (t > 0) + noise).astype(np.float32)


def _source_state(obj):
    mesh = obj.data
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    return mesh.name, len(mesh.vertices), len(mesh.polygons), co, mesh.shape_keys


def _assert_source_unchanged(obj, before):
    name, nv, nf, co, keys = _source_state(obj)
    assert (name, nv, nf) == before[:3]
    np.testing.assert_array_equal(co, before[3])
    assert keys is None and before[4] is None
    assert [m.type for m in obj.modifiers] == ["SUBSURF"]


def _gvf_datablocks():
    return {
        "objects": sorted(o.name for o in bpy.data.objects if ".gvf" in o.name),
        "meshes": sorted(m.name for m in bpy.data.meshes if ".gvf" in m.name),
        "actions": sorted(a.name for a in bpy.data.actions if ".gvf" in a.name),
        "node_groups": sorted(g.name for g in bpy.data.node_groups if ".gvf" in g.name),
    }


def _check_frames(scene, result, expected: np.ndarray, frame_start: int):
    T_ = expected.shape[0]
    for k in sorted({0, 1, T_ // 2, T_ - 1}):
        np.testing.assert_allclose(read_back(scene, result, frame_start + k), expected[k], atol=ATOL, err_msg=f"frame {k}")
    # Before the first and after the last frame the ends are held.
    np.testing.assert_allclose(read_back(scene, result, frame_start - 1), expected[0], atol=ATOL)
    np.testing.assert_allclose(read_back(scene, result, frame_start + T_ + 2), expected[-1], atol=ATOL)
    # Between two frames (subframes): linear interpolation, in every mode.
    for k, u in ((1, 0.5), (T_ - 2, 0.25)):
        want = (1 - u) * expected[k] + u * expected[k + 1]
        np.testing.assert_allclose(read_back(scene, result, frame_start + k + u), want, atol=ATOL, err_msg=f"frame {k}+{u}")


# --------------------------------------------------------------------------- each mode


@pytest.mark.parametrize("mode", MODES)
def test_mode_reads_back_exactly_and_leaves_the_source_alone(mode, tmp_path):
    source = _make_source()
    before = _source_state(source)
    rest = _evaluated_rest(source)
    assert len(rest) != len(source.data.vertices)  # the modifier matters
    verts = _animation(rest)
    scene = bpy.context.scene
    frame_start = 3

    result = write_animation(bpy.context, source, verts, mode, fps=24.0, frame_start=frame_start,
                             pc2_path=tmp_path / "anim.pc2" if mode == "MESH_CACHE" else None)

    assert result.name == "Src.gvf" and result.data.name == "Src.gvf"
    assert result["gvf_source"] == "Src" and result["gvf_mode"] == mode and source["gvf_result"] == "Src.gvf"
    assert result.parent is None
    assert set(result.users_collection) == set(source.users_collection)
    assert source.hide_get() and source.hide_render  # only the animated copy shows
    assert (scene.frame_start, scene.frame_end, scene.frame_current) == (frame_start, frame_start + T - 1, frame_start)
    _check_frames(scene, result, verts, frame_start)
    _assert_source_unchanged(source, before)

    if mode == "SHAPE_KEYS":
        keys = result.data.shape_keys.key_blocks
        assert [k.name for k in keys] == ["Basis"] + [f"frame_{frame_start + k:04d}" for k in range(T)]
        np.testing.assert_allclose(_key_co(keys[0]), rest, atol=0)  # basis = the evaluated rest mesh
        assert len(result.data.polygons) > 0
    elif mode == "MESH_CACHE":
        modifier = result.modifiers["GVF Mesh Cache"]
        assert (modifier.cache_format, modifier.deform_mode, modifier.frame_start) == ("PC2", "OVERWRITE", frame_start)
        assert Path(modifier.filepath) == (tmp_path / "anim.pc2")  # unsaved .blend: absolute
        stored, start, rate = read_pc2(tmp_path / "anim.pc2")
        np.testing.assert_array_equal(stored, verts)
        assert result.data.shape_keys is None
    else:
        assert len(result.data.polygons) == 0 and len(result.data.edges) == 0
        assert result.modifiers["GVF Points"].type == "NODES"
        evaluated = result.evaluated_get(bpy.context.evaluated_depsgraph_get())
        geometry = evaluated.evaluated_geometry()
        assert len(geometry.pointcloud.points) == verts.shape[1]


def _key_co(block) -> np.ndarray:
    out = np.empty(len(block.data) * 3, dtype=np.float32)
    block.data.foreach_get("co", out)
    return out.reshape(-1, 3)


def test_point_cloud_with_its_own_points():
    source = _make_source()
    points = np.random.default_rng(1).uniform(-1, 1, (T, 50, 3)).astype(np.float32)
    verts = _animation(_evaluated_rest(source))
    result = write_animation(bpy.context, source, verts, "POINT_CLOUD", fps=30.0, frame_start=1, points=points, point_radius=0.02)
    assert len(result.data.vertices) == 50
    modifier = result.modifiers["GVF Points"]
    radius_id = next(s.identifier for s in modifier.node_group.interface.items_tree if s.name == "Radius")
    assert modifier[radius_id] == pytest.approx(0.02)
    _check_frames(bpy.context.scene, result, points, 1)


def test_single_frame_and_torch_input():
    torch = pytest.importorskip("torch")
    source = _make_source()
    verts = _animation(_evaluated_rest(source), frames=1)
    result = write_animation(bpy.context, source, torch.from_numpy(verts).double(), "SHAPE_KEYS", fps=24.0)
    assert bpy.context.scene.frame_end == 1
    for frame in (0, 1, 5):
        np.testing.assert_allclose(read_back(bpy.context.scene, result, frame), verts[0], atol=ATOL)


# --------------------------------------------------------------------------- re-run, remove, errors


def test_rerun_replaces_cleanly_across_modes():
    source = _make_source()
    rest = _evaluated_rest(source)
    scene = bpy.context.scene
    default_pc2 = None
    for i, mode in enumerate(("SHAPE_KEYS", "SHAPE_KEYS", "MESH_CACHE", "MESH_CACHE", "POINT_CLOUD", "SHAPE_KEYS")):
        verts = _animation(rest, seed=i)
        result = write_animation(bpy.context, source, verts, mode, fps=24.0)
        assert find_results(source) == [result]
        blocks = _gvf_datablocks()
        assert blocks["objects"] == ["Src.gvf"] and blocks["meshes"] == ["Src.gvf"]
        assert blocks["actions"] == ([] if mode == "MESH_CACHE" else ["Src.gvf"])
        assert blocks["node_groups"] == (["Src.gvf.points"] if mode == "POINT_CLOUD" else [])
        assert source.hide_get() and source.hide_render
        np.testing.assert_allclose(read_back(scene, result, 1 + T // 2), verts[T // 2], atol=ATOL)
        if mode == "MESH_CACHE":
            path = Path(bpy.path.abspath(result.modifiers["GVF Mesh Cache"].filepath))
            assert default_pc2 in (None, path)  # the same file, overwritten
            default_pc2 = path
            np.testing.assert_array_equal(read_pc2(path)[0], verts)
            assert path.parent.name.startswith("gvf_cache_")  # unsaved .blend: a session temp folder
        elif default_pc2 is not None:
            assert not default_pc2.exists()  # the previous result's own file went with it
    # no orphans anywhere
    assert all(m.users > 0 for m in bpy.data.meshes) and all(a.users > 0 for a in bpy.data.actions)

    assert remove_result(source) is True
    assert find_results(source) == [] and _gvf_datablocks() == {"objects": [], "meshes": [], "actions": [], "node_groups": []}
    assert not source.hide_get() and not source.hide_render and "gvf_result" not in source
    assert remove_result(source) is False


def test_remove_restores_an_already_hidden_source_and_keeps_user_pc2(tmp_path):
    source = _make_source()
    source.hide_render = True
    verts = _animation(_evaluated_rest(source))
    write_animation(bpy.context, source, verts, "MESH_CACHE", fps=24.0, pc2_path=tmp_path / "mine.pc2")
    write_animation(bpy.context, source, verts, "SHAPE_KEYS", fps=24.0)  # re-run in another mode
    assert (tmp_path / "mine.pc2").exists()  # a path the caller chose is never deleted
    remove_result(source)
    assert source.hide_render and not source.hide_get()


def test_bad_inputs_change_nothing(tmp_path):
    source = _make_source()
    rest = _evaluated_rest(source)
    good = write_animation(bpy.context, source, _animation(rest), "SHAPE_KEYS", fps=24.0)
    before = _gvf_datablocks()
    bad_nan = _animation(rest)
    bad_nan[2, 5, 1] = np.nan
    cases = [
        (_animation(rest)[:, :-1], "SHAPE_KEYS", "evaluated mesh"),  # wrong vertex count
        (_animation(rest)[0], "MESH_CACHE", "shape"),
        (bad_nan, "MESH_CACHE", "NaN"),
        (_animation(rest), "KEYFRAMES", "mode"),
    ]
    for verts, mode, message in cases:
        with pytest.raises(WriteBackError, match=message):
            write_animation(bpy.context, source, verts, mode, fps=24.0)
    with pytest.raises(WriteBackError, match="fps"):
        write_animation(bpy.context, source, _animation(rest), "SHAPE_KEYS", fps=0)
    with pytest.raises(OSError):  # the PC2 cannot be written: a folder is in the way
        write_animation(bpy.context, source, _animation(rest), "MESH_CACHE", fps=24.0, pc2_path=tmp_path)
    assert _gvf_datablocks() == before and find_results(source) == [good]
    assert len(bpy.data.meshes) == 2 and len(bpy.data.objects) == 2


def test_one_undo_removes_the_result():
    if not bpy.ops.ed.undo.poll():
        pytest.skip(
            "bpy.ops.ed.undo needs a window (its poll fails in background mode); write_animation is one "
            "function, so an operator with bl_options {'REGISTER', 'UNDO'} makes it one undo step"
        )
    source = _make_source()
    bpy.ops.ed.undo_push(message="before")
    write_animation(bpy.context, source, _animation(_evaluated_rest(source)), "SHAPE_KEYS", fps=24.0)
    bpy.ops.ed.undo_push(message="write-back")
    bpy.ops.ed.undo()
    assert _gvf_datablocks()["objects"] == []


# --------------------------------------------------------------------------- scene timing, transform, save/reopen


@pytest.mark.parametrize(
    "fps, rate, base",
    [(24.0, 24, 1.0), (29.97, 30, 1.001), (30000 / 1001, 30, 1.001), (23.976, 24, 1.001), (59.94, 60, 1.001),
     (12.5, 12, 12 / 12.5), (0.5, 1, 2.0)],
)
def test_scene_timing_follows_the_video(fps, rate, base):
    scene = bpy.context.scene
    writeback.set_scene_timing(scene, fps, 10, 32)
    assert (scene.frame_start, scene.frame_end) == (10, 41)
    assert scene.render.fps == rate and scene.render.fps_base == pytest.approx(base, rel=1e-6)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(fps, rel=2e-4)


def test_transformed_and_parented_source_keeps_world_positions():
    source = _make_source(transform=True)
    parent = bpy.data.objects.new("Parent", None)
    bpy.context.scene.collection.objects.link(parent)
    parent.location = (0.0, 3.0, -1.0)
    parent.rotation_euler = (0.0, 0.0, 0.7)
    parent.scale = (2.0, 2.0, 2.0)
    source.parent = parent
    bpy.context.view_layer.update()
    world = np.array(source.matrix_world)
    assert not np.allclose(world, np.eye(4))
    verts = _animation(_evaluated_rest(source))
    for mode in MODES:
        result = write_animation(bpy.context, source, verts, mode, fps=24.0)
        bpy.context.view_layer.update()
        assert result.parent is None
        np.testing.assert_allclose(np.array(result.matrix_world), world, atol=1e-5)
        local = read_back(bpy.context.scene, result, 1 + T - 1)
        want = verts[-1] @ world[:3, :3].T + world[:3, 3]
        np.testing.assert_allclose(local @ world[:3, :3].T + world[:3, 3], want, atol=1e-4)


def test_scene_argument_and_other_scene():
    """A Scene works as the first argument, also one that is not the context's (batch, bench)."""
    other = bpy.data.scenes.new("Other")
    mesh = bpy.data.meshes.new("Grid")
    mesh.from_pydata([(x, y, 0.0) for x in range(3) for y in range(3)], [], [(0, 1, 4, 3), (1, 2, 5, 4), (3, 4, 7, 6), (4, 5, 8, 7)])
    source = bpy.data.objects.new("Grid", mesh)
    other.collection.objects.link(source)
    rest = np.array([v.co for v in mesh.vertices], dtype=np.float32)
    verts = _animation(rest)
    for mode in MODES:
        result = write_animation(other, source, verts, mode, fps=25.0, frame_start=0)
        assert result.name in other.collection.objects
        _check_frames(other, result, verts, 0)
    assert (other.frame_start, other.frame_end, other.render.fps) == (0, T - 1, 25)
    assert bpy.context.scene.frame_end == 250  # the context's scene is untouched


def test_save_and_reopen_keeps_the_animation_and_a_relative_pc2(tmp_path):
    blend = tmp_path / "scene.blend"
    sources = {}
    for mode in MODES:
        source = _make_source(name=f"Src_{mode.lower()}")
        source.location.x = 3.0 * len(sources)
        sources[mode] = source
    bpy.context.view_layer.update()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))  # saved first: PC2 paths become '//' relative
    expected = {}
    for i, (mode, source) in enumerate(sources.items()):
        expected[mode] = _animation(_evaluated_rest(source), seed=i)
        write_animation(bpy.context, source, expected[mode], mode, fps=29.97, frame_start=1)
    modifier = bpy.data.objects["Src_mesh_cache.gvf"].modifiers["GVF Mesh Cache"]
    assert modifier.filepath == "//gvf_cache/Src_mesh_cache_gvf.pc2"
    assert (tmp_path / "gvf_cache" / "Src_mesh_cache_gvf.pc2").is_file()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end, scene.render.fps, scene.render.fps_base) == (1, T, 30, pytest.approx(1.001))
    for mode, verts in expected.items():
        result = bpy.data.objects[f"Src_{mode.lower()}.gvf"]
        assert result["gvf_mode"] == mode and bpy.data.objects[result["gvf_source"]]["gvf_result"] == result.name
        _check_frames(scene, result, verts, 1)
    modifier = bpy.data.objects["Src_mesh_cache.gvf"].modifiers["GVF Mesh Cache"]
    assert modifier.filepath.startswith("//")
    assert Path(bpy.path.abspath(modifier.filepath)).resolve() == (tmp_path / "gvf_cache" / "Src_mesh_cache_gvf.pc2").resolve()

    # Re-run after reopening still finds and replaces the saved result; removing deletes its own PC2.
    source = bpy.data.objects["Src_mesh_cache"]
    write_animation(bpy.context, source, expected["MESH_CACHE"][::-1].copy(), "MESH_CACHE", fps=24.0)
    assert len(find_results(source)) == 1
    remove_result(source)
    assert not (tmp_path / "gvf_cache").exists()


def test_read_back_accepts_a_depsgraph():
    source = _make_source()
    verts = _animation(_evaluated_rest(source))
    result = write_animation(bpy.context, source, verts, "SHAPE_KEYS", fps=24.0)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    np.testing.assert_allclose(read_back(depsgraph, result, 4), verts[3], atol=ATOL)
    assert math.isclose(bpy.context.scene.frame_current, 4)


def test_bench_runs_small_and_cleans_up():
    from gvf_addon.bench_writeback import run

    bpy.ops.mesh.primitive_cube_add()
    before = (len(bpy.data.scenes), len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.actions), len(bpy.data.node_groups))
    figures = run(frames=3, vertices=100, repeats=1)
    assert figures["vertices"] == 100 and figures["frames"] == 3 and figures["pc2_bytes"] == 32 + 3 * 100 * 12
    assert set(figures["modes"]) == set(MODES)
    assert all(row["seconds"] > 0 and row["playback_seconds_per_frame"] > 0 for row in figures["modes"].values())
    after = (len(bpy.data.scenes), len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.actions), len(bpy.data.node_groups))
    assert after == before


def test_materials_rename_and_duplicates():
    source = _make_source()
    mesh_material, object_material = bpy.data.materials.new("OnMesh"), bpy.data.materials.new("OnObject")
    source.data.materials.append(mesh_material)
    source.data.materials.append(None)
    source.material_slots[1].link = "OBJECT"
    source.material_slots[1].material = object_material
    rest = _evaluated_rest(source)
    result = write_animation(bpy.context, source, _animation(rest), "SHAPE_KEYS", fps=24.0)
    assert [(s.link, s.material) for s in result.material_slots] == [("DATA", mesh_material), ("OBJECT", object_material)]

    # A copy of the source carries its custom properties but does not take over the result.
    copy = source.copy()
    copy.data = source.data
    bpy.context.scene.collection.objects.link(copy)
    assert find_results(copy) == [] and find_results(source) == [result]
    # A duplicated result is the user's: a re-run replaces only the linked one.
    kept = result.copy()
    bpy.context.scene.collection.objects.link(kept)
    # Renaming the source keeps the link.
    source.name = "Renamed"
    assert find_results(source) == [result]
    new = write_animation(bpy.context, source, _animation(rest, seed=3), "SHAPE_KEYS", fps=24.0)
    assert new.name == "Renamed.gvf" and new["gvf_source"] == "Renamed"
    assert kept.name in bpy.data.objects and "Src.gvf" not in bpy.data.objects
    np.testing.assert_allclose(read_back(bpy.context.scene, kept, 2), _animation(rest)[1], atol=ATOL)


def test_gvf_bench_blender_prints_one_json_object(capsys):
    pytest.importorskip("bpy")
    import json as _json

    from gvf_core.cli import main

    assert main(["bench", "blender", "--json", "--frames", "3", "--vertices", "400", "--repeats", "1"]) == 0
    figures = _json.loads(capsys.readouterr().out)
    assert figures["frames"] == 3 and figures["vertices"] >= 400
