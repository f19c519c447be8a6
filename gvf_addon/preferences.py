"""Add-on preferences: where the worker runs, which model, which device; the dependency check.

The worker is either Blender's own Python with a private dependency folder (default: the
extension's user folder, ``…/extensions/.user/<repo>/gvf_animate/site-packages``), or an
external Python 3.11 with torch installed (a venv, conda…), chosen here.
"""

import sys
from pathlib import Path

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

DEVICES = [("auto", "Auto", "CUDA when the worker's PyTorch sees a GPU, else CPU"),
           ("cpu", "CPU", "Always the CPU"),
           ("cuda", "CUDA", "An NVIDIA GPU (the worker needs a CUDA build of PyTorch)")]


def addon_package() -> str:
    return __package__


def get_preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(addon_package())
    return None if addon is None else addon.preferences


def private_site_dir() -> Path:
    """The private dependency folder for Blender's own Python."""
    try:
        base = Path(bpy.utils.extension_path_user(addon_package(), path="site-packages", create=True))
    except (ValueError, AttributeError):  # a legacy add-on (not installed as an extension)
        base = Path(bpy.utils.user_resource("SCRIPTS", path="gvf_animate_site_packages", create=True))
    return base


def worker_settings(prefs) -> dict:
    """Keyword arguments of :class:`WorkerClient` from the preferences (None: defaults)."""
    python = (prefs.worker_python if prefs is not None else "") or ""
    if python:
        return {"python_executable": bpy.path.abspath(python), "site_dirs": [],
                "idle_timeout": float(prefs.idle_timeout)}
    site = prefs.deps_dir if prefs is not None and prefs.deps_dir else str(private_site_dir())
    return {"python_executable": sys.executable, "site_dirs": [site],
            "idle_timeout": float(prefs.idle_timeout) if prefs is not None else 300.0}


class GVF_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    worker_python: StringProperty(
        name="Worker Python", subtype="FILE_PATH", default="",
        description="Python 3.11 executable with PyTorch that runs the model. Empty: Blender's own Python with the "
                    "private dependency folder below")
    deps_dir: StringProperty(
        name="Dependency folder", subtype="DIR_PATH", default="",
        description="Where Blender's own Python finds PyTorch and the other worker packages. Empty: the extension's "
                    "user folder")
    model_dir: StringProperty(
        name="Model folder", subtype="DIR_PATH", default="",
        description="Folder with vae.safetensors and dit.safetensors. Empty: the model shipped with the add-on")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    idle_timeout: IntProperty(name="Free model after (s)", default=300, min=10, max=86400,
                              description="Seconds without a job after which the worker frees the model's memory")
    check_report: StringProperty(name="Check result", default="")

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "worker_python")
        row = col.row()
        row.active = not self.worker_python
        row.prop(self, "deps_dir")
        col.prop(self, "model_dir")
        col.prop(self, "device")
        col.prop(self, "idle_timeout")
        row = layout.row()
        row.operator("gvf.check_dependencies", icon="CHECKMARK")
        row.operator("gvf.free_model", icon="TRASH")
        if self.check_report:
            box = layout.box()
            for line in self.check_report.splitlines():
                box.label(text=line)


CLASSES = (GVF_AddonPreferences,)
