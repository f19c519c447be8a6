"""Image and geometry metrics used by losses, evaluation and benchmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """PSNR in dB of images in 0..1, averaged over everything but the last three axes' content."""
    mse = (a - b).pow(2).flatten(-3).mean(-1).clamp(min=1e-10)
    return (10 * torch.log10(1.0 / mse)).mean()


def _gaussian_window(size: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM of images [..., H, W, 3] in 0..1 (Gaussian window, as in the 3DGS losses)."""
    shape = a.shape
    x = a.reshape(-1, *shape[-3:]).permute(0, 3, 1, 2)
    y = b.reshape(-1, *shape[-3:]).permute(0, 3, 1, 2)
    C = x.shape[1]
    w = _gaussian_window(window, sigma, x.dtype, x.device).expand(C, 1, window, window)
    pad = window // 2

    def blur(t):
        return F.conv2d(t, w, padding=pad, groups=C)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()
