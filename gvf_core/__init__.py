"""GVF Animate core library: Gaussians, renderer, canonical Gaussians from meshes.

Nothing here imports bpy; heavy or optional dependencies (torch, gsplat, trimesh, cv2)
are imported where they are used, so the numpy-only modules (:mod:`gvf_core.pc2`,
:mod:`gvf_core.camera_math`) import in a Python without torch (Blender's own).
"""

__all__ = ["Cameras", "Gaussians"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "Cameras":
        from gvf_core.cameras import Cameras

        return Cameras
    if name == "Gaussians":
        from gvf_core.gaussians import Gaussians

        return Gaussians
    raise AttributeError(f"module 'gvf_core' has no attribute {name!r}")
