"""Where torch runs: a worker process that runs gvf_core, and the add-on's client for it.

Nothing here imports bpy. ``protocol``, ``deps`` and ``client`` need only the standard
library (Blender's own Python imports them); ``server`` and ``state`` run in the worker's
Python, which has torch and gvf_core. See docs/worker.md.
"""

from .client import WorkerCheck, WorkerClient, WorkerError, WorkerStartError, check_worker_python
from .protocol import (AnimateRequest, CancelledEvent, CancelRequest, ErrorEvent, ExtendRequest, FreeModelRequest,
                       ModelFreedEvent, PingRequest, ProgressEvent, ProtocolError, ReadyEvent, ResultEvent,
                       ShutdownRequest, decode, encode, load_result)

__all__ = [
    "AnimateRequest", "CancelRequest", "CancelledEvent", "ErrorEvent", "ExtendRequest", "FreeModelRequest",
    "ModelFreedEvent", "PingRequest", "ProgressEvent", "ProtocolError", "ReadyEvent", "ResultEvent", "ShutdownRequest",
    "WorkerCheck", "WorkerClient", "WorkerError", "WorkerStartError", "check_worker_python", "decode", "encode",
    "load_result",
]
