"""Headless Blender tests of the extension on the bundled sample (greenman + walk.mp4): panel
registration, camera conversion, reference render, the whole flow in every output mode read
back through the depsgraph, cancel, re-run + save/reload, extend, the headless operator, the
refine option reaching the worker, the batch command, and installing the built zip.

Needs the bpy module (``pip install -e ".[blender]"``); skipped without it. The model runs in a
real worker process (this Python), with small settings so the whole file takes about a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import gvf_addon  # noqa: E402
from gvf_addon import jobs  # noqa: E402
from gvf_addon.camera import apply_opencv_camera, matrix_world_from_world_to_camera, opencv_camera  # noqa: E402
from gvf_addon.scene_io import mesh_arrays, to_local  # noqa: E402
from gvf_addon.worker.client import WorkerClient  # noqa: E402
from gvf_addon.writeback import find_results, read_back  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "gvf_core" / "assets" / "greenman"
FAST = {"num_gaussians": 512}
ATOL = 1e-4


@pytest.fixture(scope="module")
def worker():
    client = WorkerClient(env={"OMP_NUM_THREADS": "1"})
    client.start()
    yield client
    client.stop()


def _register():
    try:
        gvf_addon.register()
    except ValueError:  # already registered by an earlier test
        pass


@pytest.fixture
def sample_scene():
    """An empty scene with the greenman imported, the sample video set and the front camera added."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    _register()
    bpy.ops.import_scene.gltf(filepath=str(SAMPLE / "greenman.glb"))
    obj = bpy.data.objects["1_body"]
    bpy.context.view_layer.objects.active = obj
    s = bpy.context.scene.gvf
    s.target = obj
    s.video_path = str(SAMPLE / "walk.mp4")
    assert bpy.ops.gvf.add_front_camera() == {"FINISHED"}
    yield obj
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _settings(**kw) -> jobs.JobSettings:
    base = dict(video_path=str(SAMPLE / "walk.mp4"), frames=4, steps=2, refine="off", options=dict(FAST))
    return jobs.JobSettings(**{**base, **kw})


def _snapshot():
    scene = bpy.context.scene
    objs = sorted((o.name, o.type, o.hide_render, o.hide_get()) for o in scene.objects)
    meshes = {}
    for o in scene.objects:
        if o.type == "MESH":
            co = np.empty(len(o.data.vertices) * 3, np.float32)
            o.data.vertices.foreach_get("co", co)
            meshes[o.name] = (co.copy(), o.data.shape_keys is None, len(o.modifiers))
    return objs, meshes, (scene.frame_start, scene.frame_end, scene.render.fps, scene.render.fps_base)


def _assert_same(a, b):
    assert a[0] == b[0] and a[2] == b[2]
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k][0], b[1][k][0])
        assert a[1][k][1:] == b[1][k][1:]


def _read(result, frame):
    return read_back(bpy.context.evaluated_depsgraph_get(), result, frame)


# ----------------------------------------------------------------------------- registration, camera
def test_register_adds_panel_operators_and_settings():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    _register()
    assert hasattr(bpy.types, "GVF_PT_animate") and bpy.types.GVF_PT_animate.bl_category == "GVF"
    for op in ("animate", "extend", "batch", "render_reference", "add_front_camera", "cancel", "check_dependencies",
               "free_model", "remove_result"):
        assert hasattr(bpy.ops.gvf, op), op
    s = bpy.context.scene.gvf
    assert (s.mode, s.refine, s.steps, s.strength) == ("SHAPE_KEYS", "auto", 2, 1.0)
    # the add-on process never imports gvf_core, so its default is a copy: the same as the library's
    from gvf_core.models.sampler_config import DEFAULT_SAMPLER

    assert s.steps == jobs.JobSettings.steps == jobs.P.AnimateRequest.steps == DEFAULT_SAMPLER.steps
    gvf_addon.unregister()
    assert not hasattr(bpy.types.Scene, "gvf")
    _register()


