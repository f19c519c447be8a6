"""Shape from template: a known rest shape moved so its points follow their 2-D tracks.

Optical flow moves each point on its own and is noisy from point to point; the asset's rest
shape says that neighbouring surface points keep their distances under most motions (an arm
that swings, a body that turns). :func:`fit_template` moves every point freely, per frame,
to minimise

- the weighted smooth-L1 distance, in pixels, between its projection and its track (or, with
  ``cauchy`` > 0, a Cauchy loss of that scale, which lets tracks far off the fit go);
- ``w_edge`` × the squared change of its distances to its ``neighbours`` nearest rest points
  (in units of ``TOLERANCE`` bounding-box diagonals);
- ``w_prior`` × its squared distance to where it started (the diffusion sample, or the rigid
  transform when one explains the tracks), which keeps what the tracks leave open — above
  all the depth — as the start had it;
- ``w_smooth`` × its squared acceleration over frames;
- ``w_arap`` × the squared difference between its edges to those neighbours and its rest edges
  turned by a rotation of its own (as-rigid-as-possible, "ARAP"; the rotations start as the
  best fit of each neighbourhood in the start and are fitted with the points).

What the distance term buys is the noise of the tracks averaged out (on a synthetic hinge
with 1-px track noise the image-plane error falls from 0.020 to 0.012, tests/test_template_fit.py).
It does not find a turn in depth from a flat start: there the distances change only to second
order in depth, so the depth stays the start's. Distances alone also let a neighbourhood fold or
mirror along the camera's rays; the ARAP term does not, and on 24 training clips it took the
refined vertex error from 84.9 % to 83.7 % of the unrefined one (``best``, docs/models.md) at
about twice the cost per iteration.

Test-time refinement (:mod:`gvf_core.pipeline.refine`, ``fast``) runs it on the VAE's rest
points and encodes the fitted motion back into a latent (figures in docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from gvf_core.models.rigid_motion import track_pixel_error, weighted_track_loss
from gvf_core.models.sampler import Cancelled

TOLERANCE = 0.01
"""Length scale of the distance, prior and smoothness terms, in bounding-box diagonals."""
ARAP_TURN_LR = 0.01
"""Adam step of the ARAP term's rotations, in radians."""


@dataclass(frozen=True)
class TemplateFitSettings:
    iterations: int = 300
    lr: float = 2e-3  # Adam step, in bounding-box diagonals
    w_edge: float = 100.0
    w_prior: float = 0.01
    w_smooth: float = 0.1
    neighbours: int = 8
    cauchy: float = 0.0  # scale in pixels of a Cauchy track loss (0: smooth L1); weighted_track_loss
    w_arap: float = 0.0  # as-rigid-as-possible term: each neighbourhood a turned copy of its rest one (0: off)


def neighbours(points: Tensor, k: int) -> Tensor:
    """[N, k] indices of each point's k nearest other points (fewer when N ≤ k)."""
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    k = min(k, len(pts) - 1)
    _, idx = cKDTree(pts).query(pts, k=k + 1)
    return torch.as_tensor(idx[:, 1:], dtype=torch.long).reshape(len(pts), k)


def neighbour_spokes(points: Tensor, edges: Tensor) -> Tensor:
    """[..., P, k, 3] vectors from each of ``points`` [..., P, 3]'s neighbours ``edges`` [P, k] to it.

    The neighbours are gathered with ``index_select``, whose backward adds up in a fixed order:
    ``points[..., edges, :]`` gave gradients that differed run to run in the last bits with
    more than one CPU thread, and refinement must repeat exactly under a seed.
    """
    ends = points.index_select(-2, edges.reshape(-1)).unflatten(-2, edges.shape)
    return points.unsqueeze(-2) - ends


def neighbour_lengths(points: Tensor, edges: Tensor) -> Tensor:
    """[..., P, k] distances from each of ``points`` [..., P, 3] to its neighbours ``edges`` [P, k]."""
    return neighbour_spokes(points, edges).norm(dim=-1)


def local_rotations(rest: Tensor, moved: Tensor, edges: Tensor) -> Tensor:
    """[..., P, 3, 3] rotation that best takes each point's neighbourhood (``edges`` [P, k]) from
    ``rest`` [P, 3] to ``moved`` [..., P, 3] (orthogonal Procrustes; never a reflection)."""
    cov = neighbour_spokes(moved, edges).transpose(-1, -2) @ neighbour_spokes(rest, edges)  # Σ moved·restᵀ
    u, _, vh = torch.linalg.svd(cov)
    flip = torch.ones_like(u[..., 0, :])
    flip[..., 2] = torch.sign(torch.linalg.det(u @ vh))
    return (u * flip.unsqueeze(-2)) @ vh


