"""GVF Animate core library: Gaussians, renderer, canonical Gaussians from meshes.

Nothing here imports bpy; heavy or optional dependencies (gsplat, trimesh, cv2)
are imported lazily where they are used.
"""

from gvf_core.cameras import Cameras
from gvf_core.gaussians import Gaussians

__all__ = ["Cameras", "Gaussians"]
__version__ = "0.1.0"
