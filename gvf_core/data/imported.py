"""Imported animations: animated glTF/GLB/FBX files -> per-action vertex tracks (through bpy).

This module never imports ``bpy``. It runs the add-on's headless scripts in a subprocess
(a Python that has the bpy module, by default the current interpreter) and exchanges files:

- :func:`import_animations` runs ``python -m gvf_addon.blender_io.extract_animation`` and
  returns one :class:`ImportedClip` per action (skins, morph targets and rigid node
  animation alike: Blender evaluates them all);
- :func:`render_blender` runs ``python -m gvf_addon.blender_io.render_frames`` to render
  vertex tracks with Workbench or Cycles from an OpenCV camera, the optional "real render"
  look next to the splat renderer.

Conventions (docs/conventions.md): world space, +Z up, Blender's axes (the glTF importer
turns +Y up into +Z up); asset units; tracks are ``[T, V, 3]``, frames first; colours are
display (sRGB) values in 0..1.

**Resampling happens in Blender**, not here: the extractor evaluates each action's curves at
``t_k = k / fps`` seconds from the start of its frame range (``scene.frame_set`` with a
subframe), ``k = 0 .. floor(duration * fps)``. :func:`resample_clip` is a linear retiming
of vertex arrays that are already in numpy (e.g. a clip cached at another rate); the import
path does not use it.

Rest pose (``rest_vertices``, ``faces``, ``colors``): every action detached, armature bones
in their bind pose, animated shape keys at 0 (the basis), animated object transforms at the
first clip's first frame. See ``gvf_addon/blender_io/extract_animation.py``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gvf_core.mesh import MeshData

SUFFIXES = (".glb", ".gltf", ".fbx")
"""File types :func:`import_animations` reads."""

_ERROR_PREFIX = "GVF_ERROR: "  # gvf_addon.blender_io.ERROR_PREFIX (not imported: core does not depend on the add-on)
_REPO_ROOT = Path(__file__).resolve().parents[2]  # holds gvf_addon/ in a checkout or an editable install


@dataclass(frozen=True, eq=False)
class ImportedClip:
    """One action of an imported asset, sampled at ``fps`` (world space, +Z up, asset units)."""

    source: Path
    """The imported file."""
    action: str
    """The action's name (FBX: the take's name)."""
    fps: float
    """Sampling rate of ``vertices``: frame k is at ``k / fps`` seconds from the action's start."""
    faces: np.ndarray
    """[F, 3] int64 triangles (all mesh objects merged, in object-name order)."""
    rest_vertices: np.ndarray
    """[V, 3] float64 rest pose (see the module docstring)."""
    vertices: np.ndarray
    """[T, V, 3] float64 evaluated positions, T >= 2."""
    colors: np.ndarray | None = None
    """[V, 3] float64 display colours in 0..1 (material base colour x texture at the vertex UVs)."""

    @property
    def name(self) -> str:
        """Alias of :attr:`action`."""
        return self.action

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[1])

    @property
    def duration(self) -> float:
        """Seconds from the first to the last sample."""
        return (self.num_frames - 1) / self.fps

    def rest_mesh(self) -> MeshData:
        """The rest pose as a :class:`~gvf_core.mesh.MeshData` (vertex colours when known)."""
        return MeshData(vertices=self.rest_vertices, faces=self.faces, vertex_colors=self.colors, source=str(self.source))


# --------------------------------------------------------------------------- subprocess plumbing


def _subprocess_env() -> dict[str, str]:
    """Environment in which ``python -m gvf_addon...`` works, installed or not."""
    env = dict(os.environ)
    if (_REPO_ROOT / "gvf_addon" / "blender_io").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _run_script(module: str, args: list[str], *, where: Path | str, python: str | None, timeout: float, what: str) -> None:
    """Run ``python -m module args``; raise ``ValueError`` naming ``where`` on any failure."""
    cmd = [python or sys.executable, "-m", module, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_subprocess_env(), cwd=str(_REPO_ROOT))
    except subprocess.TimeoutExpired:
        raise ValueError(f"{where}: {what} timed out after {timeout:g} s") from None
    except OSError as exc:
        raise ValueError(f"{where}: {what} could not start {cmd[0]!r}: {exc}") from None
    if proc.returncode == 0:
        return
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    ours = [ln[len(_ERROR_PREFIX):] for ln in lines if ln.startswith(_ERROR_PREFIX)]
    if ours:
        msg = ours[-1]
        if not msg.startswith(str(where)):
            msg = f"{where}: {msg}"
        raise ValueError(msg)
    last = lines[-1] if lines else f"exit code {proc.returncode}, no message"
    if "No module named 'bpy'" in proc.stderr:
        last = f"{cmd[0]} has no bpy module (pip install bpy==5.0.1, or pass python= a Python that has it)"
    raise ValueError(f"{where}: {what} failed: {last}")


