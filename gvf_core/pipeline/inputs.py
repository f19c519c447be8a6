"""Reading and checking the pipeline's inputs: mesh, driving video, camera.

Every problem is a :class:`InputError` that names the file and the fix, raised before
any work starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gvf_core.camera_math import DEFAULT_CAMERA, front_camera
from gvf_core.cameras import Cameras, camera_from_json
from gvf_core.mesh import MeshData, load_mesh
from gvf_core.normalize import Normalization
from gvf_core.video import VideoClip, VideoError, read_video

MESH_EXTENSIONS = (".obj", ".ply", ".glb", ".gltf", ".stl")
MAX_VERTICES = 1_000_000
"""Largest mesh animate() takes (the vertex solve is sparse but one factorisation is V²-ish in the worst case)."""
MAX_FACES = 2_000_000
__all__ = ["DEFAULT_CAMERA", "InputError", "camera_to_model", "camera_to_world", "default_camera", "read_camera",
           "read_driving_video", "read_mesh", "read_views"]


class InputError(ValueError):
    """A mesh, video or camera the pipeline cannot use; the message says how to fix it."""


def read_mesh(mesh) -> MeshData:
    """A checked mesh from a path or a :class:`MeshData`."""
    if isinstance(mesh, MeshData):
        data = mesh
    else:
        path = Path(mesh)
        if not path.exists():
            raise InputError(f"{path}: no such mesh file")
        if path.suffix.lower() not in MESH_EXTENSIONS:
            raise InputError(f"{path}: unsupported mesh format {path.suffix!r}; use one of {', '.join(MESH_EXTENSIONS)}")
        try:
            data = load_mesh(path)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: cannot read the mesh ({exc})") from exc
    if data.num_faces == 0:
        raise InputError(f"{data.source}: the mesh has no faces (a point cloud?); animate() needs a triangle or polygon mesh")
    if data.num_vertices > MAX_VERTICES or data.num_faces > MAX_FACES:
        raise InputError(
            f"{data.source}: the mesh is too large ({data.num_vertices:,} vertices, {data.num_faces:,} faces; the limit is "
            f"{MAX_VERTICES:,} vertices and {MAX_FACES:,} faces); decimate it first (Blender: Decimate modifier)"
        )
    if not np.isfinite(data.vertices).all():
        raise InputError(f"{data.source}: the mesh has non-finite vertex positions")
    return data


def read_driving_video(video, max_frames: int | None = None) -> VideoClip:
    """A checked clip (≥ 2 frames) from a path, a :class:`VideoClip` or uint8 frames [T, H, W, 3|4]."""
    if isinstance(video, VideoClip):
        clip = video
    elif isinstance(video, (str, Path)):
        try:
            clip = read_video(video, max_frames=max_frames)
        except VideoError as exc:
            raise InputError(str(exc)) from exc
    else:
        frames = np.asarray(video)
        if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
            raise InputError(f"video frames must be uint8 [T, H, W, 3 or 4], got shape {frames.shape}")
        clip = VideoClip(frames=frames.astype(np.uint8), fps=24.0, source="<frames>")
    if max_frames is not None and len(clip.frames) > max_frames:
        clip = VideoClip(frames=clip.frames[:max_frames], fps=clip.fps, source=clip.source)
    if len(clip.frames) < 2:
        raise InputError(f"{clip.source}: a driving video needs at least 2 frames, got {len(clip.frames)}")
    return clip


def default_camera(world_vertices: np.ndarray, width: int, height: int) -> Cameras:
    """:data:`DEFAULT_CAMERA` for a rest mesh (world frame, +Z up), as OpenCV world-to-camera."""
    K, w2c = front_camera(world_vertices, width, height)
    return Cameras(K=torch.as_tensor(K, dtype=torch.float32)[None], world_to_camera=torch.as_tensor(w2c, dtype=torch.float32)[None])


def read_camera(camera, world_vertices: np.ndarray, width: int, height: int) -> tuple[Cameras, str]:
    """(camera [1] in the world frame, description); ``camera`` is None (default front
    camera), a path/dict in the camera JSON format, or a :class:`Cameras`."""
    if camera is None:
        return default_camera(world_vertices, width, height), "default front camera"
    if isinstance(camera, Cameras):
        cam, w, h, where = camera, width, height, "camera"
    else:
        try:
            cam, w, h = camera_from_json(camera)
        except (ValueError, OSError) as exc:
            raise InputError(str(exc)) from exc
        where = str(camera) if isinstance(camera, (str, Path)) else "camera dict"
    if (w, h) != (width, height):
        if abs(w / h - width / height) > 0.01:
            raise InputError(f"{where}: the camera is {w}×{h} but the video frames are {width}×{height} (another aspect "
                             "ratio); give the camera the video was rendered with")
        K = cam.K.clone()
        K[..., 0, :] *= width / w  # same aspect (within 1 %): the frames were resized, each axis by its own ratio
        K[..., 1, :] *= height / h
        cam = Cameras(K=K, world_to_camera=cam.world_to_camera)
    return cam, where


def camera_to_model(world_to_camera: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """World-frame w2c [..., 4, 4] → the same camera for model-frame points (norm: world → model).

    Model points are q = s·(R p − c); the camera matrix is rescaled by s so it stays rigid
    (a uniform scale of camera coordinates does not change the projection).
    """
    R = torch.as_tensor(norm.rotation, dtype=torch.float64)
    c = torch.as_tensor(norm.center, dtype=torch.float64)
    w2c = world_to_camera.double()
    A = w2c[..., :3, :3] @ R.T
    b = norm.scale * ((A @ c[:, None])[..., 0] + w2c[..., :3, 3])
    out = torch.zeros_like(w2c)
    out[..., :3, :3], out[..., :3, 3], out[..., 3, 3] = A, b, 1.0
    return out.float()


def camera_to_world(model_w2c: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Inverse of :func:`camera_to_model`."""
    R = torch.as_tensor(norm.rotation, dtype=torch.float64)
    c = torch.as_tensor(norm.center, dtype=torch.float64)
    m = model_w2c.double()
    A = m[..., :3, :3]
    out = torch.zeros_like(m)
    out[..., :3, :3] = A @ R
    out[..., :3, 3] = m[..., :3, 3] / norm.scale - (A @ c[:, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out.float()


def read_views(folder) -> tuple[np.ndarray, Cameras]:
    """Multiview renders of the asset (the Blender add-on writes them): ``folder/views.json``
    ``{"views": [{"image": "view_00.png", <camera JSON>}, ...]}`` and the RGBA PNGs it names.
    Returns (uint8 [V, H, W, 4], Cameras [V] in the world frame)."""
    import json

    from PIL import Image

    folder = Path(folder)
    try:
        listing = json.loads((folder / "views.json").read_text())["views"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{folder}: no readable views.json ({exc}); render the views again") from exc
    if not listing:
        raise InputError(f"{folder}/views.json lists no views")
    images, cams = [], []
    for view in listing:
        try:
            img = np.asarray(Image.open(folder / view["image"]).convert("RGBA"))
            cam, w, h = camera_from_json({k: v for k, v in view.items() if k != "image"})
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{folder}: view {view.get('image')!r} is unreadable ({exc})") from exc
        if img.shape[:2] != (h, w) or (images and img.shape != images[0].shape):
            raise InputError(f"{folder}: {view['image']} is {img.shape[1]}×{img.shape[0]}, its camera says {w}×{h}; "
                             "every view must have its camera's size and the same size")
        images.append(img)
        cams.append(cam)
    return np.stack(images), Cameras.cat(cams)