@pytest.mark.parametrize("fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
def test_camera_conversion_round_trips(fit):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 320, 180, 100
    data = bpy.data.cameras.new("c")
    data.lens, data.sensor_fit, data.shift_x, data.shift_y = 42.0, fit, 0.05, -0.03
    cam = bpy.data.objects.new("c", data)
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.5, -4.0, 1.2), (1.3, 0.1, 0.2)
    bpy.context.view_layer.update()
    cv = opencv_camera(cam, scene)
    # a world point projects to the same pixel through Blender's own camera model
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    p = np.array([0.3, 0.2, 0.9])
    ndc = world_to_camera_view(scene, cam, Vector(p))
    w2c = np.array(cv["world_to_camera"])
    x = w2c[:3, :3] @ p + w2c[:3, 3]
    u, v = cv["fx"] * x[0] / x[2] + cv["cx"], cv["fy"] * x[1] / x[2] + cv["cy"]
    assert abs(u - ndc.x * 320) < 1e-3 and abs(v - (1 - ndc.y) * 180) < 1e-3
    # and back: a camera built from the dict gives the same dict
    data2 = bpy.data.cameras.new("c2")
    apply_opencv_camera(data2, cv)
    cam2 = bpy.data.objects.new("c2", data2)
    scene.collection.objects.link(cam2)
    cam2.matrix_world = matrix_world_from_world_to_camera(w2c).T.tolist()
    bpy.context.view_layer.update()
    cv2 = opencv_camera(cam2, scene)
    for k in ("fx", "fy", "cx", "cy"):
        assert abs(cv2[k] - cv[k]) < 1e-3
    np.testing.assert_allclose(cv2["world_to_camera"], cv["world_to_camera"], atol=1e-5)


def test_front_camera_frames_the_sample_like_the_sample_video(sample_scene):
    cam = bpy.context.scene.camera
    assert cam.name == "GVF Front Camera" and bpy.context.scene.render.resolution_x == 256
    from gvf_core.camera_math import front_camera

    arrays = mesh_arrays(bpy.context.evaluated_depsgraph_get(), sample_scene)
    K, w2c = front_camera(arrays["vertices"], 256, 256)
    cv = opencv_camera(cam, bpy.context.scene)
    np.testing.assert_allclose(cv["world_to_camera"], w2c, atol=1e-5)
    assert abs(cv["fx"] - K[0, 0]) < 1e-3


def test_mesh_export_samples_each_material(sample_scene):
    """Two materials with different colours on one mesh → each face keeps its own colour."""
    bpy.ops.mesh.primitive_plane_add(size=2)
    plane = bpy.context.active_object
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.subdivide(number_cuts=1)
    bpy.ops.object.mode_set(mode="OBJECT")
    for name, colour in (("red", (1, 0, 0, 1)), ("blue", (0, 0, 1, 1))):
        mat = bpy.data.materials.new(name)
        bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        bsdf.inputs["Base Color"].default_value = colour
        plane.data.materials.append(mat)
    xs = np.array([p.center.x for p in plane.data.polygons])
    plane.data.polygons.foreach_set("material_index", (xs > 0).astype(np.int32))
    plane.location = (5, 0, 0)
    bpy.context.view_layer.update()
    arrays = mesh_arrays(bpy.context.evaluated_depsgraph_get(), plane)
    c, v = arrays["vertex_colors"], arrays["vertices"]
    left, right = v[:, 0] < 4.5, v[:, 0] > 5.5
    assert (c[left, 0] > 0.9).all() and (c[left, 2] < 0.1).all()
    assert (c[right, 2] > 0.9).all() and (c[right, 0] < 0.1).all()
    assert abs(v[:, 0].mean() - 5.0) < 1e-5  # the object transform is applied


