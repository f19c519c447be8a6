"""The modal operator's state machine (gvf_addon/operators.py), driven with stand-ins for the
window manager, the events and the worker: Blender cannot run a modal operator headless."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("bpy")

from gvf_addon import operators  # noqa: E402
from gvf_addon.worker import protocol as P  # noqa: E402


class FakeWorker:
    def __init__(self):
        self.submitted, self.cancelled, self.queue, self.running = [], [], [], True

    def submit(self, request):
        self.submitted.append(request)
        return f"job{len(self.submitted)}"

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def poll(self):
        out, self.queue = self.queue, []
        return out

    def stderr_lines(self):
        return ["worker log line"]


class FakeWM:
    def __init__(self):
        self.calls, self.windows = [], []

    def event_timer_add(self, *a, **k):
        self.calls.append("timer_add")
        return "timer"

    def event_timer_remove(self, timer):
        self.calls.append("timer_remove")

    def progress_begin(self, *a):
        self.calls.append("progress_begin")

    def progress_update(self, *a):
        pass

    def progress_end(self):
        self.calls.append("progress_end")

    def modal_handler_add(self, op):
        self.calls.append("handler")


class Op(operators._WorkerJobOperator):
    def __init__(self, n_jobs=2, warnings=()):
        self.n_jobs, self.reports, self.warnings = n_jobs, [], list(warnings)

    def make_jobs(self, context):
        return [SimpleNamespace(source_name=f"obj{i}", request=f"req{i}", warnings=self.warnings)
                for i in range(self.n_jobs)]

    def report(self, kind, message):
        self.reports.append((next(iter(kind)), message))


@pytest.fixture
def setup(monkeypatch):
    worker = FakeWorker()
    monkeypatch.setattr(operators, "get_worker", lambda context=None: worker)
    applied = []
    monkeypatch.setattr(operators.jobs.P, "load_result", lambda path: "loaded result")  # the real finish() otherwise
    monkeypatch.setattr(operators.jobs, "apply_result", lambda context, job, result, event: applied.append(job.source_name))
    wm = FakeWM()
    status = {}
    scene = SimpleNamespace(name="not-a-bpy-scene", gvf=SimpleNamespace(progress=0.0, status=""))
    workspace = SimpleNamespace(status_text_set=lambda text: status.__setitem__("text", text))
    context = SimpleNamespace(window_manager=wm, window=None, scene=scene, workspace=workspace)
    yield SimpleNamespace(worker=worker, applied=applied, wm=wm, context=context, status=status)
    operators._STATE.update(operator=None, scene=None)
    operators._CANCEL["asked"] = False


TIMER = SimpleNamespace(type="TIMER", value="NOTHING")
ESC = SimpleNamespace(type="ESC", value="PRESS")


def _result(job_id):
    return P.ResultEvent(job_id=job_id, result_path="x", report={})


def _cleaned_up(s):
    assert s.wm.calls.count("timer_remove") == 1 and s.wm.calls.count("progress_end") == 1
    assert not operators.job_running() and s.status["text"] is None


def test_two_jobs_run_one_after_the_other(setup):
    s, op = setup, Op()
    assert op.invoke(s.context, None) == {"RUNNING_MODAL"} and operators.job_running()
    s.worker.queue = [P.ProgressEvent(job_id="job1", stage="segment 1 diffusion", done=4, total=8)]
    assert op.modal(s.context, TIMER) == {"RUNNING_MODAL"}
    assert s.context.scene.gvf.progress == pytest.approx(0.25) and "diffusion 4/8" in s.status["text"]
    s.worker.queue = [_result("job1")]
    assert op.modal(s.context, TIMER) == {"RUNNING_MODAL"} and s.worker.submitted == ["req0", "req1"]
    assert op.modal(s.context, SimpleNamespace(type="MOUSEMOVE", value="NOTHING")) == {"PASS_THROUGH"}
    s.worker.queue = [_result("job2")]
    assert op.modal(s.context, TIMER) == {"FINISHED"}
    assert s.applied == ["obj0", "obj1"]
    _cleaned_up(s)


def test_scene_warnings_are_reported_when_the_jobs_start(setup):
    s, op = setup, Op(n_jobs=1, warnings=["camera 'Cam' moves"])
    assert op.invoke(s.context, None) == {"RUNNING_MODAL"}
    assert op.reports == [("WARNING", "GVF: camera 'Cam' moves")] and s.worker.submitted == ["req0"]
    s.worker.queue = [_result("job1")]
    assert op.modal(s.context, TIMER) == {"FINISHED"}
    _cleaned_up(s)


def test_a_second_job_is_refused_while_one_runs(setup):
    s = setup
    Op().invoke(s.context, None)
    other = Op()
    assert other.invoke(s.context, None) == {"CANCELLED"} and other.reports[0][0] == "WARNING"


def test_esc_cancels_and_nothing_is_written(setup):
    s, op = setup, Op()
    op.invoke(s.context, None)
    assert op.modal(s.context, ESC) == {"RUNNING_MODAL"}
    op.modal(s.context, ESC)  # a second Esc does not send a second cancel
    assert s.worker.cancelled == ["job1"]
    s.worker.queue = [P.CancelledEvent(job_id="job1")]
    assert op.modal(s.context, TIMER) == {"CANCELLED"}
    assert s.applied == [] and s.worker.submitted == ["req0"]
    _cleaned_up(s)


def test_a_result_that_arrives_after_the_cancel_is_not_written(setup):
    s, op = setup, Op()
    op.invoke(s.context, None)
    op.modal(s.context, ESC)
    s.worker.queue = [_result("job1")]
    assert op.modal(s.context, TIMER) == {"CANCELLED"} and s.applied == []
    _cleaned_up(s)


def test_cancel_after_the_first_object_keeps_it_as_the_undo_step(setup):
    s, op = setup, Op()
    op.invoke(s.context, None)
    s.worker.queue = [_result("job1")]
    op.modal(s.context, TIMER)
    operators._CANCEL["asked"] = True  # the panel's ✕
    op.modal(s.context, TIMER)
    s.worker.queue = [P.CancelledEvent(job_id="job2")]
    assert op.modal(s.context, TIMER) == {"FINISHED"} and s.applied == ["obj0"]
    assert "after 1 of 2" in s.context.scene.gvf.status
    _cleaned_up(s)


def test_an_error_event_and_an_exception_both_clean_up(setup, monkeypatch):
    s, op = setup, Op(1)
    op.invoke(s.context, None)
    s.worker.queue = [P.ErrorEvent(job_id="job1", message="bad video: no object", error_type="InputError")]
    assert op.modal(s.context, TIMER) == {"CANCELLED"} and "bad video" in op.reports[-1][1]
    _cleaned_up(s)

    s.wm.calls.clear()
    op2 = Op(1)
    op2.invoke(s.context, None)
    monkeypatch.setattr(operators.jobs, "finish", lambda ev: (_ for _ in ()).throw(KeyError("vertices")))
    s.worker.queue = [_result("job2")]
    assert op2.modal(s.context, TIMER) == {"CANCELLED"} and op2.reports[-1][0] == "ERROR"
    _cleaned_up(s)


def test_a_dead_worker_ends_the_job(setup):
    s, op = setup, Op(1)
    op.invoke(s.context, None)
    s.worker.running = False
    assert op.modal(s.context, TIMER) == {"CANCELLED"} and "worker" in op.reports[-1][1]
    _cleaned_up(s)


def test_blender_removing_the_handler_cancels_the_job(setup):
    s, op = setup, Op(1)
    op.invoke(s.context, None)
    op.cancel(s.context)
    assert s.worker.cancelled == ["job1"]
    _cleaned_up(s)
