"""Vertex animation as Point Cache 2 (``.pc2``) files, the format of Blender's Mesh Cache modifier.

Layout (all little-endian)::

    offset  size  field
         0    12  signature b"POINTCACHE2\\0"
        12     4  int32   version (1)
        16     4  int32   num_points (V)
        20     4  float32 start_frame
        24     4  float32 sample_rate
        28     4  int32   num_samples (T)
        32  T*V*12 float32 [T, V, 3] positions, sample by sample, x y z per point

In Blender: add a Mesh Cache modifier (``type='MESH_CACHE'``) with ``cache_format='PC2'`` and
``filepath``; the mesh must have exactly V vertices, in the same order. With the default
``time_mode='FRAME'`` the modifier shows sample ``frame_scale * scene_frame - frame_start``
(its own ``frame_start``/``frame_scale``, default 0 and 1), so sample 0 plays at scene frame
``frame_start``; fractional samples are interpolated and samples past the ends are clamped.
The header's ``start_frame`` and ``sample_rate`` are read only in ``time_mode='TIME'``
(as seconds and seconds per sample); they are kept here for other tools.

Coordinates: a PC2 file stores each vertex in the object's local coordinates exactly as given;
this module converts nothing. The caller converts to Blender's frame (right-handed, +Z up,
docs/conventions.md) before writing. The modifier's ``forward_axis``/``up_axis`` default to
+Y/+Z, which leaves the coordinates as stored.

Pure numpy.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from gvf_core.atomic_write import atomic_path

__all__ = ["PC2Error", "PC2_SIGNATURE", "write_pc2", "read_pc2"]

PC2_SIGNATURE = b"POINTCACHE2\0"
_HEADER = struct.Struct("<12siiffi")  # signature, version, num_points, start_frame, sample_rate, num_samples
_VERSION = 1


class PC2Error(ValueError):
    """A PC2 file or array that cannot be written or read; the message names the file."""


def write_pc2(path: str | os.PathLike, vertices, start_frame: float = 0.0, sample_rate: float = 1.0) -> Path:
    """Write vertex positions ``[T, V, 3]`` (numpy or torch, any float type) to ``path`` as PC2.

    Stored as float32. ``start_frame`` and ``sample_rate`` go into the header (see the module
    docstring for how Blender uses them). The file is written to a temporary file beside
    ``path`` and moved into place, so a reader never sees a partial file. Raises
    :class:`PC2Error` for a wrong shape, no samples or points, or non-finite values.
    """
    path = Path(path)
    if hasattr(vertices, "detach"):
        vertices = vertices.detach().cpu().numpy()
    vertices = np.asarray(vertices)
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise PC2Error(f"PC2 needs vertices [T, V, 3]; got shape {vertices.shape}; not writing {path}")
    T, V, _ = vertices.shape
    if T < 1 or V < 1:
        raise PC2Error(f"PC2 needs at least one sample and one point; got [T={T}, V={V}, 3]; not writing {path}")
    if not np.issubdtype(vertices.dtype, np.number) or np.iscomplexobj(vertices):
        raise PC2Error(f"PC2 needs real numbers; got dtype {vertices.dtype}; not writing {path}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused below
        data = vertices.astype("<f4")  # [T, V, 3]
    bad = ~np.isfinite(data).all(axis=(1, 2))
    if bad.any():
        raise PC2Error(
            f"{int(bad.sum())} of {T} samples have NaN or infinite positions (first: sample {int(np.argmax(bad))}) "
            f"or values beyond float32; not writing {path}"
        )
    if not (np.isfinite(np.float32(start_frame)) and np.isfinite(np.float32(sample_rate))):
        raise PC2Error(
            f"start_frame and sample_rate must be finite float32 numbers; got {start_frame}, {sample_rate}; not writing {path}"
        )
    if sample_rate <= 0:
        raise PC2Error(f"sample_rate must be positive; got {sample_rate}; not writing {path}")
    header = _HEADER.pack(PC2_SIGNATURE, _VERSION, V, float(start_frame), float(sample_rate), T)

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(data.tobytes())
    return path


def read_pc2(path: str | os.PathLike) -> tuple[np.ndarray, float, float]:
    """Read a PC2 file: ``(vertices float32 [T, V, 3], start_frame, sample_rate)``.

    Raises :class:`PC2Error` naming the file for a bad signature, an unknown version, negative
    counts, or a file shorter or longer than its header says.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise PC2Error(f"{path}: truncated PC2 file: {len(data)} bytes, shorter than the {_HEADER.size}-byte header")
    signature, version, V, start_frame, sample_rate, T = _HEADER.unpack_from(data)
    if signature != PC2_SIGNATURE:
        raise PC2Error(f"{path} is not a PC2 file: signature {signature!r}, expected {PC2_SIGNATURE!r}")
    if version != _VERSION:
        raise PC2Error(f"{path}: unsupported PC2 version {version} (only version {_VERSION} exists)")
    if V < 0 or T < 0:
        raise PC2Error(f"{path}: malformed PC2 header: num_points {V}, num_samples {T}")
    want = _HEADER.size + T * V * 12
    if len(data) < want:
        raise PC2Error(
            f"{path}: truncated PC2 file: header says {T} samples x {V} points ({want} bytes), file has {len(data)} bytes"
        )
    if len(data) > want:
        raise PC2Error(
            f"{path}: malformed PC2 file: header says {T} samples x {V} points ({want} bytes), "
            f"file has {len(data) - want} extra bytes"
        )
    vertices = np.frombuffer(data, dtype="<f4", count=T * V * 3, offset=_HEADER.size).reshape(T, V, 3)
    return vertices.astype(np.float32), float(start_frame), float(sample_rate)
