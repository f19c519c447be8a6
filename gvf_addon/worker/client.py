"""The add-on's side of the worker: spawn it, send requests, read events without blocking.

Standard library only (no torch, no bpy), so Blender's own Python runs it::

    with WorkerClient() as worker:                      # sys.executable by default
        job = worker.submit(AnimateRequest(mesh_path=..., video_path=...))
        while True:                                     # a modal timer calls poll()
            for event in worker.poll(): ...
        # or, headless: event = worker.wait(job)

The worker package is loaded by its file path under the name ``gvf_worker``, so the worker
starts whatever the add-on's package is called once installed (``bl_ext.<repo>.gvf_animate``)
and never imports the add-on's ``__init__`` (which may import bpy).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from . import protocol as P
from .deps import REQUIREMENTS, fix_message, gvf_core_root

WORKER_DIR = Path(__file__).resolve().parent
STDERR_LINES = 200

# argv: worker package folder, folder holding gvf_core ("" for none), server arguments...
_BOOTSTRAP = """\
import importlib.util, sys
folder, root = sys.argv[1], sys.argv[2]
if root and importlib.util.find_spec("gvf_core") is None:
    sys.path.append(root)
spec = importlib.util.spec_from_file_location("gvf_worker", folder + "/__init__.py", submodule_search_locations=[folder])
module = importlib.util.module_from_spec(spec)
sys.modules["gvf_worker"] = module
spec.loader.exec_module(module)
from gvf_worker.server import main
sys.exit(main(sys.argv[3:]))
"""


class WorkerError(RuntimeError):
    """The worker could not start, or died."""


class WorkerStartError(WorkerError):
    pass


def _popen_kwargs() -> dict:
    # a new process group: Ctrl-C in Blender's terminal does not kill the worker mid-job
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def _environment(env: dict | None, site_dirs) -> dict:
    out = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = str(v)
    if site_dirs:
        out["PYTHONPATH"] = os.pathsep.join([*map(str, site_dirs), *filter(None, [out.get("PYTHONPATH")])])
    out["PYTHONIOENCODING"] = "utf-8"
    return out


class WorkerClient:
    """One worker process. ``env``: variables added to (None: removed from) this process's
    environment; ``site_dirs``: folders put first on the worker's ``sys.path`` (a private
    dependency folder for Blender's own Python); ``idle_timeout``: seconds without a job after
    which the worker frees its models."""

    def __init__(self, python_executable: str | None = None, env: dict | None = None, cwd=None, site_dirs=(),
                 idle_timeout: float = 300.0, work_dir=None, ready_timeout: float = 120.0):
        self.python = str(python_executable or sys.executable)
        self.env, self.cwd, self.site_dirs = env, cwd, list(site_dirs)
        self.idle_timeout, self.work_dir, self.ready_timeout = idle_timeout, work_dir, ready_timeout
        self.ready: P.ReadyEvent | None = None
        self._proc: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._backlog: collections.deque = collections.deque()
        self._stderr: collections.deque = collections.deque(maxlen=STDERR_LINES)
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stdout_done = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> P.ReadyEvent:
        """Spawn the worker and wait for its ReadyEvent; raises :class:`WorkerStartError` with the
        reason (which Python, what is missing and how to install it, its stderr) otherwise."""
        if self.running:
            return self.ready
        args = ["--idle-timeout", str(self.idle_timeout)]
        if self.work_dir is not None:
            args += ["--work-dir", str(self.work_dir)]
        root = gvf_core_root()
        cmd = [self.python, "-c", _BOOTSTRAP, str(WORKER_DIR), str(root or ""), *args]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env=_environment(self.env, self.site_dirs), cwd=self.cwd, **_popen_kwargs())
        except OSError as exc:
            raise WorkerStartError(f"cannot run the worker Python {self.python!r}: {exc}. Choose a Python 3.11 "
                                   "executable with torch installed (or Blender's own Python) in the add-on preferences") from exc
        self._events, self._backlog, self._in_flight = queue.Queue(), collections.deque(), set()
        self._stderr.clear()
        self._stdout_done.clear()
        self._threads = [threading.Thread(target=self._read_stdout, name="gvf-worker-events", daemon=True),
                         threading.Thread(target=self._read_stderr, name="gvf-worker-log", daemon=True)]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                event = self._events.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                if self._stdout_done.is_set() and self._events.empty():
                    self._reap(1.0)
                    raise WorkerStartError(f"the worker ({self.python}) exited with code {self._proc.returncode} before it "
                                           f"was ready.\n{self._stderr_tail()}") from None
                if time.monotonic() > deadline:
                    self.stop(grace=1.0)
                    raise WorkerStartError(f"the worker ({self.python}) was not ready after {self.ready_timeout:.0f} s."
                                           f"\n{self._stderr_tail()}") from None
                continue
            if isinstance(event, P.ReadyEvent):
                self.ready = event
                return event
            if isinstance(event, P.ErrorEvent):
                self._reap(5.0)
                raise WorkerStartError(f"{event.message}\n{self._stderr_tail()}")
            self._backlog.append(event)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and not self._stdout_done.is_set()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def stop(self, grace: float = 10.0) -> int | None:
        """ShutdownRequest (the running job is cancelled), then terminate, then kill."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                self._send(P.ShutdownRequest())
            except WorkerError:
                pass
            try:
                proc.stdin.close()
            except OSError:
                pass
            self._reap(grace)
        for t in self._threads:
            t.join(timeout=2.0)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        return proc.returncode

    def _reap(self, grace: float) -> None:
        proc = self._proc
        for action in (None, proc.terminate, proc.kill):
            if action is not None:
                action()
            try:
                proc.wait(timeout=grace if action is None else 5.0)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> "WorkerClient":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ requests
    def _send(self, message) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise WorkerError(f"the worker is not running{self._exit_note()}")
        line = (P.encode(message) + "\n").encode("utf-8")
        try:
            with self._lock:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise WorkerError(f"the worker stopped listening ({exc}){self._exit_note()}") from exc

    def submit(self, request) -> str:
        """Queue an AnimateRequest / ExtendRequest; returns its job_id (made up when empty)."""
        if not isinstance(request, (P.AnimateRequest, P.ExtendRequest)):
            raise TypeError(f"submit() takes an AnimateRequest or ExtendRequest, got {type(request).__name__}")
        if not request.job_id:
            request = replace(request, job_id=uuid.uuid4().hex[:12])
        with self._lock:
            self._in_flight.add(request.job_id)
        try:
            self._send(request)
        except WorkerError:
            with self._lock:
                self._in_flight.discard(request.job_id)
            raise
        return request.job_id

    def cancel(self, job_id: str) -> None:
        self._send(P.CancelRequest(job_id=job_id))

    def free_model(self) -> None:
        self._send(P.FreeModelRequest())

    def ping(self) -> None:
        """The worker answers with a ReadyEvent (models_loaded, busy), even during a job."""
        self._send(P.PingRequest())

    @property
    def in_flight(self) -> set[str]:
        with self._lock:
            return set(self._in_flight)

    # ------------------------------------------------------------------ events
    def poll(self) -> list:
        """Every event that has arrived, without blocking (for a Blender modal timer)."""
        out = list(self._backlog)
        self._backlog.clear()
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def wait(self, job_id: str, timeout: float | None = None, on_event=None):
        """Block until job ``job_id`` ends; returns its ResultEvent, ErrorEvent or CancelledEvent.
        ``on_event(event)`` sees each of the job's events (progress) as it comes; other events are
        kept for :meth:`poll`. Raises TimeoutError, or WorkerError when the worker is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for i, event in enumerate(list(self._backlog)):
            if getattr(event, "job_id", None) == job_id and P.is_final(event):
                del self._backlog[i]
                return event
        while True:
            remaining = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                if self._stdout_done.is_set() and self._events.empty():
                    raise WorkerError(f"the worker is gone and job {job_id} never finished{self._exit_note()}") from None
                continue
            if getattr(event, "job_id", None) != job_id:
                self._backlog.append(event)
                continue
            if on_event is not None:
                on_event(event)
            if P.is_final(event):
                return event

    def run(self, request, timeout: float | None = None, on_event=None):
        """submit() + wait(): the synchronous job call (headless, batch)."""
        return self.wait(self.submit(request), timeout=timeout, on_event=on_event)

    # ------------------------------------------------------------------ reader threads
    def _read_stdout(self) -> None:
        for raw in iter(self._proc.stdout.readline, b""):
            try:
                event = P.decode(raw, kind="event")
            except P.ProtocolError as exc:
                self._stderr.append(f"[unreadable worker output: {exc}]")
                continue
            if P.is_final(event):
                with self._lock:
                    self._in_flight.discard(event.job_id)
            self._events.put(event)
        # the worker is gone: every job it still had ends with an error
        code = self._proc.wait()
        for t in self._threads[1:]:
            t.join(timeout=2.0)
        with self._lock:
            orphans, self._in_flight = sorted(self._in_flight), set()
        for job_id in orphans:
            self._events.put(P.ErrorEvent(job_id=job_id, error_type="WorkerDied",
                                          message=f"the worker process exited (code {code}) before the job finished"
                                                  f"\n{self._stderr_tail()}"))
        self._stdout_done.set()

    def _read_stderr(self) -> None:
        for raw in iter(self._proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", errors="replace").rstrip())

    def stderr_lines(self) -> list[str]:
        """The worker's last log lines."""
        return list(self._stderr)

    def _stderr_tail(self, n: int = 30) -> str:
        lines = list(self._stderr)[-n:]
        return "--- worker stderr (last lines) ---\n" + "\n".join(lines) if lines else "(the worker wrote nothing to stderr)"

    def _exit_note(self) -> str:
        code = self.returncode
        return "" if code is None else f" (exit code {code})\n{self._stderr_tail()}"


