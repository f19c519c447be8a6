"""gvf bench animate and gvf demo with the shipped model (a few frames, one step: plumbing, not speed)."""

import json

from gvf_core.cli import main
from gvf_core.pipeline.core import SHIPPED_MODEL, load_models


def test_shipped_model_loads_and_belongs_together():
    models = load_models()
    assert models.dit.config.num_latents == models.vae.config.num_latents == 128
    assert (SHIPPED_MODEL / "dit.safetensors").stat().st_size < 16e6


def test_bench_animate_prints_stage_timings(capsys):
    assert main(["bench", "animate", "--json", "--frames", "4", "--steps", "1", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out)
    stages = figures["tiny"]["stages_s"]
    assert figures["tiny"]["frames"] == 4
    assert {"read_inputs", "load_models", "canonical", "conditions", "diffusion", "decode", "vertices", "total"} <= set(stages)
    assert figures["draws"] == 8 and figures["tiny"]["diffusion_ratio_to_one_draw"] > 0  # averaging's cost, same run


def test_demo_writes_the_animation(tmp_path):
    # refinement (the demo's default, ~70 s here) is tested in test_motion_refine.py
    assert main(["demo", "--out", str(tmp_path / "demo"), "--steps", "1", "--device", "cpu", "--refine", "off"]) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["frames"] == 36 and report["vertices"] == 196 and report["segments"] == 2
    assert report["settings"]["refine"] == "off" and report["refinement"] == []
    assert (tmp_path / "demo" / "preview.mp4").stat().st_size > 0
    try:
        import bpy  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "demo" / "animated.blend").stat().st_size > 0


def test_stage_clock_waits_for_queued_cuda_work(monkeypatch):
    """Stage timings on CUDA: each stage's kernels finish before its clock stops (without the wait,
    asynchronous GPU work is counted in whichever later stage first reads a result back)."""
    import torch

    from gvf_core.pipeline import core

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: calls.append("sync"))
    timings = {}
    now = core._clock(timings, "diffusion", 0.0)
    assert calls == ["sync"] and timings["diffusion"] == now
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # CUDA present but unused: no wait
    core._clock(timings, "decode", now)
    assert calls == ["sync"] and set(timings) == {"diffusion", "decode"}
