"""Tiled pure-PyTorch rasterizer: the CPU (and fallback CUDA) backend.

Same contract as the gsplat backend. The image is cut into ``tile_size``² tiles; each
projected Gaussian is binned into the tiles its support square touches; each tile
composites only its own Gaussians, sorted near to far, with the CUDA rasterizer's
rules (alpha clamp 0.999, skip below 1/255, stop before the transmittance reaches
1e-4). Tiles are processed in chunks of similar Gaussian counts so the padded
``[tiles, K, pixels]`` work tensors stay small; autograd provides the gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gvf_core.render._projection import ALPHA_MAX, ALPHA_MIN, Projected, composite

DEFAULT_CHUNK_ELEMENTS = 1 << 22
"""Upper bound on tiles × Gaussians-per-tile × pixels-per-tile processed at once."""


@torch.no_grad()
def bin_gaussians(proj: Projected, width: int, height: int, tile_size: int):
    """Tile/Gaussian intersections sorted by (image, tile, depth).

    Returns (tile_keys [M] int64 = image * tiles_per_image + tile, gaussian ids [M]
    into the flattened [I * N] arrays, tiles_x, tiles_y).
    """
    I, N = proj.radii.shape
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    radius = proj.radii.to(proj.means2d.dtype)
    tmin = torch.floor((proj.means2d - radius[..., None]) / tile_size).to(torch.int64)  # [I, N, 2]
    tmax = torch.ceil((proj.means2d + radius[..., None]) / tile_size).to(torch.int64)
    tmin[..., 0].clamp_(0, tiles_x)
    tmax[..., 0].clamp_(0, tiles_x)
    tmin[..., 1].clamp_(0, tiles_y)
    tmax[..., 1].clamp_(0, tiles_y)
    span = (tmax - tmin).clamp(min=0)  # [I, N, 2]
    counts = (span[..., 0] * span[..., 1] * (proj.radii > 0)).reshape(-1)  # [I*N]
    gid = torch.repeat_interleave(torch.arange(I * N, device=counts.device), counts)  # [M]
    if gid.numel() == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=counts.device)
        return empty, empty, tiles_x, tiles_y
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(gid.numel(), device=counts.device) - first[gid]  # rank inside the rectangle
    span_x = span.reshape(-1, 2)[gid, 0]
    tx = tmin.reshape(-1, 2)[gid, 0] + local % span_x
    ty = tmin.reshape(-1, 2)[gid, 1] + local // span_x
    image = gid // N
    keys = image * (tiles_x * tiles_y) + ty * tiles_x + tx
    # sort by depth, then stably by tile: near-to-far inside every tile
    order = torch.argsort(proj.depths.reshape(-1)[gid], stable=True)
    keys, gid = keys[order], gid[order]
    order = torch.argsort(keys, stable=True)
    return keys[order], gid[order], tiles_x, tiles_y


def auto_tile_size(radii: Tensor) -> int:
    visible = radii[radii > 0]
    if visible.numel() == 0:
        return 16
    return 8 if float(visible.float().median()) <= 6.0 else 16


def tile_alpha(
    means2d: Tensor,  # [n, K, 2] relative to the tile origin
    conics: Tensor,  # [n, K, 3]
    opacities: Tensor,  # [n, K]
    slot_valid: Tensor,  # [n, K] False for padding slots
    feats: Tensor,  # [P, 6] monomials (1, x, y, x², xy, y²) of the tile's pixel centres
) -> Tensor:
    """Alpha of every Gaussian at every pixel of its tile: [n, P, K].

    ``log(opacity) − ½ dᵀ Σ⁻¹ d`` is a quadratic polynomial in the pixel position, so
    the whole [pixels × Gaussians] exponent is one batched matmul of monomials with
    per-Gaussian coefficients (tile-local coordinates keep it well conditioned).
    """
    a, b, c = conics.unbind(-1)
    mx, my = means2d.unbind(-1)
    sigma_at_origin = 0.5 * (a * mx * mx + c * my * my) + b * mx * my
    log_opacity = torch.log(opacities)
    coefs = torch.stack(
        [log_opacity - sigma_at_origin, a * mx + b * my, c * my + b * mx, -0.5 * a, -b, -0.5 * c], dim=-1
    )  # [n, K, 6]
    exponent = feats @ coefs.transpose(1, 2)  # [n, P, K]
    alpha = torch.clamp(torch.exp(exponent), max=ALPHA_MAX)
    keep = (exponent <= log_opacity[:, None, :]) & (alpha >= ALPHA_MIN) & slot_valid[:, None, :]
    return torch.where(keep, alpha, torch.zeros_like(alpha))


def rasterize_tiles(
    proj: Projected,
    background: Tensor,  # [I, 3]
    width: int,
    height: int,
    tile_size: int | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns rgb [I, H, W, 3], alpha [I, H, W, 1], expected depth [I, H, W, 1].

    ``tile_size=None`` picks 8 when the visible Gaussians are small (median support
    radius ≤ 6 px: a 16² tile would evaluate mostly pixels outside them, measured 2×
    slower at 128² with 4096–8192 object Gaussians) and 16 otherwise.
    """
    I, N = proj.radii.shape
    if tile_size is None:
        tile_size = auto_tile_size(proj.radii)
    dtype, device = proj.means2d.dtype, proj.means2d.device
    keys, gid, tiles_x, tiles_y = bin_gaussians(proj, width, height, tile_size)
    n_tiles = I * tiles_x * tiles_y
    P = tile_size * tile_size

    # per-tile outputs; tiles without Gaussians keep T = 1 and zero colour/depth
    rgb_t = torch.zeros(n_tiles, P, 3, dtype=dtype, device=device)
    T_t = torch.ones(n_tiles, P, dtype=dtype, device=device)
    depth_t = torch.zeros(n_tiles, P, dtype=dtype, device=device)

    if keys.numel() > 0:
        with torch.no_grad():
            tile_ids, counts = torch.unique_consecutive(keys, return_counts=True)
            starts = torch.cumsum(counts, 0) - counts
            by_count = torch.argsort(counts, descending=True)
            offs = torch.arange(P, device=device)
            px = (offs % tile_size).to(dtype) + 0.5  # pixel centres relative to the tile origin
            py = (offs // tile_size).to(dtype) + 0.5
            feats = torch.stack([torch.ones_like(px), px, py, px * px, px * py, py * py], dim=-1)  # [P, 6]

        # one packed table, gathered with index_select: its backward (index_add) sums in a
        # fixed order, unlike advanced indexing, so gradients are bitwise reproducible
        table = torch.cat(
            [
                proj.means2d.reshape(I * N, 2), proj.conics.reshape(I * N, 3), proj.opacities.reshape(I * N, 1),
                proj.colors.reshape(I * N, 3), proj.depths.reshape(I * N, 1),
            ],
            dim=-1,
        )  # [I*N, 10]

        pos = 0
        rgb_parts, T_parts, depth_parts, tile_parts = [], [], [], []
        while pos < by_count.numel():
            k_max = int(counts[by_count[pos]])
            n = max(1, min(by_count.numel() - pos, chunk_elements // max(1, k_max * P)))
            sel = by_count[pos : pos + n]
            pos += n
            with torch.no_grad():
                k = torch.arange(k_max, device=device)
                slot_valid = k[None, :] < counts[sel][:, None]  # [n, K]
                slots = torch.where(slot_valid, starts[sel][:, None] + k[None, :], torch.zeros_like(k)[None, :])
                g = gid[slots]  # [n, K]
                tile_in_image = tile_ids[sel] % (tiles_x * tiles_y)
                origin = torch.stack([tile_in_image % tiles_x, tile_in_image // tiles_x], -1).to(dtype) * tile_size
            rows = table.index_select(0, g.reshape(-1)).reshape(*g.shape, 10)  # [n, K, 10]
            alpha = tile_alpha(rows[..., 0:2] - origin[:, None, :], rows[..., 2:5], rows[..., 5], slot_valid, feats)  # [n, P, K]
            acc, T = composite(alpha, rows[..., 6:10])  # colour and depth
            rgb_parts.append(acc[..., :3])
            T_parts.append(T)
            depth_parts.append(acc[..., 3])
            tile_parts.append(tile_ids[sel])
        tiles = torch.cat(tile_parts)
        rgb_t = rgb_t.index_put((tiles,), torch.cat(rgb_parts))
        T_t = T_t.index_put((tiles,), torch.cat(T_parts))
        depth_t = depth_t.index_put((tiles,), torch.cat(depth_parts))

    def untile(x: Tensor) -> Tensor:  # [n_tiles, P, ch] -> [I, H, W, ch]
        ch = x.shape[-1]
        x = x.reshape(I, tiles_y, tiles_x, tile_size, tile_size, ch).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(I, tiles_y * tile_size, tiles_x * tile_size, ch)[:, :height, :width]

    T = untile(T_t[..., None])
    alpha = 1.0 - T
    rgb = untile(rgb_t) + T * background[:, None, None, :]
    depth = untile(depth_t[..., None]) / alpha.clamp(min=1e-10)
    return rgb, alpha, depth
