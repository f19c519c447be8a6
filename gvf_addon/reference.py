"""Render Reference Frame: the asset alone, seen from the video's camera, as an RGBA PNG.

The PNG is what an image-to-video generator starts from, so the video it makes is seen from
exactly the camera the animation will use. Workbench renders it in well under a second
(EEVEE is far too slow headless); studio lighting, material or texture colours, transparent
film (the alpha is the object mask the pipeline keys on). Every scene setting it changes
(engine, film, output path, file format, other objects' render visibility, camera) is put
back afterwards, even when the render fails.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import bpy

from .jobs import scene_camera


@contextmanager
def _restored(items: list[tuple[object, str, object]]):
    """Set ``(owner, attribute, value)`` for the block; the old values come back afterwards."""
    old = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in items]
    try:
        for owner, attr, value in items:
            setattr(owner, attr, value)
        yield
    finally:
        for owner, attr, value in reversed(old):
            setattr(owner, attr, value)


def reference_path(scene, path: str) -> Path:
    if path.startswith("//") and not bpy.data.filepath:
        return Path(tempfile.gettempdir()) / path[2:]
    return Path(bpy.path.abspath(path))


def render_reference(context, obj, path, camera_obj=None, engine: str = "BLENDER_WORKBENCH",
                     size: tuple[int, int] | None = None, samples: int = 16) -> Path:
    """Render ``obj`` alone from the camera (default: the scene's) to ``path``; returns the file.
    ``size`` (width, height) overrides the scene's render size; ``samples``: Cycles samples."""
    scene = context.scene
    camera = scene_camera(context, camera_obj)
    if obj is None or obj.type != "MESH":
        raise ValueError("select a mesh object to render")
    out = reference_path(scene, str(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    r = scene.render
    others = [o for o in scene.objects if o is not obj and o.type not in ("CAMERA", "LIGHT") and not o.hide_render]
    items = [(scene, "camera", camera), (r, "engine", engine), (r, "film_transparent", True),
             (r, "filepath", str(out)), (r.image_settings, "file_format", "PNG"),
             (r.image_settings, "color_mode", "RGBA"), (obj, "hide_render", False),
             # display colours as they are (the default AgX view would tone-map the fitted colours)
             (scene.view_settings, "view_transform", "Standard"), (scene.view_settings, "look", "None"),
             (scene.view_settings, "exposure", 0.0), (scene.view_settings, "gamma", 1.0)]
    items += [(o, "hide_render", True) for o in others]
    if size is not None:
        items += [(r, "resolution_x", int(size[0])), (r, "resolution_y", int(size[1])), (r, "resolution_percentage", 100)]
    if engine == "BLENDER_WORKBENCH":
        shading = scene.display.shading
        items += [(shading, "light", "STUDIO"), (shading, "color_type", "TEXTURE")]
    elif engine == "CYCLES":
        items += [(scene.cycles, "samples", int(samples)), (scene.cycles, "device", "CPU"),
                  (scene.cycles, "use_denoising", False)]
    with _restored(items):
        bpy.ops.render.render(write_still=True, scene=scene.name)
    if not out.is_file():
        raise RuntimeError(f"the render did not write {out}; check that the folder is writable")
    return out


def render_views(context, obj, out_dir, count: int = 8, size: int = 256, engine: str = "BLENDER_WORKBENCH") -> Path:
    """Render the evaluated ``obj`` from ``count`` cameras around it (azimuths evenly spaced,
    elevations alternating 10° and 35°, the documented front camera's field of view and
    framing) into ``out_dir/view_NN.png`` and write their cameras (world frame, OpenCV) to
    ``out_dir/views.json``; returns ``out_dir``. The scene is left as it was."""
    import json

    import bpy
    import numpy as np

    from gvf_core.camera_math import DEFAULT_CAMERA, camera_dict, front_camera, look_at, orbit_offset

    from .camera import apply_opencv_camera, matrix_world_from_world_to_camera
    from .scene_io import mesh_arrays

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = mesh_arrays(context.evaluated_depsgraph_get(), obj)["vertices"]
    K, front = front_camera(world, size, size)
    centre = (world.min(0) + world.max(0)) / 2
    distance = float(np.linalg.norm(np.linalg.inv(front)[:3, 3] - centre))
    views = []
    data = bpy.data.cameras.new("gvf_view")
    cam = bpy.data.objects.new("gvf_view", data)
    context.scene.collection.objects.link(cam)
    try:
        for i in range(count):
            azimuth = DEFAULT_CAMERA["azimuth_deg"] + 360.0 * i / count
            elevation = 10.0 if i % 2 == 0 else 35.0
            w2c = look_at(centre + distance * orbit_offset(azimuth, elevation), centre)
            view = camera_dict(K, w2c, size, size)
            apply_opencv_camera(data, view)
            cam.matrix_world = matrix_world_from_world_to_camera(w2c).T.tolist()
            path = render_reference(context, obj, out_dir / f"view_{i:02d}.png", camera_obj=cam, engine=engine,
                                    size=(size, size))
            views.append({"image": path.name, **view})
    finally:
        bpy.data.objects.remove(cam)
        bpy.data.cameras.remove(data)
    (out_dir / "views.json").write_text(json.dumps({"views": views}, indent=1))
    return out_dir


__all__ = ["reference_path", "render_reference", "render_views"]
