"""Points on a mesh surface, as (face index, barycentric coordinates).

Barycentric weights ``(b0, b1, b2)`` weight the face's corners ``(v0, v1, v2)``; a
point is ``b0 v0 + b1 v1 + b2 v2``. Faces of zero area (up to a relative tolerance) are
never chosen, so every sample has a well-defined face frame.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from gvf_core.geometry import face_areas, farthest_point_sampling
from gvf_core.mesh import MeshData

SamplingMethod = Literal["blue_noise", "area"]

DEGENERATE_AREA = 1e-12
"""Faces with area below this fraction of the largest face's area count as degenerate."""

BLUE_NOISE_OVERSAMPLING = 4
"""Blue-noise sampling draws this many area-weighted candidates per kept sample."""


def sample_surface(mesh: MeshData, n: int, seed: int = 0, method: SamplingMethod = "blue_noise") -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n`` points on the surface, deterministically under ``seed``.

    Args:
        mesh: the mesh.
        n: number of samples (>= 1).
        seed: random seed (numpy ``default_rng``).
        method: ``"area"``: area-weighted random faces and uniform barycentrics;
            ``"blue_noise"``: ``4 n`` area-weighted candidates reduced to ``n`` by farthest
            point sampling, which spreads them evenly (larger minimum spacing).

    Returns:
        (face_idx [n] int64, bary [n, 3] float64).
    """
    if n < 1:
        raise ValueError(f"sample_surface: n must be >= 1, got {n}")
    if method == "area":
        return _sample_area(mesh, n, np.random.default_rng(seed))
    if method == "blue_noise":
        rng = np.random.default_rng(seed)
        face_idx, bary = _sample_area(mesh, BLUE_NOISE_OVERSAMPLING * n, rng)
        points = surface_points(mesh.vertices, mesh.faces, face_idx, bary)  # [4n, 3]
        keep = farthest_point_sampling(points, n, seed=seed)
        return face_idx[keep], bary[keep]
    raise ValueError(f"sample_surface: method must be 'blue_noise' or 'area', got {method!r}")


def surface_points(vertices: np.ndarray, faces: np.ndarray, face_idx: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """[..., V, 3], [F, 3], [M], [M, 3] -> [..., M, 3] points (any leading frame axes)."""
    return np.einsum("mk,...mkc->...mc", bary, vertices[..., faces[face_idx], :])


def _sample_area(mesh: MeshData, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    areas = face_areas(mesh.vertices, mesh.faces)  # [F]
    weights = np.where(areas > DEGENERATE_AREA * areas.max(), areas, 0.0)
    total = weights.sum()
    if not total > 0:
        raise ValueError(f"mesh {mesh.source!r} has no face with non-zero area; it cannot be sampled (check for collapsed geometry)")
    face_idx = rng.choice(len(weights), size=n, p=weights / total).astype(np.int64)
    # uniform barycentrics on a triangle: the square-root trick
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1.0 - s, s * (1.0 - r2), s * r2], axis=1)
    return face_idx, bary
