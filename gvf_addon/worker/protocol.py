"""Messages between the add-on and the worker process: one JSON object per line.

Requests go to the worker's stdin, events come back on its stdout; every line is
``{"type": "<name>", ...fields}`` (see docs/worker.md). Only small values travel through
the pipe: meshes, videos and results are files, named by path (a result is an ``.npz`` in
the job folder, read with :func:`load_result`).

This module needs only the standard library (numpy for :func:`load_result`), so Blender's
own Python can import it without torch.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Union

PROTOCOL_VERSION = 1


class ProtocolError(ValueError):
    """A line that is not a valid message (bad JSON, unknown type, missing or mistyped field)."""


# --------------------------------------------------------------------------- requests
@dataclass
class AnimateRequest:
    """Run :func:`gvf_core.pipeline.animate` on files."""

    TYPE: ClassVar[str] = "animate"
    mesh_path: str
    """A mesh file (.obj .ply .glb .gltf .stl) or an .npz with ``vertices`` [V, 3] and ``faces`` [F, 3]
    (optional ``uvs``, ``texture``, ``vertex_colors``, ``base_color``), world frame, +Z up."""
    video_path: str
    """A video file or a folder of PNG frames."""
    camera: dict | None = None
    """Camera JSON (docs/pipeline.md); None = the default front camera."""
    frames: int | None = None
    """How many video frames to use; None = all (from first_frame on)."""
    first_frame: int = 0
    """The first video frame used (0 = the video's first)."""
    steps: int = 2  # = gvf_core DEFAULT_SAMPLER.steps (tested)
    seed: int = 0
    strength: float = 1.0
    device: str = "auto"
    model_dir: str | None = None
    """Folder with vae.safetensors + dit.safetensors; None = the shipped model."""
    out_dir: str | None = None
    """Job folder for the result; None = a folder in the worker's work dir, removed when it stops."""
    options: dict = field(default_factory=dict)
    """Further AnimateSettings keywords: method, guidance_video, num_gaussians, segment_frames, ..."""
    views_dir: str | None = None
    """A folder of multiview renders of the asset (``views.json`` + RGBA PNGs, world-frame cameras): the
    canonical Gaussians' appearance is fitted to them first (options' ``appearance_steps``)."""
    gaussians: bool = False
    """Also write the Gaussians' centres and colours per frame into the result."""
    save_state: bool = False
    """Also write ``state.npz``, which an ExtendRequest can continue after the worker has restarted."""
    write_outputs: bool = False
    """Also write everything ``gvf animate --out`` writes (PC2, PLY sequence, report.json, ...) into the job folder."""
    preview: bool = False
    """With write_outputs: render preview.mp4 too."""
    job_id: str = ""
    """Filled in by :meth:`WorkerClient.submit` when empty."""


@dataclass
class ExtendRequest:
    """Run :func:`gvf_core.pipeline.extend` on an animation the worker kept (``source_job_id``,
    one of the last few results) or on a saved state (``state_path``)."""

    TYPE: ClassVar[str] = "extend"
    more_video_path: str
    source_job_id: str | None = None
    state_path: str | None = None
    first_frame: int = 0
    """The first frame of more_video to use."""
    frames: int | None = None
    """How many frames of more_video to use; None = all (from first_frame on)."""
    refine: str | None = None
    """Refinement of the new frames (auto | off | fast | best); None = the animation's own setting."""
    steps: int | None = None
    """None = the steps the animation was made with."""
    seed: int | None = None
    device: str = "auto"
    model_dir: str | None = None
    """None = the model the animation was made with."""
    out_dir: str | None = None
    gaussians: bool = False
    save_state: bool = False
    write_outputs: bool = False
    preview: bool = False
    job_id: str = ""

    def check(self) -> None:
        if (self.source_job_id is None) == (self.state_path is None):
            raise ProtocolError("ExtendRequest needs exactly one of source_job_id (an animation the worker kept) "
                                "and state_path (a state.npz written with save_state)")


@dataclass
class CancelRequest:
    """Stop job ``job_id`` between sampler steps or decode chunks (or before it starts)."""

    TYPE: ClassVar[str] = "cancel"
    job_id: str


@dataclass
class FreeModelRequest:
    """Drop the cached models and return their (GPU) memory; answered by ModelFreedEvent."""

    TYPE: ClassVar[str] = "free_model"


@dataclass
class PingRequest:
    """Answered at once, even while a job runs, by a ReadyEvent."""

    TYPE: ClassVar[str] = "ping"


@dataclass
class ShutdownRequest:
    """Cancel the running and queued jobs, then exit."""

    TYPE: ClassVar[str] = "shutdown"


# --------------------------------------------------------------------------- events
@dataclass
class ReadyEvent:
    """Sent once the worker has imported torch and gvf_core, and in answer to a ping."""

    TYPE: ClassVar[str] = "ready"
    python: str
    executable: str
    torch: str
    cuda: bool
    device: str
    """What device="auto" resolves to."""
    pid: int
    gvf_core: str
    """Where gvf_core was imported from."""
    cuda_device: str | None = None
    models_loaded: bool = False
    busy: bool = False
    protocol: int = PROTOCOL_VERSION


@dataclass
class ProgressEvent:
    TYPE: ClassVar[str] = "progress"
    job_id: str
    stage: str
    """e.g. "load_models", "segment 1 diffusion", "segment 1 decode", "write_result"."""
    done: int
    total: int


@dataclass
class ResultEvent:
    TYPE: ClassVar[str] = "result"
    job_id: str
    result_path: str
    """``result.npz``: vertices [T, V, 3] float32, faces [F, 3], fps; with gaussians: gaussian_means and
    gaussian_rgb [T, N, 3] float32. All in the input mesh's own frame and vertex order."""
    report: dict
    state_path: str | None = None
    out_dir: str = ""
    """The job folder."""


@dataclass
class ErrorEvent:
    TYPE: ClassVar[str] = "error"
    job_id: str
    """"" for errors that belong to no job (a malformed request, a worker that cannot start)."""
    message: str
    traceback: str = ""
    error_type: str = ""
    """The exception's class name: InputError, CheckpointError, ProtocolError, MissingDependency, WorkerDied, ..."""


@dataclass
class CancelledEvent:
    TYPE: ClassVar[str] = "cancelled"
    job_id: str
    message: str = ""


@dataclass
class ModelFreedEvent:
    TYPE: ClassVar[str] = "model_freed"
    reason: str = "request"
    """"request" (FreeModelRequest) or "idle" (idle timeout)."""
    had_models: bool = False


Request = Union[AnimateRequest, ExtendRequest, CancelRequest, FreeModelRequest, PingRequest, ShutdownRequest]
Event = Union[ReadyEvent, ProgressEvent, ResultEvent, ErrorEvent, CancelledEvent, ModelFreedEvent]
REQUESTS = {c.TYPE: c for c in (AnimateRequest, ExtendRequest, CancelRequest, FreeModelRequest, PingRequest, ShutdownRequest)}
EVENTS = {c.TYPE: c for c in (ReadyEvent, ProgressEvent, ResultEvent, ErrorEvent, CancelledEvent, ModelFreedEvent)}
FINAL_EVENTS = (ResultEvent, ErrorEvent, CancelledEvent)
"""The events that end a job: exactly one of them answers each AnimateRequest / ExtendRequest."""


# --------------------------------------------------------------------------- encode / decode
def encode(message) -> str:
    """One line of JSON (no newline), ``{"type": ..., **fields}``."""
    kind = getattr(type(message), "TYPE", None)
    if kind not in REQUESTS and kind not in EVENTS:
        raise ProtocolError(f"not a protocol message: {message!r}")
    check = getattr(message, "check", None)
    if check is not None:
        check()
    return json.dumps({"type": kind, **asdict(message)}, separators=(",", ":"), allow_nan=False)


def _type_ok(value, hint) -> tuple[bool, object]:
    """(matches, value converted) for the few field types messages use."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(hint)
        if value is None:
            return type(None) in args, None
        return _type_ok(value, next(a for a in args if a is not type(None)))
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if hint is dict:
        return isinstance(value, dict), value
    raise TypeError(f"unsupported field type {hint}")


def from_dict(data: dict, kind: str | None = None):
    """A message from its dict form; ``kind`` "request" or "event" restricts which types are accepted."""
    if not isinstance(data, dict):
        raise ProtocolError(f"a message is a JSON object, got {type(data).__name__}")
    name = data.get("type")
    table = {"request": REQUESTS, "event": EVENTS, None: {**REQUESTS, **EVENTS}}[kind]
    if not isinstance(name, str) or name not in table:
        raise ProtocolError(f"unknown message type {name!r}; known {kind + ' ' if kind else ''}types: {', '.join(sorted(table))}")
    cls = table[name]
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known) - {"type"})
    if unknown:
        raise ProtocolError(f"{name}: unknown field(s) {', '.join(unknown)}; fields are {', '.join(known)}")
    values = {}
    for fname, f in known.items():
        if fname not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ProtocolError(f"{name}: missing field {fname!r}")
            continue
        ok, value = _type_ok(data[fname], hints[fname])
        if not ok:
            raise ProtocolError(f"{name}.{fname} must be {hints[fname]}, got {data[fname]!r}")
        values[fname] = value
    message = cls(**values)
    check = getattr(message, "check", None)
    if check is not None:
        check()
    return message


def decode(line: str | bytes, kind: str | None = None):
    """The message on one line; raises :class:`ProtocolError` with the reason."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not a JSON message ({exc}): {line[:200]!r}") from None
    return from_dict(data, kind)


def is_final(event) -> bool:
    return isinstance(event, FINAL_EVENTS)


# --------------------------------------------------------------------------- result files
RESULT_FILE = "result.npz"
STATE_FILE = "state.npz"


@dataclass
class JobResult:
    """What ``result.npz`` holds (input mesh frame and vertex order)."""

    vertices: "object"  # [T, V, 3] float32
    faces: "object"  # [F, 3] int64
    fps: float
    gaussian_means: "object" = None  # [T, N, 3] float32 or None
    gaussian_rgb: "object" = None  # [T, N, 3] float32 in 0..1 or None


def load_result(path) -> JobResult:
    import numpy as np

    with np.load(Path(path), allow_pickle=False) as z:
        return JobResult(vertices=z["vertices"], faces=z["faces"], fps=float(z["fps"]),
                         gaussian_means=z["gaussian_means"] if "gaussian_means" in z else None,
                         gaussian_rgb=z["gaussian_rgb"] if "gaussian_rgb" in z else None)
