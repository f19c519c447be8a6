"""The add-on's job logic, callable synchronously (headless, batch, tests) and from the modal
operator: gather the inputs from the scene, run them in the worker, write the result back.

    job = prepare_animate(context, obj, settings, job_dir)      # main thread: export + camera
    result, report = run_sync(job, worker)                      # or submit + poll (modal)
    result_obj = apply_result(context, job, result)             # main thread: write-back

Nothing touches the scene before :func:`apply_result`, so a job that fails or is cancelled
leaves the scene exactly as it was. ``gvf_core`` (torch) only ever runs in the worker.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .camera import opencv_camera
from .scene_io import export_mesh, to_local
from .scene_motion import clip_frames, motion_warnings, video_frame_count
from .worker import protocol as P

OUTPUT_MODES = ("SHAPE_KEYS", "MESH_CACHE", "POINT_CLOUD")
REFINE_CHOICES = ("auto", "off", "fast", "best")


class JobError(RuntimeError):
    """A job that failed in the worker: the message names the problem and the fix."""

    def __init__(self, message: str, error_type: str = "", traceback: str = ""):
        super().__init__(message)
        self.error_type, self.traceback = error_type, traceback


class JobCancelled(RuntimeError):
    """The job was cancelled; nothing was written."""


@dataclass
class JobSettings:
    """What the panel (or the batch command) asks for."""

    video_path: str
    first_frame: int = 0  # first video frame used (0 = the first)
    frames: int = 0  # how many video frames (0 = all from first_frame on)
    steps: int = 2  # = gvf_core DEFAULT_SAMPLER.steps (tested; this process never imports gvf_core)
    seed: int = 0
    strength: float = 1.0
    refine: str = "auto"
    mode: str = "SHAPE_KEYS"
    frame_start: int = 1  # scene frame of the animation's first frame
    device: str = "auto"
    model_dir: str = ""
    appearance_views: int = 0  # > 0: render that many views in Blender and fit the Gaussians' colours to them
    options: dict = field(default_factory=dict)  # further AnimateSettings keywords (num_gaussians, ...)

    def check(self) -> None:
        if not self.video_path:
            raise JobError("no driving video: pick a video file (.mp4 .gif .webm) or a folder of PNG frames")
        if self.mode not in OUTPUT_MODES:
            raise JobError(f"unknown output mode {self.mode!r}; choose one of {', '.join(OUTPUT_MODES)}")
        if self.refine not in REFINE_CHOICES:
            raise JobError(f"unknown refinement {self.refine!r}; choose one of {', '.join(REFINE_CHOICES)}")
        if self.frames == 1:
            raise JobError("a driving video needs at least 2 frames; set Frames to 0 (all) or 2 or more")
        if self.first_frame < 0 or self.frames < 0 or self.steps < 1 or self.strength <= 0:
            raise JobError("first frame and frame count must be >= 0, steps >= 1 and strength > 0")


@dataclass
class Job:
    """A prepared job: its request and what the write-back needs."""

    source_name: str
    request: P.AnimateRequest | P.ExtendRequest
    matrix_world: np.ndarray
    mode: str
    frame_start: int
    job_dir: Path
    kind: str = "animate"
    scene_name: str = ""  # the scene the job was started in: its timeline gets the result, whichever is current then
    warnings: list[str] = field(default_factory=list)  # what the artist should know before the result lands (scene_motion)


def _video_path(path: str) -> str:
    import bpy

    resolved = bpy.path.abspath(path) if path.startswith("//") else path
    if not Path(resolved).exists():
        raise JobError(f"{resolved}: no such video file or folder; pick the driving video again")
    return str(Path(resolved).resolve())


def scene_camera(context, camera_obj=None):
    cam = camera_obj or context.scene.camera
    if cam is None:
        from .camera import CameraError

        raise CameraError("the scene has no active camera: add one (Add > Camera), set it active (Ctrl+Numpad 0) or pick "
                          "one in the GVF panel")
    return cam


def new_job_dir(base=None) -> Path:
    base = Path(base) if base else Path(tempfile.gettempdir()) / "gvf_jobs"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("job_%Y%m%d_%H%M%S_"), dir=base))


def _request_options(settings: JobSettings) -> dict:
    options = dict(settings.options)
    options["refine"] = settings.refine
    return options


def prepare_animate(context, obj, settings: JobSettings, job_dir=None, camera_obj=None) -> Job:
    """Export ``obj``'s evaluated mesh and the camera into a job folder; returns the job."""
    settings.check()
    video = _video_path(settings.video_path)
    camera_obj = scene_camera(context, camera_obj)
    camera = opencv_camera(camera_obj, context.scene)
    job_dir = Path(job_dir) if job_dir else new_job_dir()
    arrays = export_mesh(context.evaluated_depsgraph_get(), obj, job_dir / "mesh.npz")
    (job_dir / "camera.json").write_text(json.dumps(camera, indent=1))
    views = None
    if settings.appearance_views > 0:
        from .reference import render_views

        views = str(render_views(context, obj, job_dir / "views", count=settings.appearance_views))
    request = P.AnimateRequest(
        mesh_path=str(job_dir / "mesh.npz"), video_path=video, camera=camera, first_frame=settings.first_frame,
        frames=settings.frames or None, steps=settings.steps, seed=settings.seed, strength=settings.strength,
        device=settings.device, model_dir=settings.model_dir or None, out_dir=str(job_dir / "result"),
        options=_request_options(settings), gaussians=settings.mode == "POINT_CLOUD", save_state=True,
        views_dir=views,
    )
    first, last = clip_frames(settings.frame_start, None if settings.frames else video_frame_count(video),
                              settings.first_frame, settings.frames, context.scene.frame_end)
    return Job(obj.name, request, arrays["matrix_world"], settings.mode, settings.frame_start, job_dir,
               scene_name=context.scene.name, warnings=motion_warnings(context.scene, camera_obj, obj, first, last))


