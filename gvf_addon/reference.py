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


def render_reference(context, obj, path, camera_obj=None, engine: str = "BLENDER_WORKBENCH") -> Path:
    """Render ``obj`` alone from the camera (default: the scene's) to ``path``; returns the file."""
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
             (r.image_settings, "color_mode", "RGBA"), (obj, "hide_render", False)]
    items += [(o, "hide_render", True) for o in others]
    if engine == "BLENDER_WORKBENCH":
        shading = scene.display.shading
        items += [(shading, "light", "STUDIO"), (shading, "color_type", "TEXTURE")]
    with _restored(items):
        bpy.ops.render.render(write_still=True, scene=scene.name)
    if not out.is_file():
        raise RuntimeError(f"the render did not write {out}; check that the folder is writable")
    return out


__all__ = ["reference_path", "render_reference"]
