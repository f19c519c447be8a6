"""GVF Animate: the Blender extension entry point (manifest: blender_manifest.toml).

Nothing is registered yet. The "Animate from Video" panel, its operators and the
Blender <-> OpenCV camera conversion arrive with the Blender-extension issue; the work
itself lives in the bpy-free library ``gvf_core``.

This module imports without ``bpy``, so the package can be imported (and tested) outside
Blender.
"""


def register() -> None:
    """Called by Blender when the extension is enabled. Nothing to register yet."""


def unregister() -> None:
    """Called by Blender when the extension is disabled. Nothing to unregister yet."""
