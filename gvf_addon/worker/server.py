"""The worker process: ``python -m gvf_addon.worker.server [--idle-timeout S] [--work-dir DIR]``.

Reads requests (one JSON line each, :mod:`.protocol`) from stdin on a reader thread, runs one
job at a time on the main thread with :func:`gvf_core.pipeline.animate` / ``extend``, and writes
events to stdout. Everything else a library prints goes to stderr: stdout carries protocol
lines only. See docs/worker.md.

- Cancel: the reader thread sets the job's ``threading.Event``; the pipeline checks it between
  sampler steps and decode chunks and stops with :class:`Cancelled` → CancelledEvent.
- Errors: any exception of a job → ErrorEvent with its traceback; the loop goes on.
- Memory: the loaded models stay cached between jobs (one model folder + device at a time) and
  are dropped, with ``torch.cuda.empty_cache()``, on FreeModelRequest or after ``idle_timeout``
  seconds without a job. The last ``KEEP_ANIMATIONS`` results stay in memory for ExtendRequest.
- stdin closing (the add-on went away) counts as a ShutdownRequest.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import queue
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path

from . import protocol as P
from .deps import fix_message

from gvf_core.atomic_write import atomic_path

log = logging.getLogger("gvf_worker")

KEEP_ANIMATIONS = 4
IDLE_TIMEOUT_S = 300.0
PROGRESS_INTERVAL_S = 0.05
"""At most ~20 progress events a second per job (a stage's first and last events always go)."""


class Worker:
    def __init__(self, out, work_dir: Path, idle_timeout: float = IDLE_TIMEOUT_S):
        import torch

        self._torch = torch
        self._out = out  # binary stream that carries protocol lines only
        self._write_lock = threading.Lock()
        self.work_dir = Path(work_dir)
        self.idle_timeout = idle_timeout
        self._inbox: queue.Queue = queue.Queue()
        self._cancel: dict[str, threading.Event] = {}
        self._cancel_lock = threading.Lock()
        self._models = None  # (key, Models)
        self._animations: OrderedDict = OrderedDict()
        self._busy = False
        self._last_job_end = time.monotonic()
        self._out_broken = False

    # ------------------------------------------------------------------ output
    def send(self, event) -> None:
        line = (P.encode(event) + "\n").encode("utf-8")
        with self._write_lock:
            if self._out_broken:
                return
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._out_broken = True  # nobody listens any more: cancel everything and stop
                log.warning("stdout closed; shutting down")
                self._cancel_all()
                self._inbox.put(P.ShutdownRequest())

    def _cancel_all(self) -> None:
        with self._cancel_lock:
            for event in self._cancel.values():
                event.set()

    def ready_event(self) -> P.ReadyEvent:
        import gvf_core

        torch = self._torch
        cuda = torch.cuda.is_available()
        return P.ReadyEvent(
            python=platform.python_version(), executable=sys.executable, torch=torch.__version__, cuda=cuda,
            device="cuda" if cuda else "cpu", pid=os.getpid(), gvf_core=str(Path(gvf_core.__file__).parent),
            cuda_device=torch.cuda.get_device_name(0) if cuda else None, models_loaded=self._models is not None,
            busy=self._busy,
        )

    # ------------------------------------------------------------------ input (reader thread)
    def read_requests(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            if not raw.strip():
                continue
            try:
                req = P.decode(raw, kind="request")
            except P.ProtocolError as exc:
                self.send(P.ErrorEvent(job_id=_job_id_of(raw), message=str(exc), error_type="ProtocolError"))
                continue
            if isinstance(req, P.PingRequest):
                self.send(self.ready_event())
            elif isinstance(req, P.CancelRequest):
                with self._cancel_lock:
                    event = self._cancel.get(req.job_id)
                if event is None:
                    log.info("cancel for job %s, which is neither queued nor running: ignored", req.job_id)
                else:
                    event.set()
            elif isinstance(req, (P.AnimateRequest, P.ExtendRequest)):
                with self._cancel_lock:
                    clash = not req.job_id or req.job_id in self._cancel
                    if not clash:
                        self._cancel[req.job_id] = threading.Event()
                if clash:
                    why = "has no job_id" if not req.job_id else f"reuses job_id {req.job_id!r} of a queued or running job"
                    self.send(P.ErrorEvent(job_id=req.job_id, message=f"{req.TYPE} request {why}", error_type="ProtocolError"))
                else:
                    self._inbox.put(req)
            elif isinstance(req, P.ShutdownRequest):
                break
            else:
                self._inbox.put(req)
        else:
            log.info("stdin closed")
        self._cancel_all()
        self._inbox.put(P.ShutdownRequest())

    # ------------------------------------------------------------------ main loop
    def serve(self) -> None:
        while True:
            timeout = None
            if self._models is not None and self.idle_timeout is not None and self.idle_timeout >= 0:
                timeout = max(0.0, self._last_job_end + self.idle_timeout - time.monotonic())
            try:
                req = self._inbox.get(timeout=timeout)
            except queue.Empty:
                self.free_models("idle")
                continue
            if isinstance(req, P.ShutdownRequest):
                return
            if isinstance(req, P.FreeModelRequest):
                self.free_models("request")
            else:
                self.run_job(req)

    def free_models(self, reason: str) -> None:
        had = self._models is not None
        self._models = None
        gc.collect()
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
        log.info("models freed (%s)", reason)
        self.send(P.ModelFreedEvent(reason=reason, had_models=had))

    def _load_models(self, model_dir: str | None, device: str, progress):
        from gvf_core.pipeline.core import SHIPPED_MODEL, load_models

        key = (str(Path(model_dir).resolve()) if model_dir else str(SHIPPED_MODEL), device)
        if self._models is not None and self._models[0] == key:
            return self._models[1]
        if self._models is not None:  # one model set at a time: memory stays bounded
            self._models = None
            gc.collect()
            if self._torch.cuda.is_available():
                self._torch.cuda.empty_cache()
        progress("load_models", 0, 1)
        models = load_models(key[0], device)
        self._models = (key, models)
        progress("load_models", 1, 1)
        log.info("loaded %s on %s", key[0], device)
        return models

    def _progress(self, job_id: str):
        last = {"stage": None, "t": 0.0}

        def progress(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if stage == last["stage"] and done < total and now - last["t"] < PROGRESS_INTERVAL_S:
                return
            last["stage"], last["t"] = stage, now
            self.send(P.ProgressEvent(job_id=job_id, stage=stage, done=int(done), total=int(total)))

        return progress

    def run_job(self, req) -> None:
        from gvf_core.models.sampler import Cancelled

        with self._cancel_lock:
            cancel_event = self._cancel[req.job_id]
        self._busy = True
        t0 = time.perf_counter()
        try:
            if cancel_event.is_set():
                raise Cancelled("cancelled before it started")
            run = self._animate if isinstance(req, P.AnimateRequest) else self._extend
            event = run(req, cancel_event.is_set, self._progress(req.job_id))
            log.info("job %s done in %.2f s", req.job_id, time.perf_counter() - t0)
        except Cancelled as exc:
            event = P.CancelledEvent(job_id=req.job_id, message=str(exc))
            log.info("job %s cancelled", req.job_id)
        except Exception as exc:  # noqa: BLE001 - every job error goes back to the caller, the loop goes on
            event = P.ErrorEvent(job_id=req.job_id, message=_message(exc), traceback=traceback.format_exc(),
                                 error_type=type(exc).__name__)
            log.error("job %s failed:\n%s", req.job_id, event.traceback)
            if _is_out_of_memory(exc):
                gc.collect()
                if self._torch.cuda.is_available():
                    self._torch.cuda.empty_cache()
        finally:
            with self._cancel_lock:
                self._cancel.pop(req.job_id, None)
            self._busy = False
            self._last_job_end = time.monotonic()
        self.send(event)

    # ------------------------------------------------------------------ jobs
    def _animate(self, req: P.AnimateRequest, cancel, progress) -> P.ResultEvent:
        from gvf_core.pipeline import AnimateSettings, animate
        from gvf_core.pipeline.core import resolve_device
        from gvf_core.pipeline.inputs import read_mesh

        explicit = {"steps", "seed", "strength"}
        allowed = [f for f in AnimateSettings.__dataclass_fields__ if f not in explicit]
        unknown = sorted(set(req.options) - set(allowed))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} in AnimateRequest.options; known: {', '.join(allowed)}")
        device = resolve_device(req.device)
        # inputs are read and checked before the models load, so a bad input is reported first
        mesh = read_mesh(_read_mesh(req.mesh_path))
        clip = _read_clip(req.video_path, req.first_frame, req.frames)
        models = self._load_models(req.model_dir, device, progress)
        anim = animate(mesh, clip, camera=req.camera, frames=req.frames, steps=req.steps, seed=req.seed,
                       strength=req.strength, device=device, progress=progress, cancel=cancel, model=models,
                       views=req.views_dir, **req.options)
        return self._finish(req, anim, cancel, progress)

    def _extend(self, req: P.ExtendRequest, cancel, progress) -> P.ResultEvent:
        from gvf_core.pipeline import extend
        from gvf_core.pipeline.core import resolve_device

        if req.source_job_id is not None:
            previous = self._animations.get(req.source_job_id)
            if previous is None:
                kept = ", ".join(self._animations) or "none"
                raise KeyError(f"no animation kept for job {req.source_job_id!r} (the worker keeps the last {KEEP_ANIMATIONS}: "
                               f"{kept}); pass the state_path of a result saved with save_state instead")
        else:
            from .state import load_animation

            previous = load_animation(req.state_path)
        device = resolve_device(req.device)
        clip = _read_clip(req.more_video_path, req.first_frame, req.frames, minimum=1)
        model_dir = req.model_dir or previous.settings.get("model")
        models = self._load_models(model_dir, device, progress)
        anim = extend(previous, clip.frames, steps=req.steps, seed=req.seed, device=device, progress=progress,
                      cancel=cancel, model=models, refine=req.refine)
        return self._finish(req, anim, cancel, progress)

    def _finish(self, req, anim, cancel, progress) -> P.ResultEvent:
        """Write the job folder; a cancel that arrived while the last step ran still wins."""
        import numpy as np

        from gvf_core.models.sampler import Cancelled
        from gvf_core.pipeline.outputs import build_report, write_outputs

        if cancel():
            raise Cancelled("cancelled before the result was written")
        job_dir = Path(req.out_dir) if req.out_dir else self.work_dir / req.job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        progress("write_result", 0, 1)
        arrays = {"vertices": anim.vertices.astype(np.float32), "faces": np.asarray(anim.faces, np.int64),
                  "fps": np.float64(anim.fps)}
        if req.gaussians:
            g = anim.normalization.invert_gaussians(anim.model_gaussians)
            arrays["gaussian_means"] = g.means.float().numpy()
            arrays["gaussian_rgb"] = g.rgb.clamp(0, 1).float().numpy()
        result = job_dir / P.RESULT_FILE
        with atomic_path(result) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        state_path = None
        if req.save_state:
            from .state import save_animation

            state_path = str(save_animation(anim, job_dir / P.STATE_FILE))
        if req.write_outputs:
            write_outputs(anim, job_dir, preview=req.preview, progress=progress)
        progress("write_result", 1, 1)
        self._animations[req.job_id] = anim
        self._animations.move_to_end(req.job_id)
        while len(self._animations) > KEEP_ANIMATIONS:
            self._animations.popitem(last=False)
        report = json.loads(json.dumps(build_report(anim, {"job_id": req.job_id}), default=str))
        return P.ResultEvent(job_id=req.job_id, result_path=str(result), report=report, state_path=state_path,
                             out_dir=str(job_dir))


# --------------------------------------------------------------------------- helpers
def _read_mesh(path: str):
    """A mesh path as animate() takes it, or the arrays of an .npz (vertices, faces, optional colours)."""
    if Path(path).suffix.lower() != ".npz":
        return path
    import numpy as np

    from gvf_core.mesh import MeshData
    from gvf_core.pipeline import InputError

    if not Path(path).is_file():
        raise InputError(f"{path}: no such mesh file")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("vertices", "faces") if k not in z]
        if missing:
            raise InputError(f"{path}: a mesh .npz needs arrays vertices [V, 3] and faces [F, 3]; missing {', '.join(missing)}")
        extra = {k: z[k] for k in ("uvs", "texture", "vertex_colors", "base_color") if k in z}
        try:
            return MeshData(vertices=z["vertices"], faces=z["faces"], source=str(path), **extra)
        except ValueError as exc:
            raise InputError(str(exc)) from exc


def _read_clip(path: str, first: int, frames: int | None, minimum: int = 2):
    """Frames ``first`` … ``first + frames`` (all from ``first`` on when None) of a video, checked."""
    from dataclasses import replace

    from gvf_core.pipeline import InputError
    from gvf_core.video import VideoError, read_video

    if first < 0 or (frames is not None and frames < minimum):
        raise InputError(f"{path}: need first_frame >= 0 and at least {minimum} frame(s), got first_frame={first}, frames={frames}")
    try:
        clip = read_video(path, max_frames=None if frames is None else first + frames)
    except VideoError as exc:
        raise InputError(str(exc)) from exc
    if len(clip.frames) - first < minimum:
        raise InputError(f"{path}: the video has {len(clip.frames)} frames, so frames {first}… leave "
                         f"{max(0, len(clip.frames) - first)}; at least {minimum} needed (lower the first frame)")
    if frames is not None and len(clip.frames) - first < frames:
        raise InputError(f"{path}: {frames} frames from frame {first} asked for, but the video has only "
                         f"{len(clip.frames)} frames (lower the first frame or the frame count)")
    return replace(clip, frames=clip.frames[first:])


def _message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    if _is_out_of_memory(exc):
        text += ("\nOut of memory: press Free model, lower num_gaussians or segment_frames, "
                 "use fewer frames, or run on the CPU")
    return text


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _job_id_of(raw: bytes) -> str:
    try:
        data = json.loads(raw)
        return str(data.get("job_id", "")) if isinstance(data, dict) else ""
    except ValueError:
        return ""


def _protocol_stdout():
    """Keep the real stdout for protocol lines and point fd 1 and sys.stdout at stderr, so a stray
    print() or C-level write cannot corrupt the stream."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gvf_addon.worker.server", description=__doc__.split("\n")[0])
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S,
                        help="seconds without a job after which the models are freed (negative: never)")
    parser.add_argument("--work-dir", default=None, help="where job folders go when a request has no out_dir "
                        "(default: a temporary folder removed at exit)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="gvf-worker: %(message)s")
    out = _protocol_stdout()
    try:
        import importlib

        for module in ("torch", "gvf_core.pipeline"):  # fail early, with the fix, if either is missing
            importlib.import_module(module)
    except ImportError as exc:
        name = (exc.name or "").split(".")[0] or str(exc)
        error = P.ErrorEvent(job_id="", message=f"the worker cannot start: {exc}\n" + fix_message(sys.executable, [name]),
                             traceback=traceback.format_exc(), error_type="MissingDependency")
        out.write((P.encode(error) + "\n").encode("utf-8"))
        return 3
    own_dir = args.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="gvf-worker-")) if own_dir else Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(out, work_dir, idle_timeout=args.idle_timeout)
    reader = threading.Thread(target=worker.read_requests, args=(sys.stdin.buffer,), name="gvf-worker-stdin", daemon=True)
    worker.send(worker.ready_event())
    log.info("ready: python %s, torch %s, work dir %s", platform.python_version(), worker._torch.__version__, work_dir)
    reader.start()
    try:
        worker.serve()
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
