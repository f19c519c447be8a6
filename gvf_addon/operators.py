"""The panel's operators.

Animate / Extend / Batch (selected objects) run their jobs in the worker process. From the
UI (``invoke``) they are modal: a timer polls the worker, progress shows in the status bar
and the panel, Esc (or the panel's Cancel) cancels, Blender stays responsive. Headless
(``execute``, e.g. ``bpy.ops.gvf.animate()`` in a script) the same job runs synchronously
through :mod:`gvf_addon.jobs`. Either way the scene is only touched by the write-back at the
end, so a failed or cancelled job leaves it as it was.
"""

import json
import subprocess
import sys
import traceback
from pathlib import Path

import bpy
from bpy.props import BoolProperty

from . import jobs
from .jobs import JobCancelled, JobError
from .preferences import get_preferences, worker_settings
from .properties import job_settings
from .worker import protocol as P
from .worker.client import WorkerClient, WorkerError, check_worker_python

_WORKER: dict = {"client": None, "key": None}
_CANCEL: dict = {"asked": False}
_STATE: dict = {"operator": None, "scene": None}  # the running modal job (module state: never saved or undone)
PANEL_TIMER_S = 0.2


def get_worker(context=None) -> WorkerClient:
    """The add-on's worker, started (or restarted when the preferences changed) on demand."""
    kwargs = worker_settings(get_preferences(context))
    key = json.dumps(kwargs, sort_keys=True, default=str)
    client = _WORKER["client"]
    if client is not None and (_WORKER["key"] != key or not client.running):
        client.stop(grace=2.0)
        client = None
    if client is None:
        client = WorkerClient(**kwargs)
        _WORKER["client"], _WORKER["key"] = client, key
    if not client.running:
        client.start()
    return client


def stop_worker() -> None:
    client = _WORKER["client"]
    if client is not None:
        client.stop(grace=2.0)
    _WORKER["client"] = None


def _target(context):
    s = context.scene.gvf
    obj = s.target or context.active_object
    if obj is not None and obj.get("gvf_source"):  # a result object: its source is meant
        obj = bpy.data.objects.get(obj["gvf_source"], obj)
    if obj is None or obj.type != "MESH":
        raise JobError("no mesh to animate: pick one in the GVF panel's Mesh field or make a mesh the active object")
    return obj


