"""Slow twins of the tiled torch backend, for parity tests and benchmark baselines.

- ``render_sequential``: brute force per pixel. Every Gaussian is visited at every
  pixel, near to far, with an explicit transmittance and stop flag — the CUDA
  rasterizer's loop written out, sharing nothing with the tiled compositor but the
  projection and the per-Gaussian alpha.
- ``render_dense``: the naive vectorized renderer: all Gaussians × all pixels, no
  tiles, no culling, processed in pixel chunks (with activation checkpointing so its
  backward pass fits in memory). The benchmark's baseline.

Both take the same arguments and return the same tuple as the tiled backend:
(rgb [I, H, W, 3], alpha [I, H, W, 1], depth [I, H, W, 1]) with I = batch × cameras.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from gvf_core.render._projection import T_MIN, Projected, composite, gaussian_alpha


def _pixel_centers(width: int, height: int, dtype, device) -> Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)  # [H*W, 2]


def _finish(rgb, T, depth, background, width, height):
    # rgb [I, P, 3], T [I, P], depth [I, P], background [I, 3]
    alpha = 1.0 - T
    rgb = rgb + T[..., None] * background[:, None, :]
    depth = depth / alpha.clamp(min=1e-10)
    I = rgb.shape[0]
    return rgb.reshape(I, height, width, 3), alpha.reshape(I, height, width, 1), depth.reshape(I, height, width, 1)


def render_sequential(proj: Projected, background: Tensor, width: int, height: int):
    pix = _pixel_centers(width, height, proj.means2d.dtype, proj.means2d.device)  # [P, 2]
    outs = []
    for i in range(proj.means2d.shape[0]):
        order = torch.argsort(proj.depths[i])
        order = order[proj.valid[i][order]]
        T = torch.ones(pix.shape[0], dtype=pix.dtype, device=pix.device)
        done = torch.zeros(pix.shape[0], dtype=torch.bool, device=pix.device)
        rgb = torch.zeros(pix.shape[0], 3, dtype=pix.dtype, device=pix.device)
        depth = torch.zeros(pix.shape[0], dtype=pix.dtype, device=pix.device)
        for g in order.tolist():
            alpha = gaussian_alpha(proj.opacities[i, g], proj.conics[i, g], pix - proj.means2d[i, g])  # [P]
            next_T = T * (1 - alpha)
            done = done | (next_T <= T_MIN)
            take = (~done) & (alpha > 0)
            w = torch.where(take, alpha * T, torch.zeros_like(alpha))
            rgb = rgb + w[:, None] * proj.colors[i, g]
            depth = depth + w * proj.depths[i, g]
            T = torch.where(take, next_T, T)
        outs.append((rgb, T, depth))
    rgb, T, depth = (torch.stack(x) for x in zip(*outs))
    return _finish(rgb, T, depth, background, width, height)


def render_dense(proj: Projected, background: Tensor, width: int, height: int, pixels_per_chunk: int = 4096):
    pix = _pixel_centers(width, height, proj.means2d.dtype, proj.means2d.device)  # [P, 2]

    def chunk(pix_c, means2d, conics, opac, colors, depths):
        alpha = gaussian_alpha(opac[None, :], conics[None, :, :], pix_c[:, None, :] - means2d[None, :, :])  # [Pc, N]
        acc, T = composite(alpha, torch.cat([colors, depths[:, None]], dim=-1))
        return acc[:, :3], T, acc[:, 3]

    outs = []
    for i in range(proj.means2d.shape[0]):
        order = torch.argsort(proj.depths[i])
        order = order[proj.valid[i][order]]
        args = (proj.means2d[i, order], proj.conics[i, order], proj.opacities[i, order], proj.colors[i, order], proj.depths[i, order])
        parts = [
            checkpoint(chunk, pix[s : s + pixels_per_chunk], *args, use_reentrant=False)
            for s in range(0, pix.shape[0], pixels_per_chunk)
        ]
        outs.append(tuple(torch.cat(x, dim=0) for x in zip(*parts)))
    rgb, T, depth = (torch.stack(x) for x in zip(*outs))
    return _finish(rgb, T, depth, background, width, height)
