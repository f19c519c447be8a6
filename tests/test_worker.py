"""The worker process (gvf_addon/worker): real subprocesses, a small random model, the sample asset.

Jobs use steps=2, euler, 256 Gaussians: the plumbing is checked (progress, results equal to the
in-process pipeline, cancel, errors, memory, lifecycle), not the motion quality.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gvf_addon.worker import protocol as P
from gvf_addon.worker.client import WorkerClient, WorkerStartError, check_worker_python
from gvf_core.demo import SAMPLE_ASSET
from gvf_core.mesh import load_mesh, mesh_from_arrays
from gvf_core.models.dit import DIT_PRESETS, GVFDiT, save_dit
from gvf_core.models.vae import VAE_PRESETS, GVFVAE, save_vae
from gvf_core.pipeline import animate, extend, load_models
from gvf_core.video import write_png_frames

PYTHON = sys.executable
SMALL_VAE = replace(VAE_PRESETS["tiny"], width=32, heads=2, num_latents=16, latent_channels=4, num_points=256, decoder_layers=1,
                    pos_freqs=2)
SMALL_DIT = replace(DIT_PRESETS["tiny"], width=32, heads=2, depth=1, num_latents=16, latent_channels=4, video_size=16,
                    video_grid=4, canonical_tokens=16, pos_freqs=2)
OPTIONS = dict(method="euler", num_gaussians=256, refine="off")  # refinement reaching the worker: test_addon.py


def _blob_video(frames: int, size: int = 48) -> np.ndarray:
    """A green disc swaying left and right on a transparent background."""
    yy, xx = np.mgrid[:size, :size]
    out = np.full((frames, size, size, 4), 255, np.uint8)
    for t in range(frames):
        inside = (xx - size * (0.5 + 0.15 * np.sin(t / 6))) ** 2 + (yy - size / 2) ** 2 < (size / 5) ** 2
        out[t][inside, :3] = (40, 160, 40)
        out[t][..., 3] = np.where(inside, 255, 0)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("worker")
    torch.manual_seed(0)
    vae, dit = GVFVAE(SMALL_VAE).eval(), GVFDiT(SMALL_DIT).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # off the identity init, so the motion is not exactly zero
        for p in [*vae.parameters(), *dit.parameters()]:
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    (d / "model").mkdir()
    save_vae(vae, d / "model" / "vae.safetensors")
    save_dit(dit, d / "model" / "dit.safetensors")
    video = _blob_video(12)
    write_png_frames(d / "video", video[:6])
    write_png_frames(d / "more", video[6:])
    write_png_frames(d / "long", _blob_video(16))
    write_png_frames(d / "blank", np.full((3, 32, 32, 3), 255, np.uint8))
    return {"dir": d, "model": str(d / "model"), "video": str(d / "video"), "more": str(d / "more"),
            "long": str(d / "long"), "blank": str(d / "blank")}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    client = WorkerClient(PYTHON, work_dir=tmp_path_factory.mktemp("jobs"), idle_timeout=-1)
    client.start()
    yield client
    client.stop()


def _request(files, **kw) -> P.AnimateRequest:
    base = dict(mesh_path=str(SAMPLE_ASSET), video_path=files["video"], steps=2, seed=3, device="cpu",
                model_dir=files["model"], options=dict(OPTIONS))
    return P.AnimateRequest(**{**base, **kw})


# --------------------------------------------------------------------------- protocol
def test_messages_round_trip_and_bad_lines_are_clear_errors():
    messages = [P.AnimateRequest("a.glb", "v.mp4", camera={"width": 4}, options={"method": "euler"}, job_id="j"),
                P.ExtendRequest("more.mp4", source_job_id="j"), P.CancelRequest("j"), P.FreeModelRequest(), P.PingRequest(),
                P.ShutdownRequest(), P.ProgressEvent("j", "segment 1 diffusion", 1, 2),
                P.ResultEvent("j", "/r.npz", {"frames": 3}), P.ErrorEvent("j", "bad", "Traceback ...", "InputError"),
                P.CancelledEvent("j"), P.ModelFreedEvent("idle", True)]
    for m in messages:
        line = P.encode(m)
        assert "\n" not in line and json.loads(line)["type"] == m.TYPE
        assert P.decode(line) == m
    assert P.decode('{"type": "animate", "mesh_path": "a", "video_path": "b", "strength": 2}').strength == 2.0
    with pytest.raises(P.ProtocolError, match="unknown message type 'explode'.*animate"):
        P.decode('{"type": "explode"}')
    with pytest.raises(P.ProtocolError, match="unknown message type 'progress'"):
        P.decode(P.encode(P.ProgressEvent("j", "s", 0, 1)), kind="request")
    with pytest.raises(P.ProtocolError, match="missing field 'video_path'"):
        P.decode('{"type": "animate", "mesh_path": "a"}')
    with pytest.raises(P.ProtocolError, match="animate.steps must be"):
        P.decode('{"type": "animate", "mesh_path": "a", "video_path": "b", "steps": "many"}')
    with pytest.raises(P.ProtocolError, match="unknown field"):
        P.decode('{"type": "ping", "loud": true}')
    with pytest.raises(P.ProtocolError, match="not a JSON"):
        P.decode("hello")
    with pytest.raises(P.ProtocolError, match="exactly one of source_job_id"):
        P.encode(P.ExtendRequest("more.mp4"))


# --------------------------------------------------------------------------- jobs
def test_ready_and_ping(worker):
    assert worker.running and worker.ready.python.count(".") == 2 and worker.ready.torch == torch.__version__
    assert worker.ready.device in ("cpu", "cuda") and worker.ready.protocol == P.PROTOCOL_VERSION
    worker.ping()
    event = _next_event(worker, P.ReadyEvent)
    assert event.pid == worker.pid


def test_animate_streams_progress_and_matches_the_in_process_pipeline(worker, files):
    events = []
    job = worker.submit(_request(files, gaussians=True))
    final = worker.wait(job, timeout=60, on_event=events.append)
    assert isinstance(final, P.ResultEvent), final
    progress = [e for e in events if isinstance(e, P.ProgressEvent)]
    assert events[-1] is final and progress and all(e.job_id == job for e in progress)
    stages = [e.stage for e in progress]
    assert "segment 1 diffusion" in stages and "segment 1 decode" in stages and stages[0] == "load_models"
    result = P.load_result(final.result_path)
    expected = animate(SAMPLE_ASSET, files["video"], steps=2, seed=3, device="cpu", model=load_models(files["model"], "cpu"),
                       **OPTIONS)
    assert result.vertices.dtype == np.float32 and result.vertices.shape == expected.vertices.shape == (6, 196, 3)
    np.testing.assert_allclose(result.vertices, expected.vertices, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(result.faces, expected.faces)
    assert result.fps == expected.fps
    assert result.gaussian_means.shape == (6, 256, 3) and result.gaussian_rgb.shape == (6, 256, 3)
    np.testing.assert_allclose(result.gaussian_means[4], expected.gaussians_at(4).means.numpy(), atol=1e-5, rtol=0)
    assert final.report["frames"] == 6 and final.report["settings"]["method"] == "euler"


def test_mesh_arrays_in_an_npz(worker, files):
    mesh = load_mesh(SAMPLE_ASSET)
    path = files["dir"] / "mesh.npz"
    np.savez(path, vertices=mesh.vertices, faces=mesh.faces)
    final = worker.run(_request(files, mesh_path=str(path)), timeout=60)
    assert isinstance(final, P.ResultEvent), final
    expected = animate(mesh_from_arrays(mesh.vertices, mesh.faces), files["video"], steps=2, seed=3, device="cpu",
                       model=load_models(files["model"], "cpu"), **OPTIONS)
    np.testing.assert_allclose(P.load_result(final.result_path).vertices, expected.vertices, atol=1e-5, rtol=0)


def test_extend_a_kept_job_or_a_saved_state(worker, files):
    first = worker.run(_request(files, save_state=True), timeout=60)
    assert isinstance(first, P.ResultEvent) and Path(first.state_path).is_file()
    kept = worker.run(P.ExtendRequest(files["more"], source_job_id=first.job_id), timeout=60)
    saved = worker.run(P.ExtendRequest(files["more"], state_path=first.state_path, out_dir=str(files["dir"] / "ext")), timeout=60)
    assert isinstance(kept, P.ResultEvent) and isinstance(saved, P.ResultEvent), (kept, saved)
    assert Path(saved.result_path).parent == files["dir"] / "ext"
    a, b = P.load_result(kept.result_path).vertices, P.load_result(saved.result_path).vertices
    models = load_models(files["model"], "cpu")
    base = animate(SAMPLE_ASSET, files["video"], steps=2, seed=3, device="cpu", model=models, **OPTIONS)
    expected = extend(base, files["more"], device="cpu", model=models)
    assert a.shape == (12, 196, 3)
    np.testing.assert_allclose(a, expected.vertices, atol=1e-5, rtol=0)
    np.testing.assert_allclose(b, expected.vertices, atol=1e-5, rtol=0)
    gone = worker.run(P.ExtendRequest(files["more"], source_job_id="never-ran"), timeout=60)
    assert isinstance(gone, P.ErrorEvent) and "never-ran" in gone.message and "state_path" in gone.message


def test_cancel_after_the_first_progress_event_then_the_worker_goes_on(worker, files):
    sent = []

    def on_event(event):
        if isinstance(event, P.ProgressEvent) and not sent:
            worker.cancel(job)
            sent.append(event)

    job = worker.submit(_request(files, video_path=files["long"], steps=2000))  # ~5 s if the cancel were ignored
    final = worker.wait(job, timeout=60, on_event=on_event)
    assert sent and isinstance(final, P.CancelledEvent) and final.job_id == job, final
    assert not (worker.work_dir / job / P.RESULT_FILE).exists()
    after = worker.run(_request(files), timeout=60)
    assert isinstance(after, P.ResultEvent), after


def test_a_cancelled_queued_job_never_runs(worker, files):
    running = worker.submit(_request(files))
    queued = worker.submit(_request(files))
    worker.cancel(queued)
    assert isinstance(worker.wait(running, timeout=60), P.ResultEvent)
    final = worker.wait(queued, timeout=60)
    assert isinstance(final, P.CancelledEvent) and "before it started" in final.message


def test_errors_come_back_with_their_traceback_and_the_worker_lives_on(worker, files):
    blank = worker.run(_request(files, video_path=files["blank"]), timeout=60)
    assert isinstance(blank, P.ErrorEvent) and blank.error_type == "InputError", blank
    assert "blank" in blank.message and "no object" in blank.message
    assert blank.traceback.startswith("Traceback") and "InputError" in blank.traceback
    option = worker.run(_request(files, options={"nope": 1}), timeout=60)
    assert isinstance(option, P.ErrorEvent) and "nope" in option.message and "num_gaussians" in option.message
    worker._proc.stdin.write(b'{"type": "animate", "mesh_path": 3}\n')  # a malformed line
    worker._proc.stdin.flush()
    bad = _next_event(worker, P.ErrorEvent)
    assert bad.error_type == "ProtocolError" and "mesh_path" in bad.message
    assert worker.running
    assert isinstance(worker.run(_request(files), timeout=60), P.ResultEvent)


def test_a_frame_count_past_the_end_counts_from_the_first_frame(files):
    from gvf_addon.worker.server import _read_clip
    from gvf_core.pipeline import InputError

    assert len(_read_clip(files["video"], 2, 4).frames) == 4  # frames 2…5 of 6
    with pytest.raises(InputError, match="4 frames from frame 3 asked for, but the video has only 6 frames"):
        _read_clip(files["video"], 3, 4)


def test_free_model(worker, files):
    assert isinstance(worker.run(_request(files), timeout=60), P.ResultEvent)
    worker.free_model()
    freed = _next_event(worker, P.ModelFreedEvent)
    assert freed.reason == "request" and freed.had_models
    worker.ping()
    assert not _next_event(worker, P.ReadyEvent).models_loaded


def _next_event(worker, kind, timeout: float = 30.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in worker.poll():
            if isinstance(event, kind):
                return event
        time.sleep(0.02)
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


# --------------------------------------------------------------------------- lifecycle
def test_idle_timeout_frees_the_models_and_stop_ends_the_process(files):
    with WorkerClient(PYTHON, idle_timeout=0.3) as client:
        assert isinstance(client.run(_request(files), timeout=60), P.ResultEvent)
        freed = _next_event(client, P.ModelFreedEvent)
        assert freed.reason == "idle" and freed.had_models
        proc = client._proc
    assert proc.poll() == 0 and not client.running


def test_a_worker_python_without_torch_fails_to_start_with_the_fix(tmp_path):
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    with pytest.raises(WorkerStartError, match="(?s)No module named 'torch'.*pip install torch==.*whl/cpu"):
        WorkerClient(PYTHON, site_dirs=[tmp_path / "site"]).start()
    with pytest.raises(WorkerStartError, match="cannot run the worker Python"):
        WorkerClient(str(tmp_path / "no-python")).start()


def test_check_worker_python():
    good = check_worker_python(PYTHON)
    assert good.ok and good.torch_version == torch.__version__ and good.python_version.startswith("3.")
    assert "OK" in good.message and not good.missing
    bad = check_worker_python("/nonexistent/bin/python3")
    assert not bad.ok and "no such file" in bad.message and bad.torch_version is None


def test_stop_during_a_job_cancels_it_and_a_killed_worker_fails_its_jobs(files):
    import time

    client = WorkerClient(PYTHON)
    client.start()
    job = client.submit(_request(files, video_path=files["long"], steps=2000))
    _next_event(client, P.ProgressEvent)
    t0 = time.monotonic()
    assert client.stop() == 0 and time.monotonic() - t0 < 10
    assert any(isinstance(e, P.CancelledEvent) and e.job_id == job for e in client.poll())

    client.start()  # the same client starts a fresh worker
    job = client.submit(_request(files, video_path=files["long"], steps=2000))
    _next_event(client, P.ProgressEvent)
    client._proc.kill()
    final = client.wait(job, timeout=30)
    assert isinstance(final, P.ErrorEvent) and final.error_type == "WorkerDied", final
    assert not client.running
    client.stop()