def _redraw(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _fail(op, context, message: str, detail: str = "") -> set:
    context.scene.gvf.status = message.splitlines()[0][:200]
    op.report({"ERROR"}, message)
    if detail:
        print(detail, file=sys.stderr)
    return {"CANCELLED"}


def _report_warnings(op, todo) -> None:
    """Show each job's warnings (gvf_addon.scene_motion) before it runs."""
    for job in todo:
        for warning in job.warnings:
            op.report({"WARNING"}, f"GVF: {warning}")


def job_running() -> bool:
    """Whether a modal GVF job is running in this Blender session (not saved with the .blend)."""
    return _STATE["operator"] is not None


class _WorkerJobOperator:
    """Shared machinery: prepare job(s) → run in the worker → write back."""

    _jobs: list
    _job_id: str | None = None
    _timer = None
    _current = None
    _cancelling = False

    def make_jobs(self, context) -> list:
        raise NotImplementedError

    # ---------------------------------------------------------------- headless
    def execute(self, context):
        s = context.scene.gvf
        _CANCEL["asked"] = False
        done = 0
        try:
            todo = self.make_jobs(context)
            _report_warnings(self, todo)
            worker = get_worker(context)
            for job in todo:
                s.status = f"{job.source_name}: running"
                result, event = jobs.run_sync(job, worker, cancel=lambda: _CANCEL["asked"])
                jobs.apply_result(context, job, result, event)
                done += 1
        except JobCancelled:
            _CANCEL["asked"] = False
            s.status = "Cancelled" + (f" after {done} object(s)" if done else "")
            self.report({"WARNING"}, "GVF: cancelled" + (f"; {done} object(s) were written" if done else "; the scene is unchanged"))
            return {"FINISHED"} if done else {"CANCELLED"}
        except (JobError, WorkerError, ValueError, OSError) as exc:
            result = _fail(self, context, f"GVF: {exc}", getattr(exc, "traceback", "") or traceback.format_exc())
            return {"FINISHED"} if done else result
        s.status = f"Done: {done} object(s)"
        return {"FINISHED"}

    # ---------------------------------------------------------------- modal
    def invoke(self, context, event):
        if job_running():
            self.report({"WARNING"}, "GVF: a job is already running (Esc cancels it)")
            return {"CANCELLED"}
        s = context.scene.gvf
        _CANCEL["asked"] = False
        try:
            self._jobs = list(self.make_jobs(context))
            _report_warnings(self, self._jobs)
            self._worker = get_worker(context)
            self._done, self._total, self._cancelling = 0, len(self._jobs), False
            self._submit_next(context)  # before any handler exists: a failure here leaves nothing behind
        except (JobError, WorkerError, ValueError, OSError) as exc:
            return _fail(self, context, f"GVF: {exc}", traceback.format_exc())
        _STATE["operator"], _STATE["scene"] = self, context.scene.name
        s.progress, s.status = 0.0, "Starting"
        wm = context.window_manager
        self._timer = wm.event_timer_add(PANEL_TIMER_S, window=context.window)
        wm.progress_begin(0, 1000)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _submit_next(self, context) -> bool:
        if not self._jobs:
            return False
        self._current = self._jobs.pop(0)
        self._job_id = self._worker.submit(self._current.request)
        self._cancelling = False
        return True

    def _end(self, context, status: str) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        scene = bpy.data.scenes.get(_STATE.get("scene") or "") or context.scene
        scene.gvf.status = status
        _STATE["operator"], _STATE["scene"] = None, None
        _CANCEL["asked"] = False
        _redraw(context)

    def _finish_partial(self, context, what: str) -> set:
        """End after a cancel or failure: the objects already written stay (one undo step)."""
        if self._done:
            self._end(context, f"{what} after {self._done} of {self._total} object(s)")
            self.report({"WARNING"}, f"GVF: {what.lower()}; {self._done} object(s) were written")
            return {"FINISHED"}
        self._end(context, what)
        return {"CANCELLED"}

    def cancel(self, context):
        """Blender removes the handler (file loaded, window closed, add-on disabled): stop the job."""
        try:
            if self._job_id is not None and self._worker.running:
                self._worker.cancel(self._job_id)
        except WorkerError:
            pass
        self._end(context, "Cancelled")

    def modal(self, context, event):
        try:
            return self._modal(context, event)
        except Exception as exc:  # noqa: BLE001 - never leave the timer, cursor and status behind
            print(traceback.format_exc(), file=sys.stderr)
            try:
                if self._job_id is not None and self._worker.running:
                    self._worker.cancel(self._job_id)
            except WorkerError:
                pass
            self.report({"ERROR"}, f"GVF: {type(exc).__name__}: {exc}")
            return self._finish_partial(context, "Failed")

    def _modal(self, context, event):
        s = context.scene.gvf
        if event.type == "ESC" and event.value == "PRESS" or _CANCEL["asked"]:
            _CANCEL["asked"] = False
            if not self._cancelling:
                self._cancelling = True
                self._jobs.clear()  # nothing after this job either
                self._worker.cancel(self._job_id)
                s.status = "Cancelling…"
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        events = self._worker.poll()  # first: a worker that died has sent its last words
        for ev in events:
            if getattr(ev, "job_id", None) != self._job_id:
                continue
            if isinstance(ev, P.ProgressEvent):
                frac = ev.done / max(1, ev.total)
                overall = (self._done + frac) / max(1, self._total)
                s.progress = overall
                s.status = f"{self._current.source_name}: {ev.stage} {ev.done}/{ev.total}"
                context.window_manager.progress_update(int(1000 * overall))
                if context.workspace is not None:
                    context.workspace.status_text_set(f"GVF {int(100 * overall)}% · {s.status} · Esc cancels")
                _redraw(context)
                continue
            if self._cancelling and isinstance(ev, P.ResultEvent):
                return self._finish_partial(context, "Cancelled")  # finished before the cancel arrived: not written
            try:
                result, final = jobs.finish(ev)
                jobs.apply_result(context, self._current, result, final)
            except JobCancelled:
                self.report({"WARNING"}, "GVF: cancelled" + ("" if self._done else "; the scene is unchanged"))
                return self._finish_partial(context, "Cancelled")
            except (JobError, ValueError, OSError) as exc:
                self.report({"ERROR"}, f"GVF: {exc}")
                print(getattr(exc, "traceback", "") or traceback.format_exc(), file=sys.stderr)
                return self._finish_partial(context, f"Failed: {str(exc).splitlines()[0][:200]}")
            self._done += 1
            if not self._submit_next(context):
                self._end(context, f"Done: {self._done} object(s)")
                self.report({"INFO"}, f"GVF: animated {self._done} object(s)")
                return {"FINISHED"}
        if not self._worker.running:
            tail = "\n".join(self._worker.stderr_lines()[-20:])
            print(f"GVF worker stopped:\n{tail}", file=sys.stderr)
            self.report({"ERROR"}, "GVF: the worker process stopped; its last output is in the system console")
            return self._finish_partial(context, "The worker stopped")
        return {"RUNNING_MODAL"}


class GVF_OT_animate(_WorkerJobOperator, bpy.types.Operator):
    """Animate the mesh from the driving video (Esc cancels)"""

    bl_idname = "gvf.animate"
    bl_label = "Animate from Video"
    bl_options = {"REGISTER", "UNDO"}

    def make_jobs(self, context):
        obj = _target(context)
        return [jobs.prepare_animate(context, obj, job_settings(context.scene, get_preferences(context)),
                                     camera_obj=context.scene.gvf.camera)]


class GVF_OT_extend(_WorkerJobOperator, bpy.types.Operator):
    """Continue the mesh's animation after its last frame with the next chunk of video"""

    bl_idname = "gvf.extend"
    bl_label = "Extend Clip"
    bl_options = {"REGISTER", "UNDO"}

    def make_jobs(self, context):
        obj = _target(context)
        return [jobs.prepare_extend(context, obj, job_settings(context.scene, get_preferences(context)))]


class GVF_OT_batch(_WorkerJobOperator, bpy.types.Operator):
    """Animate every selected mesh with the same video, or run the batch command on a folder of assets"""

    bl_idname = "gvf.batch"
    bl_label = "Batch Convert"
    bl_options = {"REGISTER", "UNDO"}

    def make_jobs(self, context):
        meshes = [o for o in context.selected_objects if o.type == "MESH" and not o.get("gvf_source")]
        if not meshes:
            raise JobError("no meshes selected: select the meshes to animate (results are skipped)")
        settings = job_settings(context.scene, get_preferences(context))
        return [jobs.prepare_animate(context, o, settings, camera_obj=context.scene.gvf.camera) for o in meshes]

    def invoke(self, context, event):
        if context.scene.gvf.batch_source == "FOLDER":
            return self.execute(context)
        return super().invoke(context, event)

    def execute(self, context):
        if context.scene.gvf.batch_source == "FOLDER":
            return self._folder(context)
        return super().execute(context)

    def _folder(self, context):
        s = context.scene.gvf
        assets, out = bpy.path.abspath(s.batch_assets), bpy.path.abspath(s.batch_out)
        if not s.batch_assets or not Path(assets).is_dir():
            return _fail(self, context, f"GVF: {assets or '(empty)'}: pick a folder of mesh files for the batch")
        if not s.video_path:
            return _fail(self, context, "GVF: pick the driving video first")
        prefs = get_preferences(context)
        settings = job_settings(context.scene, prefs)
        if s.batch_out.startswith("//") and not bpy.data.filepath:
            return _fail(self, context, "GVF: save the .blend first, or pick an absolute output folder for the batch")
        cmd = batch_command(assets, bpy.path.abspath(s.video_path), out, settings, worker_settings(prefs))
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
            with open(Path(out) / "batch.log", "w") as log:
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return _fail(self, context, f"GVF: cannot start the batch in {out}: {exc}")
        s.status = f"Batch started in the background; reports in {out}"
        self.report({"INFO"}, f"GVF: batch started: {' '.join(cmd[:3])} …; see {out}batch.log")
        return {"FINISHED"}


def batch_command(assets: str, video: str, out: str, settings, worker: dict) -> list[str]:
    """The headless batch command line (Blender in background mode running gvf_addon.batch),
    with the preferences' worker Python and dependency folder."""
    script = Path(__file__).resolve().parent / "batch.py"
    return [bpy.app.binary_path, "--background", "--factory-startup", "--python", str(script), "--",
            "--assets", assets, "--video", video, "--out", out, "--mode", settings.mode, "--steps", str(settings.steps),
            "--seed", str(settings.seed), "--strength", str(settings.strength), "--refine", settings.refine,
            "--device", settings.device, "--frames", str(settings.frames), "--first-frame", str(settings.first_frame),
            "--appearance-views", str(settings.appearance_views),
            "--worker-python", worker["python_executable"], "--no-progress",
            *[a for d in worker["site_dirs"] for a in ("--site-dir", str(d))],
            *(["--model", settings.model_dir] if settings.model_dir else [])]


class GVF_OT_cancel(bpy.types.Operator):
    """Cancel the running GVF job (same as Esc)"""

    bl_idname = "gvf.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        _CANCEL["asked"] = job_running()  # no job: nothing to cancel, and no stale request for the next one
        return {"FINISHED"}


class GVF_OT_render_reference(bpy.types.Operator):
    """Render the mesh alone from the camera to a PNG (the first frame for an image-to-video generator)"""

    bl_idname = "gvf.render_reference"
    bl_label = "Render Reference Frame"

    def execute(self, context):
        from .reference import render_reference

        try:
            obj = _target(context)
            path = render_reference(context, obj, context.scene.gvf.reference_path, camera_obj=context.scene.gvf.camera)
        except (JobError, ValueError, RuntimeError, OSError) as exc:
            return _fail(self, context, f"GVF: {exc}")
        context.scene.gvf.status = f"Reference: {path}"
        self.report({"INFO"}, f"GVF: reference frame written to {path}")
        return {"FINISHED"}


class GVF_OT_add_front_camera(bpy.types.Operator):
    """Add the documented default front camera for the mesh (the camera the sample video was made with) and
    match the render size to the video"""

    bl_idname = "gvf.add_front_camera"
    bl_label = "Add Front Camera"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from .camera import add_front_camera, video_size
        from .scene_io import mesh_arrays

        s = context.scene.gvf
        try:
            obj = _target(context)
            arrays = mesh_arrays(context.evaluated_depsgraph_get(), obj)
        except (JobError, ValueError) as exc:
            return _fail(self, context, f"GVF: {exc}")
        size = video_size(s.video_path) if s.video_path else None
        if size is not None:
            r = context.scene.render
            r.resolution_x, r.resolution_y, r.resolution_percentage = size[0], size[1], 100
        cam = add_front_camera(context, arrays["vertices"])
        s.camera = cam
        self.report({"INFO"}, f"GVF: added {cam.name!r}" + (f" for a {size[0]}×{size[1]} video" if size else ""))
        return {"FINISHED"}


class GVF_OT_remove_result(bpy.types.Operator):
    """Remove the mesh's GVF result and show the mesh again"""

    bl_idname = "gvf.remove_result"
    bl_label = "Remove Result"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from .writeback import remove_result

        try:
            obj = _target(context)
        except JobError as exc:
            return _fail(self, context, f"GVF: {exc}")
        if not remove_result(obj, context):
            self.report({"INFO"}, f"GVF: {obj.name!r} has no result")
        return {"FINISHED"}


class GVF_OT_check_dependencies(bpy.types.Operator):
    """Check that the worker Python has what the model needs, and say how to install what is missing"""

    bl_idname = "gvf.check_dependencies"
    bl_label = "Check Dependencies"

    def execute(self, context):
        prefs = get_preferences(context)
        kwargs = worker_settings(prefs)
        check = check_worker_python(kwargs["python_executable"], site_dirs=kwargs["site_dirs"])
        if prefs is not None:
            prefs.check_report = check.message
        print(check.message)
        self.report({"INFO"} if check.ok else {"ERROR"}, check.message.splitlines()[0])
        return {"FINISHED"} if check.ok else {"CANCELLED"}


class GVF_OT_free_model(bpy.types.Operator):
    """Free the model's (GPU) memory in the worker; the next job loads it again"""

    bl_idname = "gvf.free_model"
    bl_label = "Free Model"
    stop: BoolProperty(name="Stop worker", default=False, description="Also stop the worker process")

    def execute(self, context):
        client = _WORKER["client"]
        if client is None or not client.running:
            self.report({"INFO"}, "GVF: no worker is running")
            return {"FINISHED"}
        if self.stop:
            stop_worker()
        else:
            client.free_model()
        self.report({"INFO"}, "GVF: model freed")
        return {"FINISHED"}


CLASSES = (GVF_OT_animate, GVF_OT_extend, GVF_OT_batch, GVF_OT_cancel, GVF_OT_render_reference,
           GVF_OT_add_front_camera, GVF_OT_remove_result, GVF_OT_check_dependencies, GVF_OT_free_model)
