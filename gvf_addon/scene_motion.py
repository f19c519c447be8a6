"""What in the scene moves over the frames a job will animate.

The pipeline reads the driving video as filmed by one still camera, and takes the mesh's pose and
placement at the current frame; the result is a separate object, not parented and not keyed, at
that placement (gvf_addon.writeback). A camera that is animated over the clip's frames, or a mesh
whose own transform is (keys, a parent, a constraint), gives a result the artist may not expect:
the camera's motion is read as the asset's, or the result does not follow the object's own travel.
:func:`motion_warnings` names each such object, the frame where it has moved, and what to do. They
are warnings, not errors: a video made from a still reference can be meant for the view at the
current frame, and a video that shows the asset travelling already holds the travel.

Reading the scene at other frames sets the frame; the current frame (and subframe) is restored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_SAMPLED_FRAMES = 9
"""Frames of the clip the check evaluates at most (evenly spaced, first and last included): each is
a ``frame_set``, which in a scene with simulations or heavy rigs can take a while."""
TOLERANCE = 1e-5
"""Largest change of a world-matrix entry (or of a camera's lens, in mm) that counts as still,
relative to the matrix's own size."""


def video_frame_count(path: str) -> int | None:
    """Frames of a video file or PNG folder, as Blender reads it; None when it cannot tell."""
    import bpy

    from .camera import movie_property

    p = Path(bpy.path.abspath(path))
    if p.is_dir():
        return len(list(p.glob("*.png"))) or None
    return movie_property(p, lambda clip: int(clip.frame_duration)) or None


def clip_frames(first_scene_frame: int, video_frames: int | None, first_video_frame: int, frames: int,
                scene_last: int) -> tuple[int, int]:
    """(first, last) scene frames the job's keys will cover: ``frames`` video frames from
    ``first_video_frame`` on (0 = all that the video has), written from ``first_scene_frame``.
    Without the video's length, up to the scene's end."""
    if frames > 0:
        count = frames
    elif video_frames is not None:
        count = max(video_frames - first_video_frame, 1)
    else:
        count = max(scene_last - first_scene_frame + 1, 1)
    return first_scene_frame, first_scene_frame + count - 1


def _sampled(first: int, last: int, limit: int = MAX_SAMPLED_FRAMES) -> list[int]:
    if last - first + 1 <= limit:
        return list(range(first, last + 1))
    return sorted({int(round(f)) for f in np.linspace(first, last, limit)})


def _state(obj) -> np.ndarray:
    m = np.array(obj.matrix_world, dtype=np.float64).ravel()
    if obj.type == "CAMERA":
        m = np.append(m, [obj.data.lens, obj.data.shift_x, obj.data.shift_y])
    return m


def first_moved_frames(scene, objects, first: int, last: int) -> dict[str, int]:
    """{name: first frame where it differs from the current frame} of the ``objects`` that move
    over scene frames ``first`` .. ``last``; the current frame is restored."""
    objects = [o for o in objects if o is not None]
    if not objects or last < first:
        return {}
    current, subframe = scene.frame_current, scene.frame_subframe
    still = {o.name: _state(o) for o in objects}
    moved: dict[str, int] = {}
    try:
        for frame in _sampled(first, last):
            scene.frame_set(frame)
            for o in objects:
                if o.name in moved:
                    continue
                now = _state(o)
                if np.abs(now - still[o.name]).max() > TOLERANCE * max(1.0, np.abs(still[o.name]).max()):
                    moved[o.name] = frame
            if len(moved) == len(objects):
                break
    finally:
        scene.frame_set(current, subframe=subframe)
    return moved


def motion_warnings(scene, camera, obj, first: int, last: int) -> list[str]:
    """Warnings (one line each) for the ``camera`` and the mesh ``obj`` if they move over scene
    frames ``first`` .. ``last`` (see the module docstring)."""
    moved = first_moved_frames(scene, [camera, obj], first, last)
    out = []
    here = scene.frame_current
    if camera is not None and camera.name in moved:
        out.append(f"camera {camera.name!r} at frame {moved[camera.name]} is not where it is at the current frame "
                   f"({here}): the video is read as filmed from frame {here}'s camera, so its motion would be read as "
                   "the asset's; pick a still camera in the GVF panel or clear the camera's keys")
    if obj is not None and obj.name in moved:
        out.append(f"{obj.name!r} itself moves (at frame {moved[obj.name]}: keys, a parent or a constraint), but the "
                   f"result is a still object placed where it is at frame {here}: the result moves only as the video "
                   "shows; key the result's transform yourself if the video shows the asset in place")
    return out


__all__ = ["MAX_SAMPLED_FRAMES", "TOLERANCE", "clip_frames", "first_moved_frames", "motion_warnings",
           "video_frame_count"]