# ----------------------------------------------------------------------------- reference render
def test_render_reference_writes_png_and_restores_scene(sample_scene, tmp_path):
    scene = bpy.context.scene
    engine, path, film = scene.render.engine, scene.render.filepath, scene.render.film_transparent
    other = bpy.data.objects["Icosphere"]
    hidden = other.hide_render
    scene.gvf.reference_path = str(tmp_path / "ref.png")
    assert bpy.ops.gvf.render_reference() == {"FINISHED"}
    img = bpy.data.images.load(str(tmp_path / "ref.png"))
    px = np.array(img.pixels[:]).reshape(img.size[1], img.size[0], 4)
    assert tuple(img.size) == (256, 256)
    assert 0.05 < (px[..., 3] > 0.5).mean() < 0.9  # the object on a transparent background
    assert (scene.render.engine, scene.render.filepath, scene.render.film_transparent) == (engine, path, film)
    assert other.hide_render == hidden


# ----------------------------------------------------------------------------- the whole flow
@pytest.mark.parametrize("mode", ["SHAPE_KEYS", "MESH_CACHE", "POINT_CLOUD"])
def test_animate_each_mode_reads_back_the_pipeline_arrays(sample_scene, worker, tmp_path, mode):
    bpy.context.scene.gvf.reference_path = str(tmp_path / "ref.png")
    assert bpy.ops.gvf.render_reference() == {"FINISHED"}
    job = jobs.prepare_animate(bpy.context, sample_scene, _settings(mode=mode), job_dir=tmp_path / "job")
    result, event = jobs.run_sync(job, worker)
    obj = jobs.apply_result(bpy.context, job, result, event)
    T = result.vertices.shape[0]
    assert T == 4
    expected = to_local(result.gaussian_means if mode == "POINT_CLOUD" else result.vertices, job.matrix_world)
    start = bpy.context.scene.frame_start
    for k in (0, 2, T - 1):
        np.testing.assert_allclose(_read(obj, start + k), expected[k], atol=ATOL)
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (start, start + T - 1)
    assert sample_scene.data.shape_keys is None  # the source mesh is untouched


def test_cancel_mid_run_leaves_the_scene_unchanged(sample_scene, worker, tmp_path):
    before = _snapshot()
    job = jobs.prepare_animate(bpy.context, sample_scene, _settings(frames=8, steps=8), job_dir=tmp_path / "job")
    seen = []

    def cancel():
        return len(seen) > 0

    with pytest.raises(jobs.JobCancelled):
        jobs.run_sync(job, worker, progress=lambda *a: seen.append(a), cancel=cancel)
    _assert_same(before, _snapshot())
    assert find_results(sample_scene) == []


def test_rerun_replaces_then_save_and_reload(sample_scene, worker, tmp_path):
    for seed in (0, 1):
        job = jobs.prepare_animate(bpy.context, sample_scene, _settings(seed=seed, mode="MESH_CACHE"),
                                   job_dir=tmp_path / f"job{seed}")
        result, event = jobs.run_sync(job, worker)
        obj = jobs.apply_result(bpy.context, job, result, event)
    assert [o.name for o in find_results(sample_scene)] == [obj.name]
    assert len([o for o in bpy.data.objects if o.get("gvf_source")]) == 1
    expected = to_local(result.vertices, job.matrix_world)
    name = obj.name
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    obj = bpy.data.objects[name]
    assert obj.modifiers[0].filepath.startswith("//")
    start = bpy.context.scene.frame_start
    np.testing.assert_allclose(_read(obj, start + 3), expected[3], atol=ATOL)


