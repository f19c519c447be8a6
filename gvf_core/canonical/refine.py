"""Photometric refinement of canonical Gaussians against multiview images of the mesh.

The Gaussians stay bound to their faces: only face-local appearance parameters are
optimized (colour, opacity, in-plane angle, local scales, offset along the normal),
so every refined Gaussian still follows the mesh exactly. Afterwards near-transparent
Gaussians are pruned (as Lyra does). Images come from anywhere: the Blender add-on
renders them with Workbench or Cycles; tests render them with the splat renderer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor

from gvf_core.cameras import Cameras
from gvf_core.canonical.binding import Binding, BoundGaussians, prune
from gvf_core.render import rasterize, resolve_backend


@dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine_canonical`."""

    steps: int = 200
    """Optimizer steps."""
    views_per_step: int = 4
    """Views rendered per step (drawn without replacement, deterministic under ``seed``)."""
    lr_color: float = 0.05
    """Adam learning rate of the SH DC colours."""
    lr_opacity: float = 0.1
    """Adam learning rate of the opacity logits."""
    lr_scale: float = 0.01
    """Adam learning rate of the local log-scales."""
    lr_angle: float = 0.01
    """Adam learning rate of the in-plane angles (radians)."""
    lr_offset: float = 1e-4
    """Adam learning rate of the offsets along the normal (model units)."""
    mask_weight: float = 1.0
    """Weight of the L1 loss between rendered alpha and the image masks (when given)."""
    min_opacity: float = 0.02
    """Gaussians below this opacity are pruned after refinement (0 disables pruning)."""
    background: float = 1.0
    """Grey level the images were rendered over (where they have no alpha)."""
    backend: str = "auto"
    """Renderer backend: "auto", "gsplat" or "torch"."""
    seed: int = 0
    """Seed of the view sampling."""


@dataclass
class RefineResult:
    gaussians: BoundGaussians
    losses: list[float]
    """Loss per step."""
    pruned: int
    """How many Gaussians pruning removed."""
    backend: str


def refine_canonical(
    bound: BoundGaussians,
    images: Tensor,  # [V, H, W, 3] RGB in 0..1
    cameras: Cameras,  # V cameras, same frame as bound.rest_vertices
    masks: Tensor | None = None,  # [V, H, W] object coverage in 0..1
    config: RefineConfig = RefineConfig(),
    progress: Callable[[int, int, float], bool | None] | None = None,
) -> RefineResult:
    """Fit the bound Gaussians' appearance to ``images``; returns a new ``BoundGaussians``.

    ``progress(step, steps, loss)`` is called every step; returning False stops early
    (the result so far is kept). The input ``bound`` is never modified.
    """
    V, H, W, _ = images.shape
    if len(cameras) != V:
        raise ValueError(f"refine_canonical: {V} images but {len(cameras)} cameras; give one camera per image")
    if masks is not None and tuple(masks.shape) != (V, H, W):
        raise ValueError(f"refine_canonical: masks must be [V, H, W] = {(V, H, W)}, got {tuple(masks.shape)}")
    device, dtype = bound.rest_vertices.device, bound.rest_vertices.dtype
    images = images.to(device=device, dtype=dtype)
    masks = None if masks is None else masks.to(device=device, dtype=dtype)
    cameras = cameras.to(device=device, dtype=dtype)
    backend = resolve_backend(config.backend, device)

    params = {
        "sh0": bound.sh0.detach().clone().requires_grad_(True),
        "opacity_logits": bound.opacity_logits.detach().clone().requires_grad_(True),
        "local_log_scales": bound.local_log_scales.detach().clone().requires_grad_(True),
        "local_angle": bound.local_angle.detach().clone().requires_grad_(True),
        "offset": bound.binding.offset.detach().clone().requires_grad_(True),
    }
    lrs = {
        "sh0": config.lr_color, "opacity_logits": config.lr_opacity, "local_log_scales": config.lr_scale,
        "local_angle": config.lr_angle, "offset": config.lr_offset,
    }
    optimizer = torch.optim.Adam([{"params": [p], "lr": lrs[k]} for k, p in params.items()])
    generator = torch.Generator().manual_seed(config.seed)
    per_step = min(config.views_per_step, V)

    def current() -> BoundGaussians:
        binding = Binding(bound.binding.face_idx, bound.binding.bary, params["offset"])
        return replace(
            bound, binding=binding, sh0=params["sh0"], opacity_logits=params["opacity_logits"],
            local_log_scales=params["local_log_scales"], local_angle=params["local_angle"],
        )

    losses: list[float] = []
    for step in range(config.steps):
        views = torch.randperm(V, generator=generator)[:per_step].to(device)
        view_cams = Cameras(cameras.K[views], cameras.world_to_camera[views])
        out = rasterize(current().canonical, view_cams, W, H, background=config.background, backend=backend)
        loss = (out.rgb - images[views]).abs().mean()
        if masks is not None:
            loss = loss + config.mask_weight * (out.alpha[..., 0] - masks[views]).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None and progress(step + 1, config.steps, losses[-1]) is False:
            break

    with torch.no_grad():
        refined = current()
        refined = replace(
            refined,
            binding=Binding(refined.binding.face_idx, refined.binding.bary, refined.binding.offset.detach()),
            sh0=refined.sh0.detach(), opacity_logits=refined.opacity_logits.detach(),
            local_log_scales=refined.local_log_scales.detach(), local_angle=refined.local_angle.detach(),
        )
    kept = prune(refined, config.min_opacity) if config.min_opacity > 0 else refined
    return RefineResult(kept, losses, refined.num - kept.num, backend)
