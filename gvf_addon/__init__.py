"""GVF Animate: the Blender extension entry point (manifest: blender_manifest.toml).

Registers the "GVF" tab of the 3D Viewport sidebar (:mod:`.panel`), its operators
(:mod:`.operators`), the scene settings (:mod:`.properties`) and the preferences
(:mod:`.preferences`). The model runs in a worker process (:mod:`.worker`); the scene is
changed only by the write-back (:mod:`.writeback`).

This module imports without ``bpy`` (the UI modules are imported in :func:`register`), so
the package can be imported and tested outside Blender.
"""

_MODULES = ("preferences", "properties", "operators", "panel")


def _classes():
    import importlib

    for name in _MODULES:
        yield from importlib.import_module(f"{__name__}.{name}").CLASSES


def register() -> None:
    """Called by Blender when the extension is enabled."""
    import bpy

    from .properties import register_properties

    for cls in _classes():
        bpy.utils.register_class(cls)
    register_properties()


def unregister() -> None:
    """Called by Blender when the extension is disabled: stops the worker too."""
    import bpy

    from .operators import stop_worker
    from .properties import unregister_properties

    stop_worker()
    unregister_properties()
    for cls in reversed(list(_classes())):
        bpy.utils.unregister_class(cls)
