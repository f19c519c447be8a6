"""animate() / extend() / outputs / bad input, with a small random-weight model (speed only).

The shipped-model behaviour (does the motion follow the video) is measured by
``gvf eval animate``; here the plumbing is checked: frames, orders, frames of
reference, blending, memory bounds, errors, and that nothing is left half-written.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gvf_core.cameras import camera_to_json
from gvf_core.demo import SAMPLE_ASSET
from gvf_core.mesh import load_mesh
from gvf_core.models.checkpoint import CheckpointError
from gvf_core.models.dit import DIT_PRESETS, GVFDiT, save_dit
from gvf_core.models.vae import VAE_PRESETS, GVFVAE, save_vae
from gvf_core.normalize import Normalization
from gvf_core.pc2 import read_pc2
from gvf_core.pipeline import InputError, animate, extend, load_models
from gvf_core.pipeline.animate import blend, smoothstep_weights
from gvf_core.pipeline.core import Models
from gvf_core.pipeline.inputs import camera_to_model, camera_to_world, default_camera
from gvf_core.pipeline.outputs import write_outputs
from gvf_core.ply import read_ply

SMALL_VAE = replace(VAE_PRESETS["tiny"], width=32, heads=2, num_latents=16, latent_channels=4, num_points=256, decoder_layers=1, pos_freqs=2)
SMALL_DIT = replace(DIT_PRESETS["tiny"], width=32, heads=2, depth=1, num_latents=16, latent_channels=4, video_size=16,
                    video_grid=4, canonical_tokens=16, pos_freqs=2)
FAST = dict(num_gaussians=256, steps=1, method="euler", device="cpu", refine="off")  # refinement: test_motion_refine.py


def _perturb(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)


@pytest.fixture(scope="module")
def small_models() -> Models:
    torch.manual_seed(0)
    vae, dit = GVFVAE(SMALL_VAE).eval(), GVFDiT(SMALL_DIT).eval()
    _perturb(vae, 1)
    _perturb(dit, 2)  # move off the identity init so the motion is not exactly zero
    return Models(vae, dit, "small random test model")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, small_models):
    d = tmp_path_factory.mktemp("model")
    save_vae(small_models.vae, d / "vae.safetensors")
    save_dit(small_models.dit, d / "dit.safetensors")
    return d


def _box_obj(path) -> np.ndarray:
    """A box of 8 vertices in a deliberately scrambled order, Y up (OBJ convention)."""
    v = np.array([[1, 0, 1], [-1, 0, -1], [1, 2, -1], [-1, 2, 1], [1, 0, -1], [-1, 0, 1], [1, 2, 1], [-1, 2, -1]], float) * [0.5, 1.0, 0.3]
    corner = {tuple(np.sign(p - [0, 1, 0]).astype(int)): i for i, p in enumerate(v)}

    def q(a, b, c, d):
        return [[corner[a], corner[b], corner[c]], [corner[a], corner[c], corner[d]]]

    f = (q((-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)) + q((-1, 1, -1), (-1, 1, 1), (1, 1, 1), (1, 1, -1))
         + q((-1, -1, -1), (-1, 1, -1), (1, 1, -1), (1, -1, -1)) + q((-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1))
         + q((-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1)) + q((1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1)))
    with open(path, "w") as fh:
        fh.writelines(f"v {a} {b} {c}\n" for a, b, c in v)
        fh.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f)
    return v


def _blob_video(frames: int, size: int = 48, alpha: bool = False) -> np.ndarray:
    """A green disc swaying left and right on white (or on transparent)."""
    yy, xx = np.mgrid[:size, :size]
    out = np.full((frames, size, size, 4 if alpha else 3), 255, np.uint8)
    for t in range(frames):
        inside = (xx - size * (0.5 + 0.15 * np.sin(t / 6))) ** 2 + (yy - size / 2) ** 2 < (size / 5) ** 2
        out[t][inside, :3] = (40, 160, 40)
        if alpha:
            out[t][..., 3] = np.where(inside, 255, 0)
    return out


# --------------------------------------------------------------------------- animate
def test_animate_keeps_obj_vertex_order_and_file_frame(tmp_path, small_models):
    v = _box_obj(tmp_path / "box.obj")
    anim = animate(tmp_path / "box.obj", _blob_video(5), model=small_models, **FAST)
    assert anim.vertices.shape == (5, 8, 3) and anim.vertices.dtype == np.float32
    # frame 0 is the rest pose exactly, in the file's own (Y-up) axes and vertex order
    np.testing.assert_allclose(anim.vertices[0], v, atol=1e-5)
    assert np.isfinite(anim.vertices).all()
    assert anim.model_gaussians.batch_shape == (5,) and anim.model_gaussians.num == 256
    g0 = anim.gaussians_at(0)  # file frame: same bounding box as the file's vertices (up to disc size)
    assert np.all(g0.means.numpy().min(0) > v.min(0) - 0.05) and np.all(g0.means.numpy().max(0) < v.max(0) + 0.05)
    assert anim.vertices[1:].std() > 0  # the perturbed model moves something


def test_animate_is_deterministic_under_seed(small_models):
    a = animate(SAMPLE_ASSET, _blob_video(4), model=small_models, seed=3, **FAST)
    b = animate(SAMPLE_ASSET, _blob_video(4), model=small_models, seed=3, **FAST)
    c = animate(SAMPLE_ASSET, _blob_video(4), model=small_models, seed=4, **FAST)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    assert not np.array_equal(a.vertices, c.vertices)


def test_strength_changes_the_magnitude_condition(small_models):
    a = animate(SAMPLE_ASSET, _blob_video(4), model=small_models, strength=1.0, **FAST)
    b = animate(SAMPLE_ASSET, _blob_video(4), model=small_models, strength=3.0, **FAST)
    assert b.magnitude == pytest.approx(3.0 * a.magnitude, rel=1e-5)
    assert a.predicted_magnitude == pytest.approx(b.predicted_magnitude)


def test_camera_round_trip_between_world_and_model_frames():
    mesh = load_mesh(SAMPLE_ASSET)
    cam = default_camera(mesh.vertices, 64, 48)
    norm = Normalization.fit(mesh.vertices)
    model = camera_to_model(cam.world_to_camera[0], norm)
    torch.testing.assert_close(camera_to_world(model, norm), cam.world_to_camera[0], atol=1e-5, rtol=0)
    # a vertex projects to the same pixel through either frame
    p = torch.as_tensor(mesh.vertices[:5], dtype=torch.float32)
    q = torch.as_tensor(norm.apply(mesh.vertices[:5]), dtype=torch.float32)

    def pix(w2c, x):
        c = x @ w2c[:3, :3].T + w2c[:3, 3]
        uv = (c / c[:, 2:]) @ cam.K[0].T
        return uv[:, :2]

    torch.testing.assert_close(pix(cam.world_to_camera[0], p), pix(model, q), atol=1e-3, rtol=0)


def test_default_camera_sees_the_whole_mesh_from_the_front():
    mesh = load_mesh(SAMPLE_ASSET)
    cam = default_camera(mesh.vertices, 64, 64)
    c = torch.as_tensor(mesh.vertices, dtype=torch.float32) @ cam.world_to_camera[0, :3, :3].T + cam.world_to_camera[0, :3, 3]
    uv = (c / c[:, 2:]) @ cam.K[0].T
    assert (c[:, 2] > 0).all() and (uv[:, :2] > 0).all() and (uv[:, :2] < 64).all()
    assert cam.centers[0, 1] < mesh.vertices[:, 1].min()  # looks from -Y (Blender's front)


@pytest.mark.parametrize("width,height", [(1280, 720), (720, 1280), (512, 512)])
def test_default_camera_frames_the_mesh_in_landscape_and_portrait(width, height):
    from gvf_core.camera_math import front_camera

    box = np.array([[x, y, z] for x in (-1, 1) for y in (-0.3, 0.3) for z in (-0.4, 0.4)], float)  # wide, like a car
    K, w2c = front_camera(box, width, height)
    c = box @ w2c[:3, :3].T + w2c[:3, 3]
    uv = (c / c[:, 2:]) @ K.T
    assert (uv[:, 0] > 0).all() and (uv[:, 0] < width).all() and (uv[:, 1] > 0).all() and (uv[:, 1] < height).all()
    # the bounding sphere fills 80 % of the shorter side's half-angle (its sine), whichever side that is
    radius = np.linalg.norm(box, axis=-1).max()
    distance = np.linalg.norm(w2c[:3, 3])
    assert radius / distance == pytest.approx(0.8 * np.sin(np.arctan(0.5 * min(width, height) / K[0, 0])), rel=1e-9)


def test_a_camera_for_another_size_is_rescaled_axis_by_axis():
    from gvf_core.pipeline.inputs import read_camera

    mesh = load_mesh(SAMPLE_ASSET)
    cam = default_camera(mesh.vertices, 640, 360)
    json_cam = {"width": 640, "height": 360, "fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 180.0,
                "world_to_camera": cam.world_to_camera[0].tolist()}
    same, _ = read_camera(json_cam, mesh.vertices, 1280, 720)
    torch.testing.assert_close(same.K[0], torch.tensor([[1000.0, 0, 640], [0, 1000, 360], [0, 0, 1]]))
    resized, _ = read_camera(json_cam, mesh.vertices, 1282, 720)  # 0.2 % wider: the principal point stays centred
    assert float(resized.K[0, 0, 2]) == pytest.approx(641.0) and float(resized.K[0, 1, 2]) == pytest.approx(360.0)
    with pytest.raises(InputError, match="another aspect"):
        read_camera(json_cam, mesh.vertices, 720, 720)


# --------------------------------------------------------------------------- long clips
def test_smoothstep_blend_keeps_velocity_continuous_at_the_seam():
    from gvf_core.pipeline.animate import OVERLAP

    O = OVERLAP
    w = smoothstep_weights(O)
    assert w[0] == 0 and torch.all(w[1:] > w[:-1]) and w[-1] < 1
    t = torch.arange(20, dtype=torch.float64)
    old = 0.10 * t  # velocity 0.10
    start = 12
    new = old[start] + 0.30 * (t[start:] - start)  # new segment: velocity 0.30 from the same state
    joined = torch.cat([old[:start], blend(old[start:start + O], new[:O], w), new[O:]])
    v = joined[1:] - joined[:-1]
    acc = (v[1:] - v[:-1]).abs()
    hard = torch.cat([old[:start], new])  # switching without blending
    hard_acc = ((hard[2:] - 2 * hard[1:-1] + hard[:-2]).abs()).max()
    assert hard_acc == pytest.approx(0.2)
    # the velocity change is spread over the overlap: no single frame takes more than 60 % of it
    assert acc.max() < 0.6 * hard_acc
    assert v[start - 1] == pytest.approx(0.10) and v[start + O] == pytest.approx(0.30)


def test_long_video_runs_in_segments_with_bounded_model_input(small_models, monkeypatch):
    seen = []
    original = small_models.dit.forward

    def spy(x, *args, **kwargs):
        seen.append(x.shape[1])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(small_models.dit, "forward", spy)
    anim = animate(SAMPLE_ASSET, _blob_video(300, size=32), model=small_models, segment_frames=24, overlap=6, **FAST)
    assert anim.vertices.shape[0] == 300 and np.isfinite(anim.vertices).all()
    assert max(seen) <= 24 and len(anim.latents) == 1 + int(np.ceil((300 - 24) / 18))
    # velocity stays continuous at every seam: no acceleration spike at the segment starts
    v = np.diff(anim.vertices, axis=0)
    acc = np.linalg.norm(np.diff(v, axis=0), axis=-1).mean(-1)  # [298]
    seams = [24 + 18 * k - 6 for k in range(len(anim.latents) - 1)]
    assert all(acc[s - 1:s + 5].max() <= 3 * np.percentile(acc, 99) + 1e-9 for s in seams)


def test_extend_continues_from_the_last_frames(small_models):
    video = _blob_video(16)
    first = animate(SAMPLE_ASSET, video[:10], model=small_models, **FAST)
    longer = extend(first, video[10:], model=small_models)
    assert longer.num_frames == 16 and first.num_frames == 10  # the input animation is untouched
    np.testing.assert_array_equal(longer.vertices[:10 - 6], first.vertices[:10 - 6])  # before the overlap: unchanged
    assert len(longer.latents) == 2
    assert "extensions" not in first.settings  # what each extension used is recorded beside the first run's settings
    assert longer.settings["steps"] == first.settings["steps"]
    again = extend(longer, video[13:], model=small_models, steps=2, seed=5)
    assert [(e["frames"], e["steps"], e["seed"]) for e in again.settings["extensions"]] == [(6, 1, 0), (3, 2, 5)]


def test_extend_a_clip_shorter_than_the_overlap(small_models):
    from gvf_core.pipeline.animate import OVERLAP, _segment_plan

    assert _segment_plan(3, 13, 24, OVERLAP) == [(0, 13)]  # from frame 0, not 3 frames before it
    assert _segment_plan(10, 40, 24, 6) == [(4, 28), (22, 40)]
    video = _blob_video(7)
    first = animate(SAMPLE_ASSET, video[:3], model=small_models, **FAST)
    longer = extend(first, video[3:], model=small_models)
    assert longer.num_frames == 7 and longer.segment_starts == [0, 0] and np.isfinite(longer.vertices).all()
    np.testing.assert_array_equal(longer.vertices[0], first.vertices[0])  # the rest pose stays


def test_a_later_segment_is_generated_in_its_own_frame(small_models):
    """Segment k > 0 starts from a generated pose; wherever that pose has travelled to, the segment
    is generated centred and scaled as a training clip's rest pose, so moving the pose and the
    camera together moves the result with them and changes nothing else."""
    from gvf_core.pipeline.animate import AnimateSettings, _segment_frame, _Segments, _to_clip_frame

    video = _blob_video(6)
    anim = animate(SAMPLE_ASSET, video[:4], model=small_models, **FAST)
    w2c = camera_to_model(anim.camera.world_to_camera[0], anim.world_normalization)
    settings = AnimateSettings(**{k: v for k, v in FAST.items() if k != "device"})
    pose = anim.model_vertices[2]
    shift = torch.tensor([0.6, -0.2, 0.3])
    moved = torch.eye(4)
    moved[:3, 3] = -shift  # the camera follows the pose: every pixel stays where it was
    runs = []
    for p, cam in ((pose, w2c), (pose + shift, w2c @ moved)):
        runner = _Segments(small_models, settings, cam, anim.camera.K[0], None, None, "test")
        bound, frame = _segment_frame(anim.bound, p)
        assert np.allclose(frame.invert(bound.rest_vertices.double()).numpy(), p.numpy(), atol=1e-5)
        motion = runner.run(bound, anim.points, video[2:6], "segment 2", seed=1, w2c=camera_to_model(cam, frame))
        runs.append(_to_clip_frame(motion, frame))
    torch.testing.assert_close(runs[1].vertices, runs[0].vertices + shift, atol=1e-4, rtol=0)
    torch.testing.assert_close(runs[1].gaussians.means, runs[0].gaussians.means + shift, atol=1e-4, rtol=0)
    torch.testing.assert_close(runs[1].gaussians.log_scales, runs[0].gaussians.log_scales, atol=1e-4, rtol=0)
    # in its own frame the pose is centred with longest side 1, and the bound Gaussians scale with it
    bound, frame = _segment_frame(anim.bound, 2 * pose + shift)
    v = bound.rest_vertices
    assert torch.allclose((v.max(0).values + v.min(0).values) / 2, torch.zeros(3), atol=1e-5)
    assert float((v.max(0).values - v.min(0).values).max()) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(frame.invert_gaussians(bound.canonical).means,
                               _segment_frame(anim.bound, pose)[1].invert_gaussians(_segment_frame(anim.bound, pose)[0].canonical).means * 2 + shift,
                               atol=1e-4, rtol=0)


def test_extend_keys_an_rgb_continuation_of_an_rgba_clip_on_its_own():
    from gvf_core.models.video_inputs import foreground_mask
    from gvf_core.pipeline.animate import _joined_video

    rgba, rgb = _blob_video(4, alpha=True), _blob_video(6)[4:]  # the same disc: transparent, then on white
    for old, new in ((rgba, rgb), (rgb, rgba[:2])):
        joined = _joined_video(old, new, "more.mp4")
        assert joined.shape == (len(old) + len(new), 48, 48, 4)
        mask = foreground_mask(joined)[1] > 0.5
        alone = np.concatenate([foreground_mask(old)[1] if len(old) > 1 else foreground_mask(np.concatenate([old, old]))[1][:1],
                                foreground_mask(new)[1]]) > 0.5
        assert abs(mask.mean(axis=(1, 2)) - alone.mean(axis=(1, 2))).max() < 0.01  # not the whole frame
        assert 0.05 < mask.mean() < 0.2
    # both keyed from their plain background: stays RGB
    assert _joined_video(rgb, rgb, "x").shape[-1] == 3


def test_a_later_segment_that_loses_the_object_is_an_input_error(small_models):
    video = _blob_video(30)
    video[18:] = 255  # the object has left the frame by the second segment (frames 18…29)
    with pytest.raises(InputError, match="object"):
        animate(SAMPLE_ASSET, video, model=small_models, **FAST)


def test_a_track_reading_model_runs_through_animate_and_extend(small_models):
    dit = GVFDiT(replace(SMALL_DIT, tracks=True)).eval()
    dit.load_state_dict(small_models.dit.state_dict(), strict=False)
    _perturb(dit.track_in, 3)
    models = Models(small_models.vae, dit, "small random test model with anchor tracks")
    video = _blob_video(12)
    first = animate(SAMPLE_ASSET, video[:8], model=models, **FAST)
    assert first.timings["tracks"] > 0 and np.isfinite(first.vertices).all()
    longer = extend(first, video[8:], model=models)
    assert longer.num_frames == 12 and longer.timings["tracks"] > first.timings["tracks"]
    # the tracks change the motion (same seed, same everything else, tracks input switched off)
    plain = Models(small_models.vae, small_models.dit, "same without tracks")
    again = animate(SAMPLE_ASSET, video[:8], model=plain, **FAST)
    assert not np.allclose(again.vertices, first.vertices)


def test_a_lift_model_runs_through_animate_and_extend(small_models, monkeypatch):
    dit = GVFDiT(replace(SMALL_DIT, tracks=True, base="lift")).eval()
    dit.load_state_dict(small_models.dit.state_dict(), strict=False)
    models = Models(small_models.vae, dit, "small random test model denoising from the lift")
    video = _blob_video(12)
    first = animate(SAMPLE_ASSET, video[:8], model=models, **FAST)
    assert first.timings["lift"] > 0 and np.isfinite(first.vertices).all()
    longer = extend(first, video[8:], model=models)
    assert longer.num_frames == 12 and longer.timings["lift"] > first.timings["lift"]
    # the DiT's output is the same as the rest-based model's (base input zero): the lift is what differs
    plain = animate(SAMPLE_ASSET, video[:8], model=Models(small_models.vae, small_models.dit, "rest base"), **FAST)
    assert not np.allclose(plain.vertices, first.vertices)
    # strength scales the lift with the magnitude condition
    import gvf_core.pipeline.core as core

    scales = []
    original = core.lifted_latent
    monkeypatch.setattr(core, "lifted_latent", lambda *a, **k: scales.append(a[-1]) or original(*a, **k))
    stronger = animate(SAMPLE_ASSET, video[:8], model=models, strength=2.0, **FAST)
    assert stronger.magnitude == pytest.approx(2.0 * first.magnitude, rel=1e-5)
    assert scales == [1.0, pytest.approx(2.0)]  # the lift fitted once, encoded at the strength asked for
    assert not np.allclose(stronger.vertices, first.vertices)


# --------------------------------------------------------------------------- outputs
def test_write_outputs_files_agree(tmp_path, small_models):
    anim = animate(SAMPLE_ASSET, _blob_video(4, alpha=True), model=small_models, **FAST)
    out = write_outputs(anim, tmp_path / "out", preview=True)
    verts = np.load(out / "vertices.npy")
    np.testing.assert_array_equal(verts, anim.vertices)
    pc2, start, rate = read_pc2(out / "animation.pc2")
    np.testing.assert_array_equal(pc2, verts)
    plys = sorted((out / "gaussians").glob("*.ply"))
    assert len(plys) == 4
    g = read_ply(plys[2])
    torch.testing.assert_close(g.means, anim.gaussians_at(2).means, atol=1e-5, rtol=0)
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 4 and "diffusion" in report["timings_s"] and report["settings"]["device"] == "cpu"
    assert (out / "preview.mp4").stat().st_size > 0
    cam = json.loads((out / "camera.json").read_text())
    assert cam["width"] == 48 and len(cam["world_to_camera"]) == 4
    assert not list(tmp_path.glob(".out.partial-*"))


def test_write_outputs_replaces_the_previous_result_whole(tmp_path, small_models, monkeypatch):
    import os

    import gvf_core.pipeline.outputs as outputs

    a = animate(SAMPLE_ASSET, _blob_video(4, alpha=True), model=small_models, **FAST)
    b = animate(SAMPLE_ASSET, _blob_video(5, alpha=True), model=small_models, **FAST)
    out = write_outputs(a, tmp_path / "out", preview=True)
    (out / "result.npz").write_bytes(b"the add-on's own file")  # not an output: left alone
    write_outputs(b, out, preview=False)
    assert not (out / "preview.mp4").exists()  # no preview of the previous run beside this one
    assert np.load(out / "vertices.npy").shape[0] == 5 and len(list((out / "gaussians").glob("*.ply"))) == 5
    assert (out / "result.npz").read_bytes() == b"the add-on's own file"
    # a move that fails half-way (a file held open) puts the previous result back
    replace = os.replace

    failed = []

    def fail_on_report(src, dst):  # once: the undo's own move back succeeds
        if str(dst) == str(out / "report.json") and not failed:
            failed.append(dst)
            raise PermissionError(f"{dst} is open in another program")
        return replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", fail_on_report)
    with pytest.raises(PermissionError, match="open in another program"):
        write_outputs(a, out, preview=True)
    monkeypatch.undo()
    assert np.load(out / "vertices.npy").shape[0] == 5 and not (out / "preview.mp4").exists()
    assert json.loads((out / "report.json").read_text())["frames"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_are_clear_errors(tmp_path, small_models):
    with pytest.raises(InputError, match="at least 2 frames"):
        animate(SAMPLE_ASSET, _blob_video(1), model=small_models, **FAST)
    with pytest.raises(InputError, match="no object"):
        animate(SAMPLE_ASSET, np.full((4, 32, 32, 3), 255, np.uint8), model=small_models, **FAST)
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(InputError, match="broken.mp4"):
        animate(SAMPLE_ASSET, tmp_path / "broken.mp4", model=small_models, **FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        animate(SAMPLE_ASSET, tmp_path / "empty", model=small_models, **FAST)
    (tmp_path / "points.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                                         "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n")
    with pytest.raises(InputError, match="no triangle faces"):
        animate(tmp_path / "points.ply", _blob_video(4), model=small_models, **FAST)


def test_huge_mesh_is_refused_before_any_work(tmp_path, small_models, monkeypatch):
    import gvf_core.pipeline.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_VERTICES", 100)
    with pytest.raises(InputError, match="too large.*[Dd]ecimate"):
        animate(SAMPLE_ASSET, _blob_video(4), model=small_models, **FAST)


def test_mismatched_model_files(tmp_path, model_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vae.safetensors").write_bytes((model_dir / "vae.safetensors").read_bytes())
    save_dit(GVFDiT(replace(SMALL_DIT, num_latents=32)), bad / "dit.safetensors")
    with pytest.raises(CheckpointError, match="mismatched model files"):
        load_models(bad)
    (bad / "dit.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing dit.safetensors"):
        load_models(bad)


def test_cli_animate_writes_everything_and_fails_cleanly(tmp_path, model_dir, capsys):
    from gvf_core.cli import main
    from gvf_core.video import write_png_frames

    write_png_frames(tmp_path / "frames", _blob_video(4, alpha=True))
    cam = default_camera(load_mesh(SAMPLE_ASSET).vertices, 48, 48)
    camera_to_json(cam, 48, 48, tmp_path / "camera.json")
    out = tmp_path / "out"
    rc = main(["animate", str(SAMPLE_ASSET), str(tmp_path / "frames"), "--out", str(out), "--camera", str(tmp_path / "camera.json"),
               "--steps", "1", "--model", str(model_dir), "--device", "cpu", "--no-preview"])
    assert rc == 0
    assert {"vertices.npy", "animation.pc2", "gaussians", "report.json", "camera.json"} <= {p.name for p in out.iterdir()}
    # a failing job writes nothing
    (tmp_path / "blank").mkdir()
    write_png_frames(tmp_path / "blank", np.full((3, 16, 16, 3), 255, np.uint8))
    rc = main(["animate", str(SAMPLE_ASSET), str(tmp_path / "blank"), "--out", str(tmp_path / "never"), "--model", str(model_dir)])
    assert rc == 2 and "no object" in capsys.readouterr().err
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".never.partial-*"))
    # --out naming a file is refused before any work
    (tmp_path / "a_file").write_text("keep me")
    rc = main(["animate", str(SAMPLE_ASSET), str(tmp_path / "frames"), "--out", str(tmp_path / "a_file"), "--model", str(model_dir)])
    assert rc == 2 and "is a file" in capsys.readouterr().err and (tmp_path / "a_file").read_text() == "keep me"


def test_cancel_stops_the_job_and_writes_nothing(tmp_path, small_models):
    from gvf_core.models.sampler import Cancelled

    calls = []

    def progress(stage, done, total):
        calls.append(stage)

    with pytest.raises(Cancelled):
        animate(SAMPLE_ASSET, _blob_video(4), model=small_models, progress=progress, cancel=lambda: len(calls) >= 1,
                **{**FAST, "steps": 3})
    assert calls and all("diffusion" in c for c in calls)
