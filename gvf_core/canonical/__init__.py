"""Canonical Gaussians bound to mesh faces: sampling, exact deformation, and the way back.

- :func:`sample_surface` picks points on the mesh (face index + barycentrics);
- :func:`mesh_to_gaussians` turns them into :class:`BoundGaussians`, whose
  :meth:`BoundGaussians.gaussians_at` gives the exact Gaussians on any pose of the mesh;
- :class:`VertexSolver` maps Gaussian position deltas back to vertex offsets;
- :func:`refine_canonical` fits their appearance to multiview images, then prunes.
"""

from .binding import Binding, BoundGaussians, mesh_to_gaussians, prune
from .refine import RefineConfig, RefineResult, refine_canonical
from .sampling import sample_surface, surface_points
from .to_vertices import VertexSolver

__all__ = [
    "Binding",
    "BoundGaussians",
    "RefineConfig",
    "RefineResult",
    "VertexSolver",
    "mesh_to_gaussians",
    "prune",
    "refine_canonical",
    "sample_surface",
    "surface_points",
]