def prepare_extend(context, obj, settings: JobSettings, job_dir=None) -> Job:
    """Continue ``obj``'s existing result with the next chunk of video (``settings.video_path``,
    from ``settings.first_frame``): the state the last run saved is continued in the worker."""
    from .writeback import find_results

    settings.check()
    results = find_results(obj)
    if not results:
        raise JobError(f"{obj.name!r} has no GVF result to extend; run Animate from Video first")
    result = results[0]
    state = result.get("gvf_state")
    if not state or not Path(state).is_file():
        raise JobError(f"the result {result.name!r} has no saved state to continue (it was made in another session or its "
                       "job folder was removed); run Animate from Video again")
    video = _video_path(settings.video_path)
    job_dir = Path(job_dir) if job_dir else new_job_dir()
    request = P.ExtendRequest(more_video_path=video, state_path=state, first_frame=settings.first_frame,
                              frames=settings.frames or None, steps=settings.steps, seed=settings.seed,
                              device=settings.device, model_dir=settings.model_dir or None,
                              out_dir=str(job_dir / "result"), gaussians=result.get("gvf_mode") == "POINT_CLOUD",
                              save_state=True, refine=settings.refine)
    matrix = np.array(result.get("gvf_matrix_world") or np.eye(4).ravel().tolist(), dtype=np.float64).reshape(4, 4)
    return Job(obj.name, request, matrix, str(result.get("gvf_mode", settings.mode)),
               int(result.get("gvf_frame_start", settings.frame_start)), job_dir, kind="extend",
               scene_name=context.scene.name)


def run_sync(job: Job, worker, progress=None, cancel=None, timeout: float | None = None):
    """Run ``job`` in ``worker`` (a started :class:`WorkerClient`) and wait; returns
    (JobResult, ResultEvent). ``progress(stage, done, total)`` sees the worker's progress;
    ``cancel()`` returning True cancels the job (raises :class:`JobCancelled`)."""
    job_id = worker.submit(job.request)
    asked = {"cancel": False}

    def on_event(event):
        if isinstance(event, P.ProgressEvent) and progress is not None:
            progress(event.stage, event.done, event.total)
        if cancel is not None and not asked["cancel"] and cancel():
            asked["cancel"] = True
            worker.cancel(job_id)

    event = worker.wait(job_id, timeout=timeout, on_event=on_event)
    return finish(event)


def finish(event):
    """(JobResult, ResultEvent) of a job's final event; raises JobCancelled / JobError otherwise."""
    if isinstance(event, P.CancelledEvent):
        raise JobCancelled(event.message or "cancelled")
    if isinstance(event, P.ErrorEvent):
        raise JobError(event.message, event.error_type, event.traceback)
    return P.load_result(event.result_path), event


def apply_result(context, job: Job, result: P.JobResult, event: P.ResultEvent | None = None, pc2_path=None):
    """Write ``result`` back onto job's source object (one call: one undo step); returns the result object.
    ``pc2_path``: where a MESH_CACHE result's PC2 file goes (default: beside the .blend)."""
    import bpy

    from .writeback import write_animation

    source = bpy.data.objects.get(job.source_name)
    if source is None:
        raise JobError(f"the object {job.source_name!r} the job was made for is gone; nothing was written")
    target = context
    if job.scene_name and job.scene_name != context.scene.name:  # the user switched scenes while it ran
        target = bpy.data.scenes.get(job.scene_name)
        if target is None:
            raise JobError(f"the scene {job.scene_name!r} the job was started in is gone; nothing was written")
    vertices = to_local(result.vertices, job.matrix_world)
    points = None
    if job.mode == "POINT_CLOUD" and result.gaussian_means is not None:
        points = to_local(result.gaussian_means, job.matrix_world)
    obj = write_animation(target, source, vertices, job.mode, fps=result.fps, frame_start=job.frame_start,
                          points=points, pc2_path=pc2_path if job.mode == "MESH_CACHE" else None)
    obj["gvf_matrix_world"] = np.asarray(job.matrix_world, dtype=np.float64).ravel().tolist()
    if event is not None and event.state_path:
        obj["gvf_state"] = event.state_path
    return obj


__all__ = ["Job", "JobCancelled", "JobError", "JobSettings", "OUTPUT_MODES", "REFINE_CHOICES", "apply_result",
           "finish", "new_job_dir", "prepare_animate", "prepare_extend", "run_sync", "scene_camera"]
