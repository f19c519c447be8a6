"""Camera construction in plain numpy (no torch), shared by :mod:`gvf_core.cameras` and the
Blender add-on (whose own Python may have no torch). Conventions: docs/conventions.md
(OpenCV axes, world +Z up, azimuth 0 looks from −Y towards +Y)."""

from __future__ import annotations

import math

import numpy as np

DEFAULT_CAMERA = {"azimuth_deg": 0.0, "elevation_deg": 10.0, "fov_deg": 40.0, "fill": 0.8}
"""The documented front camera: from −Y (Blender's front view) looking at the rest mesh's
bounding-box centre, 10° above, 40° field of view across the longer image side (Blender's
Auto sensor fit), the bounding sphere filling 80 % of the shorter side (docs/pipeline.md)."""


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """[3, 3] intrinsics with ``fov_deg`` across the larger image side, centred."""
    f = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """[4, 4] world-to-camera matrix of a camera at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: pick any perpendicular
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ eye
    return M


def orbit_offset(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector from the target to a camera at that azimuth and elevation."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])


def front_camera(world_vertices: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(K [3, 3], world_to_camera [4, 4]) of :data:`DEFAULT_CAMERA` for a rest mesh (world frame, +Z up)."""
    v = np.asarray(world_vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(v - centre, axis=-1).max())
    c = DEFAULT_CAMERA
    K = intrinsics(width, height, c["fov_deg"])
    half = math.atan(0.5 * min(width, height) / K[0, 0])  # the field of view across the shorter side
    distance = radius / (math.sin(half) * c["fill"])
    eye = centre + distance * orbit_offset(c["azimuth_deg"], c["elevation_deg"])
    return K, look_at(eye, centre)


def camera_dict(K: np.ndarray, world_to_camera: np.ndarray, width: int, height: int) -> dict:
    """The camera JSON dict (docs/pipeline.md) of one camera."""
    return {"width": int(width), "height": int(height), "fx": float(K[0, 0]), "fy": float(K[1, 1]),
            "cx": float(K[0, 2]), "cy": float(K[1, 2]), "world_to_camera": np.asarray(world_to_camera, float).tolist()}


__all__ = ["DEFAULT_CAMERA", "camera_dict", "front_camera", "intrinsics", "look_at", "orbit_offset"]
