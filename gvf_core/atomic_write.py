"""Files that appear whole or not at all.

Every file the project writes for later reading (weights, training checkpoints, data shards and
their manifest, latent caches, point caches, the worker's results) goes through
:func:`atomic_path`: the body writes a temporary file beside the target, which is then flushed
to disk and renamed over the target in one step. A crash, a full disk or a cancelled job leaves
the old file (or none) in place, never half a file; the temporary file is removed on failure.
The temporary name is unique per call, so processes writing into one folder (evaluation parts,
DDP ranks, parallel encoders) never share one.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (created if missing) for the body to write;
    when the body returns, the file is fsynced and renamed to ``path``; when it raises, the
    temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name (not mkstemp: the file keeps the permissions a plain open would give it)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["atomic_path"]
