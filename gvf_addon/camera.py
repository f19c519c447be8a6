"""Blender camera <-> OpenCV pinhole camera: the add-on's one place for this conversion.

The pipeline's camera (docs/conventions.md, docs/pipeline.md) is OpenCV:
``{"width", "height", "fx", "fy", "cx", "cy", "world_to_camera": 4x4}``, looking down +Z
with +Y down, pixel centres at +0.5. Blender's camera looks down its local -Z with +Y up.

- pose: ``world_to_camera = diag(1, -1, -1, 1) @ inverse(matrix_world)`` and back
  ``matrix_world = inverse(world_to_camera) @ diag(1, -1, -1, 1)``;
- intrinsics: Blender measures the focal length and the shifts against the sensor side that
  ``sensor_fit`` picks (AUTO: the longer image side); with that side S pixels long,
  ``fx = fy = lens / sensor_size * S``, ``cx = W / 2 − shift_x · S``, ``cy = H / 2 + shift_y · S``.
  Square pixels only (the render's pixel aspect must be 1).

The functions taking Blender objects import nothing from bpy; the numpy ones run anywhere.
"""

from __future__ import annotations

import numpy as np

FLIP = np.diag([1.0, -1.0, -1.0, 1.0])
SENSOR_WIDTH = 36.0


class CameraError(ValueError):
    """A camera the pipeline cannot use (orthographic, panoramic, non-square pixels)."""


def world_to_camera_from_matrix_world(matrix_world) -> np.ndarray:
    """OpenCV world-to-camera [4, 4] of a Blender camera's ``matrix_world`` (rigid, no scale)."""
    m = np.asarray(matrix_world, dtype=np.float64).reshape(4, 4)
    rot = m[:3, :3]
    scale = np.linalg.norm(rot, axis=0)
    m = m.copy()
    m[:3, :3] = rot / scale  # a scaled camera object still looks the same way
    return FLIP @ np.linalg.inv(m)


def matrix_world_from_world_to_camera(world_to_camera) -> np.ndarray:
    """[4, 4] Blender camera ``matrix_world`` of an OpenCV world-to-camera matrix."""
    return np.linalg.inv(np.asarray(world_to_camera, dtype=np.float64)) @ FLIP


def render_size(scene) -> tuple[int, int]:
    r = scene.render
    return (max(1, int(r.resolution_x * r.resolution_percentage / 100)),
            max(1, int(r.resolution_y * r.resolution_percentage / 100)))


def _sensor_side(cam_data, width: int, height: int) -> tuple[float, int]:
    """(sensor size in mm, image side in pixels) that Blender measures lens and shift against."""
    fit = cam_data.sensor_fit
    if fit == "AUTO":
        return cam_data.sensor_width, max(width, height)
    if fit == "HORIZONTAL":
        return cam_data.sensor_width, width
    return cam_data.sensor_height, height


def opencv_camera(cam_obj, scene, width: int | None = None, height: int | None = None) -> dict:
    """The camera JSON dict of Blender camera object ``cam_obj`` at the scene's render size
    (or ``width`` × ``height`` pixels, same aspect ratio expected)."""
    if cam_obj is None or getattr(cam_obj, "type", None) != "CAMERA":
        raise CameraError("no camera: set the scene's active camera or pick one in the GVF panel")
    data = cam_obj.data
    if data.type != "PERSP":
        raise CameraError(f"camera {cam_obj.name!r} is {data.type.lower()}; the pipeline needs a perspective camera")
    r = scene.render
    if abs(r.pixel_aspect_x - r.pixel_aspect_y) > 1e-6:
        raise CameraError("the render's pixel aspect is not 1:1; set Output Properties > Format > Aspect to 1 × 1")
    W, H = render_size(scene)
    if width is not None and height is not None:
        W, H = int(width), int(height)
    sensor, side = _sensor_side(data, W, H)
    f = data.lens / sensor * side
    return {
        "width": W, "height": H, "fx": float(f), "fy": float(f),
        "cx": float(W / 2.0 - data.shift_x * side), "cy": float(H / 2.0 + data.shift_y * side),
        "world_to_camera": world_to_camera_from_matrix_world(np.array(cam_obj.matrix_world)).tolist(),
    }


def apply_opencv_camera(cam_data, camera: dict) -> None:
    """Set a Blender camera datablock's lens and shift from an OpenCV camera dict
    (its object's pose: :func:`matrix_world_from_world_to_camera`)."""
    W, H = float(camera["width"]), float(camera["height"])
    if abs(camera["fx"] - camera["fy"]) > 1e-3 * camera["fx"]:
        raise CameraError(f"non-square pixels (fx={camera['fx']}, fy={camera['fy']}) are not supported")
    cam_data.type = "PERSP"
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = SENSOR_WIDTH
    cam_data.lens = camera["fx"] * SENSOR_WIDTH / W
    cam_data.shift_x = (W / 2.0 - camera["cx"]) / W
    cam_data.shift_y = (camera["cy"] - H / 2.0) / W


def movie_property(path, read):
    """``read(clip)`` of the video file ``path`` loaded by Blender as a movie clip, which is removed
    again (nothing is left in ``bpy.data``); None if Blender cannot read it."""
    import bpy

    try:
        clip = bpy.data.movieclips.load(str(path), check_existing=False)
    except RuntimeError:
        return None
    try:
        return read(clip)
    finally:
        bpy.data.movieclips.remove(clip)


def video_size(path: str) -> tuple[int, int] | None:
    """(width, height) of a video file or PNG folder, read by Blender itself; None if unreadable."""
    import bpy
    from pathlib import Path

    p = Path(bpy.path.abspath(path))
    if p.is_dir():
        first = next(iter(sorted(p.glob("*.png"))), None)
        if first is None:
            return None
        try:
            image = bpy.data.images.load(str(first), check_existing=False)
        except RuntimeError:
            return None
        size = tuple(image.size)
        bpy.data.images.remove(image)
    else:
        size = movie_property(p, lambda clip: tuple(clip.size))
        if size is None:
            return None
    return (int(size[0]), int(size[1])) if size[0] and size[1] else None


def add_front_camera(context, world_vertices: np.ndarray, name: str = "GVF Front Camera"):
    """A camera object at the documented default front camera of a mesh (world vertices
    [V, 3]) for the scene's render size, made the scene's active camera; returns it."""
    import bpy

    from gvf_core.camera_math import camera_dict, front_camera

    scene = context.scene
    W, H = render_size(scene)
    K, w2c = front_camera(world_vertices, W, H)
    data = bpy.data.cameras.new(name)
    apply_opencv_camera(data, camera_dict(K, w2c, W, H))
    depth = world_vertices @ w2c[2, :3] + w2c[2, 3]
    data.clip_start = float(max(1e-3, 0.1 * depth.min()))
    data.clip_end = float(max(10.0 * depth.max(), data.clip_start * 100))
    obj = bpy.data.objects.new(name, data)
    obj.matrix_world = matrix_world_from_world_to_camera(w2c).T.tolist()
    scene.collection.objects.link(obj)
    scene.camera = obj
    return obj


__all__ = ["add_front_camera", "movie_property", "video_size", "CameraError", "apply_opencv_camera", "matrix_world_from_world_to_camera", "opencv_camera", "render_size",
           "world_to_camera_from_matrix_world"]