def rotation_matrices(v: Tensor) -> Tensor:
    """[..., 3, 3] rotations of the rotation vectors ``v`` [..., 3] (Rodrigues)."""
    theta2 = (v * v).sum(-1)[..., None, None]
    theta = (theta2 + 1e-12).sqrt()
    zero = torch.zeros_like(v[..., 0])
    k = torch.stack([torch.stack([zero, -v[..., 2], v[..., 1]], -1),
                     torch.stack([v[..., 2], zero, -v[..., 0]], -1),
                     torch.stack([-v[..., 1], v[..., 0], zero], -1)], -2)
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return eye + torch.sin(theta) / theta * k + (1 - torch.cos(theta)) / (theta2 + 1e-12) * (k @ k)


def fit_template(points: Tensor, start: Tensor, positions: Tensor, weights: Tensor, K: Tensor,
                 world_to_camera: Tensor, size: int, pixels: float | None = None,
                 settings: TemplateFitSettings = TemplateFitSettings(),
                 progress: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None) -> Tensor:
    """Displacements [T, P, 3] of rest ``points`` [P, 3] (model frame) fitted to their tracked
    ``positions`` [T, P, 2] (crop units of a ``size``² crop with intrinsics ``K`` [3, 3] and
    camera ``world_to_camera`` [4, 4]) with trust ``weights`` [T, P], from the displacements
    ``start`` [T, P, 3]; pixel errors are counted in a crop ``pixels`` wide (default ``size``).
    Frame 0 is the rest state. Raises :class:`~gvf_core.models.sampler.Cancelled` when
    ``cancel()`` turns true."""
    if points.dim() != 2 or points.shape[-1] != 3 or len(points) < 2:
        raise ValueError(f"fit_template needs rest points [P >= 2, 3], got {tuple(points.shape)}")
    T, P = start.shape[:2]
    if start.shape != (T, P, 3) or P != len(points) or positions.shape != (T, P, 2) or weights.shape != (T, P):
        raise ValueError(f"fit_template: points {tuple(points.shape)}, start {tuple(start.shape)}, positions "
                         f"{tuple(positions.shape)} and weights {tuple(weights.shape)} disagree on T or P")
    points = points.detach().float()
    diag = float((points.max(0).values - points.min(0).values).norm().clamp(min=1e-8))
    scale = TOLERANCE * diag
    if T < 2:
        return torch.zeros_like(start)
    edges = neighbours(points, settings.neighbours).to(points.device)
    rest_length = neighbour_lengths(points, edges)  # [P, k]
    anchor = (points[None] + start.detach().float())[1:]  # [T-1, P, 3]
    moved = anchor.clone().requires_grad_(True)
    groups = [{"params": [moved], "lr": settings.lr * diag}]
    if settings.w_arap > 0:
        # each point's rotation: its neighbourhood's best fit in the start, turned further by a fitted
        # rotation vector
        with torch.no_grad():
            base = local_rotations(points, anchor, edges)  # [T-1, P, 3, 3]
        rest_spokes = neighbour_spokes(points, edges).transpose(-1, -2)  # [P, 3, k]
        turn = torch.zeros(T - 1, P, 3, device=points.device, requires_grad=True)
        groups.append({"params": [turn], "lr": ARAP_TURN_LR})
    optimizer = torch.optim.Adam(groups)
    w = weights[1:].float()
    with torch.enable_grad():
        for it in range(settings.iterations):
            if cancel is not None and cancel():
                raise Cancelled("cancelled while fitting the points to their tracks")
            error = track_pixel_error(moved, positions[1:], K, world_to_camera, size, pixels if pixels else size)
            spokes = neighbour_spokes(moved, edges)  # [T-1, P, k, 3]
            length = spokes.norm(dim=-1)
            loss = (weighted_track_loss(error, w, settings.cauchy)
                    + settings.w_edge * ((length - rest_length) / scale).pow(2).mean()
                    + settings.w_prior * ((moved - anchor) / scale).pow(2).sum(-1).mean())
            if settings.w_arap > 0:
                turned = ((rotation_matrices(turn) @ base) @ rest_spokes).transpose(-1, -2)  # [T-1, P, k, 3]
                loss = loss + settings.w_arap * ((spokes - turned) / scale).pow(2).sum(-1).mean()
            if T >= 3:
                path = torch.cat([points[None], moved])
                acc = (path[2:] - 2 * path[1:-1] + path[:-2]) / scale
                loss = loss + settings.w_smooth * acc.pow(2).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(it + 1, settings.iterations)
    out = torch.zeros_like(start, dtype=torch.float32)
    out[1:] = moved.detach() - points[None]
    return out


__all__ = ["ARAP_TURN_LR", "TOLERANCE", "TemplateFitSettings", "fit_template", "local_rotations", "neighbour_lengths",
           "neighbour_spokes", "neighbours", "rotation_matrices"]