def test_extend_continues_after_the_last_frame(sample_scene, worker, tmp_path):
    job = jobs.prepare_animate(bpy.context, sample_scene, _settings(frames=6), job_dir=tmp_path / "a")
    result, event = jobs.run_sync(job, worker)
    jobs.apply_result(bpy.context, job, result, event)
    more = jobs.prepare_extend(bpy.context, sample_scene, _settings(first_frame=6, frames=4), job_dir=tmp_path / "b")
    result2, event2 = jobs.run_sync(more, worker)
    obj = jobs.apply_result(bpy.context, more, result2, event2)
    assert result2.vertices.shape[0] == 10
    np.testing.assert_allclose(result2.vertices[0], result.vertices[0], atol=1e-5)  # the start is kept
    scene = bpy.context.scene
    assert scene.frame_end - scene.frame_start + 1 == 10
    np.testing.assert_allclose(_read(obj, scene.frame_start + 9), to_local(result2.vertices[9], more.matrix_world),
                               atol=ATOL)


def test_a_result_goes_to_the_scene_the_job_started_in(sample_scene, worker, tmp_path):
    home = bpy.context.scene
    job = jobs.prepare_animate(bpy.context, sample_scene, _settings(), job_dir=tmp_path / "job")
    result, event = jobs.run_sync(job, worker)
    other = bpy.data.scenes.new("Other")
    other.frame_start, other.frame_end, other.render.fps = 100, 300, 50
    with bpy.context.temp_override(scene=other, view_layer=other.view_layers[0]):  # the user switched scenes meanwhile
        obj = jobs.apply_result(bpy.context, job, result, event)
    assert (other.frame_start, other.frame_end, other.render.fps) == (100, 300, 50)
    assert home.frame_end - home.frame_start + 1 == 4 and obj.name in home.objects
    np.testing.assert_allclose(_read(obj, home.frame_start + 3), to_local(result.vertices[3], job.matrix_world), atol=ATOL)
    bpy.data.scenes.remove(home)
    with pytest.raises(jobs.JobError, match="scene .* is gone"):
        with bpy.context.temp_override(scene=other, view_layer=other.view_layers[0]):
            jobs.apply_result(bpy.context, job, result, event)


def test_extend_without_a_result_is_a_clear_error(sample_scene):
    with pytest.raises(jobs.JobError, match="no GVF result to extend"):
        jobs.prepare_extend(bpy.context, sample_scene, _settings())


def test_headless_operator_and_refine_option_reach_the_worker(sample_scene):
    s = bpy.context.scene.gvf
    s.frames, s.steps, s.refine = 3, 1, "fast"
    assert bpy.ops.gvf.animate() == {"FINISHED"}, s.status
    result = find_results(sample_scene)[0]
    state = Path(result["gvf_state"])
    report = json.loads((state.parent / "report.json").read_text()) if (state.parent / "report.json").exists() else None
    from gvf_addon.worker.state import load_animation

    anim = load_animation(state)
    assert anim.settings["refine"] == "fast"
    assert anim.refinement and anim.refinement[0]["mode"] == "fast" and anim.refinement[0]["point_fit"]["points"] > 0
    assert report is None or report["settings"]["refine"] == "fast"


def test_a_moving_camera_or_mesh_is_reported_before_the_job_runs(sample_scene, tmp_path):
    scene = bpy.context.scene
    scene.frame_set(1)
    start = scene.frame_start  # the keys land on frames start .. start + 3 (frames=4)
    assert jobs.prepare_animate(bpy.context, sample_scene, _settings(), job_dir=tmp_path / "still").warnings == []
    cam = scene.camera
    cam.keyframe_insert("location", frame=start)
    cam.location.x += 0.5
    cam.keyframe_insert("location", frame=start + 40)  # moves after frame start: inside the clip too
    scene.frame_set(1)
    before = _snapshot()
    job = jobs.prepare_animate(bpy.context, sample_scene, _settings(), job_dir=tmp_path / "camera")
    assert len(job.warnings) == 1 and repr(cam.name) in job.warnings[0] and f"frame {start + 1}" in job.warnings[0]
    assert scene.frame_current == 1
    _assert_same(before, _snapshot())
    # a camera that moves only after the clip's last frame is not reported
    cam.animation_data_clear()
    cam.location.x -= 0.5
    cam.keyframe_insert("location", frame=start + 10)
    cam.location.x += 0.5
    cam.keyframe_insert("location", frame=start + 20)
    scene.frame_set(1)
    assert jobs.prepare_animate(bpy.context, sample_scene, _settings(), job_dir=tmp_path / "late").warnings == []
    # the mesh's own travel, through its parent
    parent = bpy.data.objects.new("mover", None)
    scene.collection.objects.link(parent)
    sample_scene.parent = parent
    parent.keyframe_insert("location", frame=start + 2)
    parent.location.y += 1.0
    parent.keyframe_insert("location", frame=start + 3)
    scene.frame_set(1)
    job = jobs.prepare_animate(bpy.context, sample_scene, _settings(), job_dir=tmp_path / "mesh")
    assert len(job.warnings) == 1 and repr(sample_scene.name) in job.warnings[0] and f"frame {start + 3}" in job.warnings[0]


