"""gsplat (CUDA) backend: same contract as the tiled torch backend.

gsplat is imported lazily; it compiles its CUDA kernels on first use (needs nvcc),
so ``available(device)`` runs one tiny rasterization and caches the answer.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import Tensor

from gvf_core.render._projection import EPS2D

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def available(device: str) -> bool:
    """True when gsplat imports and its kernels run on ``device`` (a CUDA device string)."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401

        means = torch.zeros(1, 3, device=device)
        means[:, 2] = 2.0
        _call(
            means, torch.tensor([[1.0, 0, 0, 0]], device=device), torch.full((1, 3), 0.1, device=device),
            torch.full((1,), 0.5, device=device), torch.ones(1, 3, device=device),
            torch.tensor([[[16.0, 0, 8], [0, 16, 8], [0, 0, 1]]], device=device), torch.eye(4, device=device)[None],
            16, 16, torch.zeros(1, 3, device=device), 0.01, 1e10,
        )
        return True
    except Exception as exc:  # ImportError, compilation failure, missing nvcc ...
        log.warning("gsplat backend unavailable on %s: %s", device, exc)
        return False


def _call(means, quats, scales, opacities, colors, K, viewmats, width, height, background, near_plane, far_plane):
    from gsplat import rasterization

    colors_out, alphas, _meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, K, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=EPS2D, packed=False,
        backgrounds=None, render_mode="RGB+ED", rasterize_mode="classic",
    )
    rgb = colors_out[..., :3] + (1.0 - alphas) * background[:, None, None, :]
    return rgb, alphas, colors_out[..., 3:4]


def rasterize_gsplat(
    means: Tensor,  # [B, N, 3]
    quats: Tensor,  # [B, N, 4]
    scales: Tensor,  # [B, N, 3]
    opacities: Tensor,  # [B, N]
    colors: Tensor,  # [B, N, 3]
    K: Tensor,  # [C, 3, 3]
    world_to_camera: Tensor,  # [C, 4, 4]
    width: int,
    height: int,
    background: Tensor,  # [B*C, 3]
    near_plane: float,
    far_plane: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns rgb [B*C, H, W, 3], alpha [B*C, H, W, 1], expected depth [B*C, H, W, 1]."""
    B, C = means.shape[0], K.shape[0]
    outs = [
        _call(
            means[b], quats[b], scales[b], opacities[b], colors[b], K, world_to_camera,
            width, height, background[b * C : (b + 1) * C], near_plane, far_plane,
        )
        for b in range(B)
    ]
    return tuple(torch.cat(x, dim=0) for x in zip(*outs))
