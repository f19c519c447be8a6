"""Differentiable Gaussian-splat rendering: one public function over private backends.

``rasterize(gaussians, cameras, width, height, background, backend)`` renders
(optionally batched) Gaussians into several OpenCV cameras at once. Backends:

- ``"gsplat"``: gsplat's CUDA kernels (CUDA only; compiled on first use);
- ``"torch"``: the tiled pure-PyTorch renderer (CPU or CUDA), same rules;
- ``"auto"``: gsplat when the Gaussians live on CUDA and gsplat runs there, else torch.

The choice is resolved once per call and reported in ``RenderOutput.backend``.
Conventions: docs/conventions.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from gvf_core.cameras import Cameras
from gvf_core.gaussians import Gaussians
from gvf_core.render import _gsplat_backend, _reference, _torch_backend
from gvf_core.render._projection import project

log = logging.getLogger(__name__)

BACKENDS = ("auto", "gsplat", "torch")


@dataclass
class RenderOutput:
    """Rendered images; leading axes are the Gaussians' batch shape, then cameras."""

    rgb: Tensor  # [..., C, H, W, 3] composited over the background
    alpha: Tensor  # [..., C, H, W, 1] accumulated opacity
    depth: Tensor  # [..., C, H, W, 1] expected camera-space z (0 where alpha is 0)
    backend: str  # the backend that rendered: "gsplat" or "torch"


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn "auto" into a concrete backend name for Gaussians on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown renderer backend {backend!r}; choose one of {BACKENDS}")
    if backend == "torch":
        return "torch"
    gsplat_ok = _gsplat_backend.available(str(device) if device.index is None else f"cuda:{device.index}")
    if backend == "gsplat":
        if not gsplat_ok:
            raise RuntimeError(
                "backend='gsplat' needs Gaussians on a CUDA device and a working gsplat "
                "(pip install gsplat==1.5.3; it compiles with nvcc on first use). Use backend='torch' or 'auto'."
            )
        return "gsplat"
    return "gsplat" if gsplat_ok else "torch"


def _background(background, images: int, dtype, device) -> Tensor:
    if background is None:
        return torch.zeros(images, 3, dtype=dtype, device=device)
    bg = torch.as_tensor(background, dtype=dtype, device=device)
    if bg.dim() == 0:
        bg = bg.expand(3)
    if bg.dim() == 1:
        bg = bg.expand(images, 3)
    if tuple(bg.shape) != (images, 3):
        raise ValueError(f"background must be a scalar, [3] or [{images}, 3] (batch × cameras); got {tuple(bg.shape)}")
    return bg


def rasterize(
    gaussians: Gaussians,
    cameras: Cameras,
    width: int,
    height: int,
    background=None,
    backend: str = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    tile_size: int | None = None,
) -> RenderOutput:
    """Render ``gaussians`` ([..., N]) into every camera of ``cameras`` (C views).

    ``background``: None (black), a scalar, an RGB triple, or one RGB per image
    ([prod(batch) * C, 3]). Gradients flow to every Gaussian parameter.
    ``tile_size`` (torch backend): pixels per tile side; None picks 8 or 16 from the
    Gaussians' screen size.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    batch_shape = gaussians.batch_shape
    N = gaussians.num
    dtype, device = gaussians.dtype, gaussians.device
    cameras = cameras.to(device=device, dtype=dtype)
    C = len(cameras)
    B = int(torch.tensor(batch_shape).prod()) if batch_shape else 1
    name = resolve_backend(backend, device)
    bg = _background(background, B * C, dtype, device)

    means = gaussians.means.reshape(B, N, 3)
    quats = gaussians.rotations.reshape(B, N, 4)
    scales = gaussians.scales.reshape(B, N, 3)
    opac = gaussians.opacities.reshape(B, N)
    colors = gaussians.rgb.reshape(B, N, 3)

    if name == "gsplat":
        rgb, alpha, depth = _gsplat_backend.rasterize_gsplat(
            means, quats, scales, opac, colors, cameras.K, cameras.world_to_camera,
            width, height, bg, near_plane, far_plane,
        )
    else:
        proj = project(means, quats, scales, opac, colors, cameras.K, cameras.world_to_camera, width, height, near_plane, far_plane)
        rgb, alpha, depth = _torch_backend.rasterize_tiles(proj, bg, width, height, tile_size)
    shape = (*batch_shape, C, height, width)
    return RenderOutput(rgb.reshape(*shape, 3), alpha.reshape(*shape, 1), depth.reshape(*shape, 1), name)


def rasterize_reference(
    gaussians: Gaussians,
    cameras: Cameras,
    width: int,
    height: int,
    background=None,
    method: str = "sequential",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> RenderOutput:
    """Slow reference renderers (``"sequential"`` brute force or ``"dense"``), for tests and benchmarks."""
    batch_shape = gaussians.batch_shape
    N, dtype, device = gaussians.num, gaussians.dtype, gaussians.device
    cameras = cameras.to(device=device, dtype=dtype)
    C = len(cameras)
    B = int(torch.tensor(batch_shape).prod()) if batch_shape else 1
    bg = _background(background, B * C, dtype, device)
    proj = project(
        gaussians.means.reshape(B, N, 3), gaussians.rotations.reshape(B, N, 4), gaussians.scales.reshape(B, N, 3),
        gaussians.opacities.reshape(B, N), gaussians.rgb.reshape(B, N, 3),
        cameras.K, cameras.world_to_camera, width, height, near_plane, far_plane,
    )
    fn = {"sequential": _reference.render_sequential, "dense": _reference.render_dense}[method]
    rgb, alpha, depth = fn(proj, bg, width, height)
    shape = (*batch_shape, C, height, width)
    return RenderOutput(rgb.reshape(*shape, 3), alpha.reshape(*shape, 1), depth.reshape(*shape, 1), method)


__all__ = ["BACKENDS", "RenderOutput", "rasterize", "rasterize_reference", "resolve_backend"]