@functools.lru_cache(maxsize=None)
def _bpy_available(python: str) -> bool:
    try:
        proc = subprocess.run([python, "-c", "import bpy"], capture_output=True, timeout=120, env=_subprocess_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def bpy_available(python: str | None = None) -> bool:
    """Whether ``python`` (default: this interpreter) can ``import bpy``. Cached per interpreter."""
    return _bpy_available(python or sys.executable)


# --------------------------------------------------------------------------- import


def find_assets(directory: str | os.PathLike) -> list[Path]:
    """Every .glb/.gltf/.fbx file under ``directory`` (recursively), sorted."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such asset folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def import_animations(path: str | os.PathLike, fps: float = 24.0, python: str | None = None, timeout: float = 600.0) -> list[ImportedClip]:
    """Every action of an animated glTF/GLB/FBX file, sampled at ``fps``, one clip per action.

    Runs the extractor in ``python`` (default: this interpreter, which needs ``bpy``).
    Actions shorter than two samples are dropped; a valid file without any (a static model)
    gives an empty list. Raises ``FileNotFoundError`` for a missing file and ``ValueError``
    naming the file for everything else (unsupported type, a corrupt file, no mesh, a broken
    result, no bpy in ``python``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if not fps > 0:
        raise ValueError(f"{path}: fps must be positive, got {fps}")
    with tempfile.TemporaryDirectory(prefix="gvf_import_") as tmp:
        out = Path(tmp) / "animation.npz"
        _run_script(
            "gvf_addon.blender_io.extract_animation",
            [str(path.resolve()), str(out), "--fps", repr(float(fps))],
            where=path,
            python=python,
            timeout=timeout,
            what="importing the animation through Blender",
        )
        return load_extracted(out, source=path)


def load_extracted(npz_path: str | os.PathLike, source: str | os.PathLike | None = None) -> list[ImportedClip]:
    """Read and validate an npz written by the extractor; errors name ``source`` (default: the npz)."""
    npz_path = Path(npz_path)
    where = Path(source) if source is not None else npz_path
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{where}: the extracted animation {npz_path} is unreadable ({exc})") from None

    def fail(msg: str) -> ValueError:
        return ValueError(f"{where}: extracted animation is invalid: {msg}")

    for key in ("faces", "rest_vertices", "fps", "num_clips"):
        if key not in arrays:
            raise fail(f"missing {key!r}")
    faces = arrays["faces"]
    rest = arrays["rest_vertices"].astype(np.float64)
    if rest.ndim != 2 or rest.shape[1] != 3 or len(rest) == 0:
        raise fail(f"rest_vertices must be [V, 3], got {rest.shape}")
    V = len(rest)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0 or not np.issubdtype(faces.dtype, np.integer):
        raise fail(f"faces must be integer [F, 3], got {faces.dtype} {faces.shape}")
    if faces.min() < 0 or faces.max() >= V:
        raise fail(f"face indices must lie in [0, {V}), found {faces.min()}..{faces.max()}")
    if not np.isfinite(rest).all():
        raise fail("rest_vertices are not finite")
    colors = arrays.get("colors")
    if colors is not None:
        colors = colors.astype(np.float64)
        if colors.shape != (V, 3) or not np.isfinite(colors).all():
            raise fail(f"colors must be finite [V, 3] = {(V, 3)}, got {colors.shape}")
        colors = np.clip(colors, 0.0, 1.0)
    fps = float(arrays["fps"])
    clips = []
    for i in range(int(arrays["num_clips"])):
        key = f"clip_{i}_vertices"
        if key not in arrays:
            raise fail(f"missing {key!r}")
        name = str(arrays.get(f"clip_{i}_name", f"clip_{i}"))
        v = arrays[key].astype(np.float64)
        if v.ndim != 3 or v.shape[1:] != (V, 3):
            raise fail(f"clip {name!r}: vertices must be [T, {V}, 3], got {v.shape}")
        if v.shape[0] < 2:
            raise fail(f"clip {name!r} has {v.shape[0]} frame(s), at least 2 are needed")
        if not np.isfinite(v).all():
            raise fail(f"clip {name!r} has NaN or infinite positions")
        clips.append(ImportedClip(source=where, action=name, fps=fps, faces=faces.astype(np.int64), rest_vertices=rest, vertices=v, colors=colors))
    return clips


# --------------------------------------------------------------------------- retiming


def resample_clip(vertices: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """[T, V, 3] sampled at ``src_fps`` -> [T', V, 3] at ``dst_fps`` by linear interpolation.

    Sample k of the result is at ``k / dst_fps`` seconds, ``k = 0 .. floor(duration * dst_fps)``
    with ``duration = (T - 1) / src_fps``; the first frame is kept exactly. (The import path
    resamples in Blender instead; this is for arrays already in numpy.)
    """
    v = np.asarray(vertices)
    if v.ndim < 2 or v.shape[0] < 1:
        raise ValueError(f"vertices must be [T, ...] with T >= 1, got shape {v.shape}")
    if not (src_fps > 0 and dst_fps > 0):
        raise ValueError(f"frame rates must be positive, got {src_fps} and {dst_fps}")
    duration = (v.shape[0] - 1) / src_fps
    count = int(np.floor(duration * dst_fps + 1e-6)) + 1
    pos = np.arange(count) * (src_fps / dst_fps)  # fractional source frame of each output sample
    lo = np.clip(np.floor(pos).astype(np.int64), 0, v.shape[0] - 1)
    hi = np.minimum(lo + 1, v.shape[0] - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (v.ndim - 1))
    out = (1.0 - w) * v[lo] + w * v[hi]
    return out.astype(np.result_type(v.dtype, np.float32))


# --------------------------------------------------------------------------- rendering with Blender


def render_blender(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera: dict,
    colors: np.ndarray | None = None,
    engine: str = "workbench",
    size: int | None = None,
    samples: int = 16,
    python: str | None = None,
    timeout: float = 600.0,
) -> np.ndarray:
    """Render ``vertices`` [T, V, 3] (world, +Z up) with Blender; returns [T, H, W, 4] uint8 RGBA.

    ``camera`` is an OpenCV camera: ``{"width", "height", "fx", "fy", "cx", "cy",
    "world_to_camera": 4x4}`` (pixels; docs/conventions.md); ``size`` rescales it so the
    longer side has ``size`` pixels. ``engine`` is ``"workbench"`` (studio light, vertex
    colours, ~0.1 s a frame) or ``"cycles"`` (CPU, ``samples`` per pixel). The background is
    transparent (alpha 0). Raises ``ValueError`` on failure.
    """
    from PIL import Image

    v = np.asarray(vertices, dtype=np.float32)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[2] != 3:
        raise ValueError(f"vertices must be [T, V, 3], got {v.shape}")
    if engine not in ("workbench", "cycles"):
        raise ValueError(f"engine must be 'workbench' or 'cycles', got {engine!r}")
    cam = {k: float(camera[k]) for k in ("width", "height", "fx", "fy", "cx", "cy")}
    cam["world_to_camera"] = np.asarray(camera["world_to_camera"], dtype=np.float64).reshape(4, 4).tolist()
    with tempfile.TemporaryDirectory(prefix="gvf_render_") as tmp:
        tmp = Path(tmp)
        arrays = {"vertices": v, "faces": np.asarray(faces, dtype=np.int64)}
        if colors is not None:
            arrays["colors"] = np.asarray(colors, dtype=np.float32)
        np.savez(tmp / "tracks.npz", **arrays)
        (tmp / "camera.json").write_text(json.dumps(cam))
        args = [str(tmp / "tracks.npz"), str(tmp / "frames"), "--camera", str(tmp / "camera.json"), "--engine", engine, "--samples", str(samples)]
        if size is not None:
            args += ["--size", str(int(size))]
        _run_script("gvf_addon.blender_io.render_frames", args, where="render_blender", python=python, timeout=timeout, what=f"rendering with Blender ({engine})")
        frames = [np.asarray(Image.open(tmp / "frames" / f"frame_{t:04d}.png").convert("RGBA")) for t in range(len(v))]
    return np.stack(frames)