def test_clip_frames_cover_the_frames_the_keys_land_on(tmp_path):
    from gvf_addon.scene_motion import clip_frames, video_frame_count

    clips = len(bpy.data.movieclips)
    assert video_frame_count(str(SAMPLE / "walk.mp4")) == 36 and len(bpy.data.movieclips) == clips
    for k in range(3):
        (tmp_path / f"{k:03d}.png").write_bytes(b"")
    assert video_frame_count(str(tmp_path)) == 3 and video_frame_count(str(tmp_path / "missing.mp4")) is None
    assert clip_frames(1, 36, 0, 4, 250) == (1, 4)  # Frames set
    assert clip_frames(10, 36, 6, 0, 250) == (10, 39)  # all the video from its frame 6 on
    assert clip_frames(1, None, 0, 0, 50) == (1, 50)  # unknown length: up to the scene's end


def test_bad_video_is_a_clear_error_and_changes_nothing(sample_scene, tmp_path):
    before = _snapshot()
    with pytest.raises(jobs.JobError, match="no such video"):
        jobs.prepare_animate(bpy.context, sample_scene, _settings(video_path=str(tmp_path / "missing.mp4")))
    bpy.context.scene.gvf.video_path = str(tmp_path / "missing.mp4")
    with pytest.raises(RuntimeError, match="no such video"):  # headless, an operator's ERROR report raises
        bpy.ops.gvf.animate()
    _assert_same(before, _snapshot())


# ----------------------------------------------------------------------------- batch
def test_batch_two_assets_one_broken_then_restart_and_shards(worker, tmp_path):
    from gvf_addon.batch import list_assets, run_batch

    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "a_greenman.glb").write_bytes((SAMPLE / "greenman.glb").read_bytes())
    (assets / "b_broken.obj").write_text("this is not a mesh\n")
    out = tmp_path / "out"
    settings = _settings(mode="MESH_CACHE")
    summary = run_batch(assets, SAMPLE / "walk.mp4", out, settings, worker=worker, show_progress=False)
    assert summary["ok"] == ["a_greenman.glb"] and [f["asset"] for f in summary["failed"]] == ["b_broken.obj"]
    good = out / "a_greenman"
    for name in ("a_greenman.blend", "animation.pc2", "report.json", "vertices.npy"):
        assert (good / name).is_file(), name
    assert len(list((good / "gaussians").glob("frame_*.ply"))) == 4
    assert json.loads((good / "report.json").read_text())["status"] == "ok"
    bad = json.loads((out / "b_broken" / "report.json").read_text())
    assert bad["status"] == "failed" and "no mesh" in bad["error"]
    # the .blend plays the PC2 file through a relative path
    bpy.ops.wm.open_mainfile(filepath=str(good / "a_greenman.blend"))
    result = next(o for o in bpy.data.objects if o.get("gvf_source"))
    assert result.modifiers[0].filepath == "//animation.pc2"
    verts = np.load(good / "vertices.npy")
    np.testing.assert_allclose(_read(result, bpy.context.scene.frame_start + 3), verts[3], atol=ATOL)
    # a restart does not redo the finished asset; the broken one is tried again
    again = run_batch(assets, SAMPLE / "walk.mp4", out, settings, worker=worker, show_progress=False)
    assert again["skipped"] == ["a_greenman.glb"] and len(again["failed"]) == 1
    # shards split the library
    (assets / "c.stl").write_text("solid x\nendsolid x\n")
    names = [[p.name for p in list_assets(assets, (k, 2))] for k in (0, 1)]
    assert sorted(names[0] + names[1]) == ["a_greenman.glb", "b_broken.obj", "c.stl"] and not set(names[0]) & set(names[1])