# --------------------------------------------------------------------------- dependency check
@dataclass
class WorkerCheck:
    ok: bool
    python_version: str | None
    torch_version: str | None
    cuda: bool
    message: str
    """What was found, or what is missing and the commands that install it."""
    missing: tuple[str, ...] = ()


_CHECK = """\
import importlib, importlib.util, json, platform, sys
out = {"python": platform.python_version(), "executable": sys.executable, "modules": {}, "errors": {},
       "pip": importlib.util.find_spec("pip") is not None, "cuda": False}
for name in sys.argv[2].split(","):
    try:
        out["modules"][name] = str(getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:
        out["errors"][name] = f"{type(exc).__name__}: {exc}"
if "torch" in out["modules"]:
    import torch
    out["cuda"] = bool(torch.cuda.is_available())
    out["cuda_device"] = torch.cuda.get_device_name(0) if out["cuda"] else None
if importlib.util.find_spec("gvf_core") is None and sys.argv[1]:
    sys.path.append(sys.argv[1])
spec = importlib.util.find_spec("gvf_core")
out["gvf_core"] = None if spec is None else str(spec.origin)
print("GVF-CHECK " + json.dumps(out))
"""


def check_worker_python(path: str | None = None, site_dirs=(), env: dict | None = None, timeout: float = 120.0) -> WorkerCheck:
    """Run ``path`` (default: this Python) with a small script that imports what the worker needs
    and report what is missing with the commands that install it."""
    python = str(path or sys.executable)
    root = gvf_core_root()
    target = str(site_dirs[0]) if site_dirs else None

    def fail(message: str) -> WorkerCheck:
        return WorkerCheck(False, None, None, False, message)

    try:
        proc = subprocess.run([python, "-c", _CHECK, str(root or ""), ",".join(REQUIREMENTS)], capture_output=True,
                              timeout=timeout, env=_environment(env, site_dirs))
    except FileNotFoundError:
        return fail(f"{python}: no such file. Choose a Python 3.11 executable (python3.11, python.exe) or leave the "
                    f"field empty to use Blender's own Python")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return fail(f"cannot run {python}: {exc}. Choose a Python 3.11 executable")
    line = next((ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("GVF-CHECK ")), None)
    if line is None:
        err = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        return fail(f"{python} is not a working Python (exit code {proc.returncode}): {err or 'no output'}")
    info = json.loads(line[len("GVF-CHECK "):])
    missing = [m for m in REQUIREMENTS if m not in info["modules"]]
    if info["gvf_core"] is None:
        missing.append("gvf_core")
    torch_version = info["modules"].get("torch")
    if missing:
        details = "; ".join(f"{m}: {e}" for m, e in info["errors"].items())
        message = fix_message(python, missing, target, info["pip"]) + (f"\n(import errors: {details})" if details else "")
        return WorkerCheck(False, info["python"], torch_version, info["cuda"], message, tuple(missing))
    gpu = f"CUDA ({info.get('cuda_device')})" if info["cuda"] else "CPU only (no CUDA GPU visible to torch)"
    return WorkerCheck(True, info["python"], torch_version, info["cuda"],
                       f"OK: Python {info['python']}, torch {torch_version}, {gpu}; gvf_core from {info['gvf_core']}")
