"""gvf data encode → gvf train dit → gvf eval animate, on a tiny data set (the real figures come
from the full validation set; here the plumbing and the figure set are checked)."""

import json
import math
import shutil

import pytest

from gvf_core.cli import main
from gvf_core.data.make import make_dataset
from gvf_core.data.sample import SampleConfig
from gvf_core.data.shards import Manifest
from gvf_core.eval.animate import sweep_steps
from gvf_core.pipeline.core import SHIPPED_MODEL, load_models

CLIP = SampleConfig(frames=16, num_gaussians=512, num_points=2048, image_size=32, extra_views=1, extra_frames=2)


def test_encode_train_eval(tmp_path, capsys):
    data = tmp_path / "data"
    make_dataset(data, split="train", count=2, start=0, config=CLIP, workers=1, shard_size=2)
    make_dataset(data, split="val", count=2, config=CLIP, workers=1)
    assert main(["data", "encode", "--data", str(data), "--device", "cpu"]) == 0  # the shipped VAE
    out = tmp_path / "model"
    args = ["train", "dit", "--preset", "tiny", "--data", str(data), "--out", str(out), "--steps", "2",
            "--batch-size", "1", "--frames", "16", "--device", "cpu"]
    assert main(args) == 0
    assert (out / "dit.safetensors").exists() and (out / "loss_log.jsonl").exists()
    assert main(args) == 0  # resuming a finished run does nothing more
    assert main(["train", "dit", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "x"), "--frames", "8"]) == 2
    shutil.copy(SHIPPED_MODEL / "vae.safetensors", out / "vae.safetensors")
    capsys.readouterr()
    assert main(["eval", "animate", "--model", str(out), "--data", str(data), "--json", "--limit", "1", "--steps", "1",
                 "--method", "euler", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["samples"] == 1
    for name in ("model", "static", "ceiling"):
        assert set(figures[name]) == {"vertex_error", "psnr_input", "ssim_input", "psnr_novel", "ssim_novel", "jitter"}
    assert figures["static"]["vertex_error"] > 0 and figures["static"]["jitter"] == 0
    assert figures["ceiling"]["vertex_error"] < figures["static"]["vertex_error"]
    assert figures["vertex_error_vs_static"] > 0
    assert figures["split"] == "val" and figures["flow_loss_val"] > 0 and "missing" not in figures
    assert figures["model_source"] == str(out) and figures["draws"] == 8  # which model and sampler made the figures

    # the held-out test split, not encoded: figures without the ceiling and the flow loss, and the fix named
    make_dataset(data, split="test", count=1, config=CLIP, workers=1)
    assert main(["eval", "animate", "--model", str(out), "--data", str(data), "--split", "test", "--json", "--no-images",
                 "--steps", "1", "--method", "euler", "--device", "cpu"]) == 0
    held_out = json.loads(capsys.readouterr().out)
    assert held_out["split"] == "test" and held_out["samples"] == 1
    assert "ceiling" not in held_out and "flow_loss_val" not in held_out
    assert f"gvf data encode --data {data} --splits test" in held_out["missing"]
    assert held_out["static"]["vertex_error"] != figures["static"]["vertex_error"]  # another clip

    # --per-clip lists each clip's errors; their mean is the row's figure
    assert main(["eval", "animate", "--model", str(out), "--data", str(data), "--json", "--no-images", "--per-clip",
                 "--steps", "1", "--method", "euler", "--device", "cpu"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["seed"] for c in listed["per_clip"]] == Manifest.load(data).seeds_of("val")
    for row in ("model", "static", "ceiling"):
        assert abs(sum(c[row] for c in listed["per_clip"]) / 2 - listed[row]["vertex_error"]) < 1e-9
    # ... and by motion family: the clips' families, each family's mean
    families = {c["family"] for c in listed["per_clip"]}
    assert families and all(isinstance(f, str) for f in families)
    assert set(listed["per_family"]) == families
    assert sum(f["clips"] for f in listed["per_family"].values()) == len(listed["per_clip"])
    for name, figures_of in listed["per_family"].items():
        group = [c["model"] for c in listed["per_clip"] if c["family"] == name]
        assert abs(figures_of["model"] - sum(group) / len(group)) < 1e-9
    assert "per_clip" not in figures  # only when asked

    # --skip splits a run: the first sample and the second make up the mean of both
    static = {}
    for extra in (["--limit", "1"], ["--skip", "1"], []):
        assert main(["eval", "animate", "--model", str(out), "--data", str(data), "--json", "--no-images", "--steps", "1",
                     "--method", "euler", "--device", "cpu", *extra]) == 0
        part = json.loads(capsys.readouterr().out)
        static[" ".join(extra)] = (part["samples"], part["static"]["vertex_error"])
    assert static["--skip 1"][0] == 1 and static[""][0] == 2
    assert static["--skip 1"][1] != static["--limit 1"][1]
    assert abs(static["--skip 1"][1] + static["--limit 1"][1] - 2 * static[""][1]) < 1e-6

    sweep = sweep_steps(data, load_models(out), limit=1, guidance=2.0, split="val",
                        settings=(("euler", 1), ("heun", 2)), reference_steps=4)
    assert sweep["settings"]["euler-1"]["model_calls"] == 1 and sweep["settings"]["heun-2"]["model_calls"] == 3
    assert all(v["distance_to_reference"] >= 0 for v in sweep["settings"].values())


def test_lift_dit_trains_evaluates_and_caches_its_lift(tmp_path, capsys):
    """tiny-lift from the shipped (tiny-lift) DiT: the lifted latents are cached once, refused for
    another VAE, and the evaluation reports the lift alone beside the model. (Starting from a
    tiny-tracks DiT, whose base input is new, is tested in test_track_lift.)"""
    import torch

    from gvf_core.models.vae import VAE_PRESETS, GVFVAE, save_vae

    data = tmp_path / "data"
    make_dataset(data, split="train", count=2, start=0, config=CLIP, workers=1, shard_size=2)
    make_dataset(data, split="val", count=1, config=CLIP, workers=1)
    assert main(["data", "encode", "--data", str(data), "--device", "cpu"]) == 0
    out = tmp_path / "lift"
    args = ["train", "dit", "--preset", "tiny-lift", "--data", str(data), "--out", str(out), "--steps", "1",
            "--batch-size", "1", "--frames", "16", "--device", "cpu", "--init", str(SHIPPED_MODEL / "dit.safetensors")]
    assert main(args) == 0
    lift_cache = data / "latents" / "dit-lift-train-64.safetensors"
    stamp = lift_cache.stat().st_mtime_ns
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["init"]["new"] == [] and stats["init"]["loaded"] > 0  # the shipped DiT has every tensor
    assert main([*args[:7], str(tmp_path / "again"), *args[8:]]) == 0  # a second run reuses the cached lift
    assert lift_cache.stat().st_mtime_ns == stamp

    # the cached lift is the pipeline's lift of the same clip (both track the crops in 8 bits)
    from safetensors.torch import load_file

    from gvf_core.data.shards import ShardReader
    from gvf_core.eval.animate import _clip_inputs
    from gvf_core.pipeline.core import decode_latent, generate_motion, video_lift

    models = load_models(SHIPPED_MODEL, device="cpu")
    cached = load_file(str(lift_cache))["lift"]
    with ShardReader(data / Manifest.load(data).shards_of("train")[0].file) as reader:
        for i in range(2):
            bound, _, rest_points, video, w2c = _clip_inputs(*reader[i], models)
            piped = video_lift(models, bound.canonical, rest_points, video, w2c)
            assert (cached[i].float() - piped).norm() < 1e-3 * (piped - piped[:1]).norm()
            # generation keeps the lift it denoised from; a given latent is only decoded
            motion = generate_motion(models, bound, rest_points, video, w2c, seed=0)
            assert (motion.lift - piped).norm() < 1e-3 * (piped - piped[:1]).norm()
            decoded = decode_latent(models, bound, motion.latent)
            assert "tracks" not in decoded.timings and math.isnan(decoded.magnitude) and decoded.lift is None
            assert torch.allclose(decoded.vertices, motion.vertices, atol=1e-5)

    other = tmp_path / "other_vae.safetensors"
    torch.manual_seed(0)
    save_vae(GVFVAE(VAE_PRESETS["tiny"]), other)
    capsys.readouterr()
    assert main([*args[:7], str(tmp_path / "wrong"), *args[8:], "--vae", str(other)]) == 2
    assert "encoded by another VAE" in capsys.readouterr().err
    # encoding again with that VAE makes its lift the right one: the cache is made anew
    assert main(["data", "encode", "--data", str(data), "--model", str(other), "--splits", "train", "--device", "cpu"]) == 0
    assert main([*args[:7], str(tmp_path / "other"), *args[8:], "--vae", str(other)]) == 0
    assert lift_cache.stat().st_mtime_ns != stamp
    assert not torch.equal(load_file(str(lift_cache))["lift"], cached)
    assert main(["data", "encode", "--data", str(data), "--splits", "train", "--device", "cpu"]) == 0  # back
    capsys.readouterr()

    shutil.copy(SHIPPED_MODEL / "vae.safetensors", out / "vae.safetensors")
    assert main(["eval", "animate", "--model", str(out), "--data", str(data), "--json", "--no-images", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["flow_loss_val"] > 0 and (data / "latents" / "dit-lift-val-64.safetensors").exists()
    assert 0 < figures["lift"]["vertex_error"] and figures["lift"]["jitter"] > 0


def test_novel_views_are_the_protocols_azimuths_around_the_input_view():
    import numpy as np
    import torch

    from gvf_core.cameras import Cameras
    from gvf_core.eval.animate import _views

    meta = {"camera": {"azimuth_deg": 30.0, "elevation_deg": 12.0, "distance": 2.2, "fov_deg": 45.0}}
    cam = Cameras.orbit([30.0], elevation_deg=12.0, distance=2.2, fov_deg=45.0, width=32, height=32)
    arrays = {"video": np.zeros((2, 32, 32, 4), np.uint8), "camera_K": cam.K[0].numpy(), "camera_w2c": cam.world_to_camera[0].numpy()}
    views = _views(arrays, meta)
    centres = views.centers.double()
    azimuth = torch.rad2deg(torch.atan2(centres[:, 0], -centres[:, 1]))  # 0 looks from -Y (docs/conventions.md)
    relative = ((azimuth[1:] - azimuth[0] + 180) % 360 - 180).tolist()
    assert np.allclose(relative, [-75, 15, 105, -165], atol=1e-3)  # 195° = -165°
    assert torch.allclose(centres.norm(dim=-1), torch.full((5,), 2.2, dtype=torch.float64), atol=1e-4)


def test_per_family_averages_errors_not_labels():
    """``per_family`` means the rows' errors over each family; what a clip is or what refinement
    did there (seed, rigid transform used, its mixed-in weight) is not averaged."""
    from gvf_core.eval.animate import per_family

    clips = [{"seed": 1, "family": "rigid", "model": 0.2, "refined": 0.1, "rigid_used": True, "rigid_blend": 0.0},
             {"seed": 2, "family": "rigid", "model": 0.4, "refined": 0.2, "rigid_used": False, "rigid_blend": 0.5},
             {"seed": 3, "family": None, "model": 0.1, "refined": 0.1, "rigid_used": False, "rigid_blend": 0.0}]
    figures = per_family(clips)
    assert figures["rigid"] == pytest.approx({"clips": 2, "model": 0.3, "refined": 0.15})
    assert figures["unknown"] == pytest.approx({"clips": 1, "model": 0.1, "refined": 0.1})