def test_every_panel_setting_reaches_the_folder_batch(tmp_path):
    from gvf_addon.batch import parse
    from gvf_addon.operators import batch_command

    settings = jobs.JobSettings(video_path=str(SAMPLE / "walk.mp4"), first_frame=2, frames=9, steps=3, seed=7,
                                strength=1.5, refine="fast", mode="POINT_CLOUD", device="cpu", model_dir=str(tmp_path),
                                appearance_views=8)
    cmd = batch_command(str(tmp_path), settings.video_path, str(tmp_path / "out"), settings,
                        {"python_executable": sys.executable, "site_dirs": []})
    _args, parsed = parse(cmd[cmd.index("--") + 1:])
    for name in ("video_path", "first_frame", "frames", "steps", "seed", "strength", "refine", "mode", "device",
                 "model_dir", "appearance_views"):
        assert getattr(parsed, name) == getattr(settings, name), name


def test_batch_cli_rejects_bad_arguments(tmp_path):
    from gvf_addon.batch import main

    with pytest.raises(SystemExit):
        main(["--assets", str(tmp_path / "nope"), "--video", str(SAMPLE / "walk.mp4"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--assets", str(tmp_path), "--video", str(SAMPLE / "walk.mp4"), "--out", str(tmp_path), "--shard", "3/2"])


# ----------------------------------------------------------------------------- packaging
INSTALL_SCRIPT = """
import sys, bpy
from pathlib import Path
res = bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
assert res == {"FINISHED"}, res
assert "bl_ext.user_default.gvf_animate" in [a.module for a in bpy.context.preferences.addons]
import gvf_core
assert "extensions" in gvf_core.__file__, gvf_core.__file__   # the bundled wheel, not the source tree
for o in list(bpy.data.objects):  # not read_factory_settings: that disables the extension again
    bpy.data.objects.remove(o)
assets = Path(gvf_core.__file__).parent / "assets" / "greenman"
bpy.ops.import_scene.gltf(filepath=str(assets / "greenman.glb"))
obj = bpy.data.objects["1_body"]
bpy.context.view_layer.objects.active = obj
s = bpy.context.scene.gvf
s.video_path, s.frames, s.steps, s.refine = str(assets / "walk.mp4"), 3, 1, "off"
assert bpy.ops.gvf.add_front_camera() == {"FINISHED"}
assert bpy.ops.gvf.animate() == {"FINISHED"}, s.status
print("GVF-INSTALLED", [o.name for o in bpy.context.scene.objects if o.get("gvf_source")])
"""


def test_install_built_zip_headless_and_run_operator(tmp_path):
    build = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_extension.py"), "--out", str(tmp_path / "dist"),
                            "--no-download"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    zip_path = build.stdout.strip().splitlines()[-1]
    assert zip_path.endswith(".zip") and Path(zip_path).is_file()
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user"), "OMP_NUM_THREADS": "1",
           # the source tree must not shadow the installed copy
           "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}
    run = subprocess.run([sys.executable, "-c", INSTALL_SCRIPT, zip_path], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert "GVF-INSTALLED ['1_body.gvf']" in run.stdout, run.stdout[-2000:] + run.stderr[-3000:]


def test_demo_blend_plays_the_pipeline_vertices(tmp_path):
    """gvf demo's animated.blend: the pipeline's vertices (file frame) on a mesh built like the pipeline's."""
    from gvf_addon.demo_blend import build
    from gvf_core.pipeline import animate
    from gvf_core.pipeline.outputs import write_outputs

    anim = animate(SAMPLE / "greenman.glb", SAMPLE / "walk.mp4", frames=4, steps=1, method="euler", device="cpu",
                   num_gaussians=256, refine="off")
    out = write_outputs(anim, tmp_path / "demo", preview=False)
    blend = build(out, SAMPLE / "greenman.glb", SAMPLE / "walk.mp4")
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    result = next(o for o in bpy.data.objects if o.get("gvf_source"))
    np.testing.assert_allclose(_read(result, 4), anim.vertices[3], atol=ATOL)
    cam = bpy.context.scene.camera
    assert cam.data.background_images[0].clip is not None  # the driving video behind the camera view
    cv = opencv_camera(cam, bpy.context.scene)
    np.testing.assert_allclose(cv["world_to_camera"], anim.camera.world_to_camera[0].numpy(), atol=1e-4)


def test_multiview_renders_refine_the_canonical_appearance(sample_scene, worker, tmp_path):
    """Appearance views: rendered in Blender (evaluated mesh, transform), fitted in the worker."""
    from gvf_addon.reference import render_views
    from gvf_core.pipeline.inputs import read_views

    sample_scene.location = (2.0, 0.5, -1.0)  # the object transform is part of the views' cameras
    bpy.context.view_layer.update()
    engine = bpy.context.scene.render.engine
    folder = render_views(bpy.context, sample_scene, tmp_path / "views", count=4, size=64)
    images, cams = read_views(folder)
    assert images.shape == (4, 64, 64, 4) and len(cams) == 4
    assert all(0.05 < (im[..., 3] > 127).mean() < 0.9 for im in images)  # the object is in every view
    assert bpy.context.scene.render.engine == engine and "gvf_view" not in bpy.data.objects
    job = jobs.prepare_animate(bpy.context, sample_scene, _settings(appearance_views=4,
                                                                    options={**FAST, "appearance_steps": 5}),
                               job_dir=tmp_path / "job")
    assert job.request.views_dir and (Path(job.request.views_dir) / "views.json").is_file()
    seen = []
    result, event = jobs.run_sync(job, worker, progress=lambda stage, d, t: seen.append(stage))
    assert "appearance" in seen and result.vertices.shape[0] == 4


def test_mesh_export_samples_image_textures_at_the_uvs():
    """A plane textured half red / half blue: each vertex gets the texel under its UV."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_plane_add(size=2)
    plane = bpy.context.active_object
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.subdivide(number_cuts=3)
    bpy.ops.object.mode_set(mode="OBJECT")
    image = bpy.data.images.new("halves", 8, 8)
    px = np.zeros((8, 8, 4), np.float32)
    px[:, :4] = (1, 0, 0, 1)  # left half (u < 0.5) red
    px[:, 4:] = (0, 0, 1, 1)  # right half blue
    image.pixels.foreach_set(px.ravel())
    mat = bpy.data.materials.new("tex")
    tree = mat.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    tex = tree.nodes.new("ShaderNodeTexImage")
    tex.image = image
    tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    plane.data.materials.append(mat)
    bpy.context.view_layer.update()
    arrays = mesh_arrays(bpy.context.evaluated_depsgraph_get(), plane)
    c, v = arrays["vertex_colors"], arrays["vertices"]
    left, right = v[:, 0] < -0.3, v[:, 0] > 0.3  # away from the seam, where corners average
    assert (c[left, 0] > 0.9).all() and (c[left, 2] < 0.1).all()
    assert (c[right, 2] > 0.9).all() and (c[right, 0] < 0.1).all()
