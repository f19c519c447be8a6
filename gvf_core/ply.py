"""Gaussians to and from PLY files in the common 3DGS layout (docs/conventions.md).

One ``vertex`` element, one float32 property per value, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

The values are the raw parameters, exactly as :class:`gvf_core.gaussians.Gaussians` stores
them: ``f_dc`` is the SH DC coefficient, ``opacity`` the logit, ``scale_*`` natural logs,
``rot_*`` the unnormalized quaternion w x y z. The normals are zeros.

This is the layout the original 3DGS code writes (``GaussianModel.save_ply``). gsplat's
``export_splats(format="ply")`` writes the same properties in the same order without
``nx ny nz`` (and with ``f_rest_*`` after ``f_dc_*``); ``write_ply(..., normals=False)``
gives that layout. Viewers look properties up by name, so both open everywhere.

``read_ply`` reads either layout and files from other tools: ASCII, binary little- or
big-endian, any scalar property types, extra properties (``f_rest_*``, normals, ...) which
it ignores, and other elements before or after the vertex element (as long as the ones
before it have no list properties in a binary file). Higher-order SH (``f_rest_*``) are not
kept: :class:`Gaussians` holds the DC colour only.

Pure numpy; no plyfile dependency.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from gvf_core.gaussians import Gaussians

__all__ = ["ply_property_names", "write_ply", "write_ply_sequence", "read_ply"]

_MAX_HEADER_BYTES = 1 << 20
"""A header longer than this (without ``end_header``) is taken as a malformed file."""

_PLY_TYPES = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}

_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


def ply_property_names(normals: bool = True, num_rest: int = 0) -> list[str]:
    """The vertex property names, in file order, that ``write_ply`` writes.

    ``num_rest`` adds ``f_rest_0 .. f_rest_{num_rest-1}`` after ``f_dc_*`` (as 3DGS and
    gsplat place them); ``write_ply`` itself never writes any, since Gaussians carry SH DC only.
    """
    names = ["x", "y", "z"]
    if normals:
        names += ["nx", "ny", "nz"]
    names += [f"f_dc_{i}" for i in range(3)]
    names += [f"f_rest_{i}" for i in range(num_rest)]
    names += ["opacity"]
    names += [f"scale_{i}" for i in range(3)]
    names += [f"rot_{i}" for i in range(4)]
    return names


# ---------------------------------------------------------------------------------- writing
def _as_rows(gaussians: Gaussians, normals: bool) -> np.ndarray:
    """[N, P] float32 rows in ``ply_property_names(normals)`` order."""
    g = gaussians.detach().to("cpu", torch.float32)
    n = g.num
    cols = [g.means]  # [N, 3]
    if normals:
        cols.append(torch.zeros(n, 3))
    cols += [g.sh0, g.opacity_logits[:, None], g.log_scales, g.quats]  # [N,3] [N,1] [N,3] [N,4]
    return torch.cat(cols, dim=1).numpy()


def _header(num: int, names: list[str]) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {num}"]
    lines += [f"property float {name}" for name in names]
    lines += ["end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(path: str | os.PathLike, gaussians: Gaussians, *, normals: bool = True) -> Path:
    """Write unbatched Gaussians ``[N, C]`` as a binary little-endian 3DGS PLY file.

    ``normals=True`` writes zero ``nx ny nz`` after ``x y z`` (the original 3DGS layout);
    ``normals=False`` writes gsplat's exporter layout. Raises ``ValueError`` for batched
    Gaussians (use :func:`write_ply_sequence` for ``[T, N]``) and for non-finite values,
    which viewers cannot show (gsplat drops such rows; dropping would break the
    Gaussian-for-Gaussian correspondence between frames, so this refuses instead).
    """
    path = Path(path)
    if gaussians.batch_shape:
        raise ValueError(
            f"write_ply writes unbatched Gaussians [N, C]; got batch shape {tuple(gaussians.batch_shape)} "
            f"(index one set, or use write_ply_sequence for [T, N]); file {path}"
        )
    rows = _as_rows(gaussians, normals)
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {len(rows)} Gaussians have NaN or infinite values; not writing {path}")
    with open(path, "wb") as f:
        f.write(_header(len(rows), ply_property_names(normals)))
        f.write(rows.astype("<f4", copy=False).tobytes())
    return path


def write_ply_sequence(
    directory: str | os.PathLike,
    gaussians_TN: Gaussians,
    prefix: str = "frame_",
    *,
    normals: bool = True,
) -> list[Path]:
    """Write ``[T, N]`` Gaussians as ``{prefix}0000.ply, {prefix}0001.ply, ...`` in ``directory``.

    Creates ``directory`` if needed and returns the written paths in frame order.
    """
    directory = Path(directory)
    if len(gaussians_TN.batch_shape) != 1:
        raise ValueError(
            f"write_ply_sequence needs Gaussians [T, N, C]; got batch shape {tuple(gaussians_TN.batch_shape)}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    T = gaussians_TN.batch_shape[0]
    width = max(4, len(str(T - 1)))
    return [
        write_ply(directory / f"{prefix}{t:0{width}d}.ply", gaussians_TN[t], normals=normals) for t in range(T)
    ]


# ---------------------------------------------------------------------------------- reading
class _Element:
    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        self.properties: list[tuple[str, str]] = []  # (name, numpy type code)
        self.has_list = False


def _parse_header(f, path: Path) -> tuple[str, list[_Element]]:
    """Read header lines from ``f`` up to ``end_header``; returns (format, elements)."""
    magic = f.readline()
    if magic.rstrip(b"\r\n") != b"ply":
        raise ValueError(f"{path} is not a PLY file (first line {magic[:20]!r}, expected 'ply')")
    fmt = None
    elements: list[_Element] = []
    read = len(magic)
    while True:
        raw = f.readline()
        read += len(raw)
        if not raw:
            raise ValueError(f"{path}: PLY header has no 'end_header' line (file truncated or malformed)")
        if read > _MAX_HEADER_BYTES:
            raise ValueError(f"{path}: no 'end_header' within the first {_MAX_HEADER_BYTES} bytes (malformed PLY)")
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{path}: PLY header has non-ASCII bytes before 'end_header' (malformed)") from None
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        key = words[0]
        if key == "end_header":
            break
        if key == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise ValueError(f"{path}: unsupported PLY format line {line!r}")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise ValueError(f"{path}: malformed PLY element line {line!r}")
            elements.append(_Element(words[1], int(words[2])))
        elif key == "property":
            if not elements:
                raise ValueError(f"{path}: PLY property {line!r} before any element")
            if len(words) >= 2 and words[1] == "list":
                if len(words) != 5 or words[2] not in _PLY_TYPES or words[3] not in _PLY_TYPES:
                    raise ValueError(f"{path}: malformed PLY list property {line!r}")
                elements[-1].has_list = True
                elements[-1].properties.append((words[4], "list"))
            else:
                if len(words) != 3 or words[1] not in _PLY_TYPES:
                    raise ValueError(f"{path}: unsupported PLY property {line!r}")
                elements[-1].properties.append((words[2], _PLY_TYPES[words[1]]))
        else:
            raise ValueError(f"{path}: unknown PLY header line {line!r}")
    if fmt is None:
        raise ValueError(f"{path}: PLY header has no 'format' line")
    return fmt, elements


def _required_names() -> list[str]:
    return ply_property_names(normals=False)


def _read_vertex_table(f, path: Path, fmt: str, elements: list[_Element]) -> tuple[_Element, dict[str, np.ndarray]]:
    """Return the vertex element and a name -> [N] array mapping of its properties."""
    index = next((i for i, e in enumerate(elements) if e.name == "vertex"), None)
    if index is None:
        names = [e.name for e in elements]
        raise ValueError(f"{path}: PLY file has no 'vertex' element (elements: {names})")
    vertex = elements[index]
    if vertex.has_list:
        raise ValueError(f"{path}: the PLY vertex element has list properties, which Gaussian PLY files never have")
    names = [name for name, _ in vertex.properties]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: the PLY vertex element repeats a property name ({names})")

    if fmt == "ascii":
        text = f.read()
        try:
            lines = text.decode("ascii").splitlines()
        except UnicodeDecodeError:
            raise ValueError(f"{path}: ASCII PLY body has non-ASCII bytes (malformed)") from None
        lines = [ln for ln in lines if ln.strip()]
        skip = sum(e.count for e in elements[:index])  # one line per element instance
        body = lines[skip : skip + vertex.count]
        if len(body) < vertex.count:
            raise ValueError(
                f"{path}: truncated ASCII PLY: expected {vertex.count} vertex lines, found {len(body)}"
            )
        P = len(vertex.properties)
        try:
            values = np.array([ln.split() for ln in body], dtype=np.float64) if body else np.zeros((0, P))
        except ValueError:
            raise ValueError(f"{path}: malformed ASCII PLY vertex data (each line needs {P} numbers)") from None
        if values.shape != (vertex.count, P):
            raise ValueError(f"{path}: malformed ASCII PLY vertex data (each line needs {P} numbers)")
        return vertex, {name: values[:, j] for j, name in enumerate(names)}

    order = _FORMATS[fmt]
    for e in elements[:index]:
        if e.has_list:
            raise ValueError(
                f"{path}: unsupported PLY: element {e.name!r} with list properties comes before 'vertex' "
                "in a binary file"
            )
        skip = e.count * np.dtype([(n, order + t) for n, t in e.properties]).itemsize
        if len(f.read(skip)) != skip:
            raise ValueError(f"{path}: truncated PLY: file ends inside element {e.name!r}")
    dtype = np.dtype([(n, order + t) for n, t in vertex.properties])
    want = vertex.count * dtype.itemsize
    data = f.read(want)
    if len(data) != want:
        raise ValueError(
            f"{path}: truncated PLY: expected {want} bytes of vertex data ({vertex.count} x {dtype.itemsize}), "
            f"found {len(data)}"
        )
    table = np.frombuffer(data, dtype=dtype, count=vertex.count)
    return vertex, {name: table[name] for name in names}


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY file into unbatched float32 Gaussians ``[N, C]`` on the CPU.

    Needs ``x y z f_dc_0..2 opacity scale_0..2 rot_0..3`` on the vertex element; every other
    property is ignored. Raises ``ValueError`` naming the file for anything malformed,
    truncated or unsupported (e.g. the quantized "compressed" PLY of SuperSplat).
    """
    path = Path(path)
    with open(path, "rb") as f:
        fmt, elements = _parse_header(f, path)
        vertex, columns = _read_vertex_table(f, path, fmt, elements)
    missing = [name for name in _required_names() if name not in columns]
    if missing:
        hint = " (a quantized 'compressed' PLY is not supported)" if "packed_position" in columns else ""
        raise ValueError(f"{path}: PLY vertex element lacks the 3DGS properties {missing}{hint}")

    def stack(names: list[str]) -> torch.Tensor:
        # np.stack copies into a fresh, writable, native-endian float32 array
        return torch.from_numpy(np.stack([columns[n].astype(np.float32) for n in names], axis=-1))  # [N, len(names)]

    return Gaussians(
        means=stack(["x", "y", "z"]),
        quats=stack([f"rot_{i}" for i in range(4)]),
        log_scales=stack([f"scale_{i}" for i in range(3)]),
        opacity_logits=stack(["opacity"])[:, 0].contiguous(),
        sh0=stack([f"f_dc_{i}" for i in range(3)]),
    )
