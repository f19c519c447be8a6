"""EWA projection of 3D Gaussians into pinhole cameras (pure PyTorch, differentiable).

Shared by the tiled torch backend and the dense reference. The maths follows the
3DGS / gsplat "classic" mode: world → camera, the Jacobian of the perspective
projection evaluated at a mean whose x/y are clamped to 1.3× the field of view,
``cov2d = J Σ_cam Jᵀ + eps2d·I`` with ``eps2d = 0.3`` pixels² (the low-pass filter).

The screen-space support radius is opacity-aware: beyond
``extent = sqrt(2 ln(255·opacity))`` standard deviations a Gaussian's alpha is below
1/255, which the compositor skips anyway, so culling to that radius changes nothing
(extent is capped at 3.33, where exp(-extent²/2) < 1/255 for every opacity ≤ 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gvf_core.gaussians import quat_to_rotmat

EPS2D = 0.3
"""Screen-space low-pass added to the projected covariance, in pixels² (gsplat's eps2d)."""
ALPHA_MIN = 1.0 / 255.0
"""Per-Gaussian alpha below which a Gaussian is skipped at a pixel."""
ALPHA_MAX = 0.999
"""Per-Gaussian alpha is clamped to this value."""
T_MIN = 1e-4
"""Compositing stops before the transmittance would drop to or below this value."""
MAX_EXTENT = 3.33
"""Cap on the support radius in standard deviations."""


@dataclass
class Projected:
    """Per-image projected Gaussians; leading axes ``[I, N]`` (I = batch × cameras)."""

    means2d: Tensor  # [I, N, 2] pixel coordinates
    conics: Tensor  # [I, N, 3] inverse 2D covariance (a, b, c) of [[a, b], [b, c]]
    depths: Tensor  # [I, N] camera-space z
    opacities: Tensor  # [I, N]
    colors: Tensor  # [I, N, 3]
    radii: Tensor  # [I, N] integer support radius in pixels, 0 when culled
    valid: Tensor  # [I, N] bool: in front of the camera, finite, non-degenerate


def project(
    means: Tensor,  # [B, N, 3]
    quats: Tensor,  # [B, N, 4]
    scales: Tensor,  # [B, N, 3]
    opacities: Tensor,  # [B, N]
    colors: Tensor,  # [B, N, 3]
    K: Tensor,  # [C, 3, 3]
    world_to_camera: Tensor,  # [C, 4, 4]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projected:
    B, N, _ = means.shape
    C = K.shape[0]
    R_wc = world_to_camera[:, :3, :3]  # [C, 3, 3]
    t_wc = world_to_camera[:, :3, 3]  # [C, 3]

    means_c = torch.einsum("cij,bnj->bcni", R_wc, means) + t_wc[None, :, None, :]  # [B, C, N, 3]
    M = quat_to_rotmat(quats) * scales[..., None, :]  # [B, N, 3, 3]
    cov_w = M @ M.transpose(-1, -2)  # [B, N, 3, 3]
    cov_c = torch.einsum("cij,bnjk,clk->bcnil", R_wc, cov_w, R_wc)  # [B, C, N, 3, 3]

    tx, ty, tz = means_c.unbind(-1)  # [B, C, N]
    fx, fy = K[:, 0, 0][None, :, None], K[:, 1, 1][None, :, None]  # [1, C, 1]
    cx, cy = K[:, 0, 2][None, :, None], K[:, 1, 2][None, :, None]
    valid = (tz > near_plane) & (tz < far_plane)
    tz_safe = torch.where(valid, tz, torch.ones_like(tz))

    # Jacobian at a mean clamped to 1.3x the field of view (as 3DGS/gsplat do).
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    u = torch.maximum(torch.minimum(tx / tz_safe, lim_x_pos), -lim_x_neg)
    v = torch.maximum(torch.minimum(ty / tz_safe, lim_y_pos), -lim_y_neg)
    zero = torch.zeros_like(tz)
    J = torch.stack(
        [fx / tz_safe, zero, -fx * u / tz_safe, zero, fy / tz_safe, -fy * v / tz_safe], dim=-1
    ).reshape(B, C, N, 2, 3)
    cov2d = J @ cov_c @ J.transpose(-1, -2)  # [B, C, N, 2, 2]
    a = cov2d[..., 0, 0] + EPS2D
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    c = cov2d[..., 1, 1] + EPS2D
    det = a * c - b * b
    valid = valid & (det > 0) & torch.isfinite(det)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)  # [B, C, N, 3]

    means2d = torch.stack([fx * tx / tz_safe + cx, fy * ty / tz_safe + cy], dim=-1)  # [B, C, N, 2]
    opac = opacities[:, None, :].expand(B, C, N)
    cols = colors[:, None, :, :].expand(B, C, N, 3)

    with torch.no_grad():
        half_trace = 0.5 * (a + c)
        lambda_max = half_trace + torch.sqrt(torch.clamp(half_trace * half_trace - det, min=0.01))
        extent = torch.sqrt(2.0 * torch.log(torch.clamp(opac * 255.0, min=1.0))).clamp(max=MAX_EXTENT)
        radius = torch.ceil(extent * torch.sqrt(lambda_max.clamp(min=0)))
        mx, my = means2d[..., 0], means2d[..., 1]
        on_screen = (mx + radius > 0) & (mx - radius < width) & (my + radius > 0) & (my - radius < height)
        keep = valid & on_screen & (opac >= ALPHA_MIN) & torch.isfinite(mx) & torch.isfinite(my)
        radii = torch.where(keep, radius, torch.zeros_like(radius)).to(torch.int64)

    I = B * C
    return Projected(
        means2d=means2d.reshape(I, N, 2),
        conics=conics.reshape(I, N, 3),
        depths=tz.reshape(I, N),
        opacities=opac.reshape(I, N),
        colors=cols.reshape(I, N, 3),
        radii=radii.reshape(I, N),
        valid=valid.reshape(I, N),
    )


def gaussian_alpha(opacity: Tensor, conic: Tensor, delta: Tensor) -> Tensor:
    """Alpha of Gaussians at pixel offsets ``delta`` = pixel − mean2d.

    ``opacity`` [...], ``conic`` [..., 3], ``delta`` [..., 2] (broadcastable). Returns the
    clamped alpha with skipped contributions (alpha < 1/255 or negative exponent) set to 0.
    """
    dx, dy = delta[..., 0], delta[..., 1]
    sigma = 0.5 * (conic[..., 0] * dx * dx + conic[..., 2] * dy * dy) + conic[..., 1] * dx * dy
    alpha = torch.clamp(opacity * torch.exp(-sigma), max=ALPHA_MAX)
    keep = (sigma >= 0) & (alpha >= ALPHA_MIN)
    return torch.where(keep, alpha, torch.zeros_like(alpha))


def composite(alpha: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing along the last axis with early termination.

    ``alpha`` [..., P, K] (P pixels, K Gaussians sorted near to far), ``features``
    [..., K, F] (colour, depth, ...). Returns (accumulated features [..., P, F],
    transmittance [..., P]). A Gaussian contributes only while the transmittance
    after it stays above ``T_MIN``, exactly as the CUDA rasterizer stops; since that
    set is a prefix of the sorted list, one cumulative product serves both the weights
    and the stop test (1 − α ≥ 0.001, so the division below is safe).
    """
    one_minus = 1.0 - alpha  # [..., P, K]
    T_incl = torch.cumprod(one_minus, dim=-1)
    included = (T_incl > T_MIN).detach()
    weights = torch.where(included, alpha * (T_incl / one_minus), torch.zeros_like(alpha))
    accumulated = weights @ features  # [..., P, F]
    transmittance = torch.where(included, one_minus, torch.ones_like(alpha)).prod(dim=-1)
    return accumulated, transmittance
