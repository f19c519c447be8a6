"""Video frames → tokens per frame, for the DiT's per-frame cross-attention.

Two encoders with one interface, ``forward(pixels [B, T, 4, S, S]) -> [B, T, G*G, W]``:

- :class:`ConvVideoEncoder` (default): a small strided CNN trained together with the
  DiT. Each frame is read beside its difference from frame 0 (the rest pose), so the
  change that the motion latent has to explain is an input, not something to infer.
- :class:`BackboneVideoEncoder`: a pretrained image backbone (e.g. DINOv2) whose patch
  tokens are pooled to the G×G grid and projected to the DiT width. The backbone is
  loaded from a local folder (:func:`load_backbone`), never downloaded, and frozen.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvVideoEncoder(nn.Module):
    """Strided 3×3 convolutions from S² pixels to a G×G grid of width-W tokens."""

    def __init__(self, width: int, size: int, grid: int, channels: int = 32):
        super().__init__()
        if size % grid:
            raise ValueError(f"video size {size} must be a multiple of the token grid {grid}")
        stride = size // grid
        n = int(round(torch.log2(torch.tensor(float(stride))).item()))
        if 2 ** n != stride:
            raise ValueError(f"video size / grid must be a power of two, got {size} / {grid}")
        layers: list[nn.Module] = []
        c_in = 8
        for i in range(n):
            c_out = channels * 2 ** min(i, 2)
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.GELU()]
            c_in = c_out
        layers += [nn.Conv2d(c_in, width, 1)]
        self.net = nn.Sequential(*layers)
        self.grid = grid

    def forward(self, pixels: Tensor) -> Tensor:
        B, T, C, S, _ = pixels.shape
        x = torch.cat([pixels, pixels - pixels[:, :1]], dim=2).reshape(B * T, 2 * C, S, S)
        x = self.net(x)  # [B*T, W, G, G]
        return x.flatten(2).transpose(1, 2).reshape(B, T, self.grid * self.grid, -1)


class BackboneVideoEncoder(nn.Module):
    """A frozen pretrained backbone's patch tokens, pooled to G×G and projected to W.

    ``backbone(images [N, 3, S, S]) -> tokens [N, h*w, D]`` (patch tokens only, row-major).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, width: int, grid: int):
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.grid = grid
        self.proj = nn.Linear(2 * feature_dim + 1, width)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout, fixed norms
        return self

    def forward(self, pixels: Tensor) -> Tensor:
        B, T, _, S, _ = pixels.shape
        images = (pixels[:, :, :3].reshape(B * T, 3, S, S) - self.mean) / self.std
        with torch.no_grad():
            tokens = self.backbone(images)  # [N, h*w, D]
        n = tokens.shape[1]
        h = int(round(n ** 0.5))
        if h * h != n:
            raise ValueError(f"backbone returned {n} patch tokens, not a square grid")
        feats = tokens.transpose(1, 2).reshape(B * T, -1, h, h)
        feats = F.adaptive_avg_pool2d(feats, self.grid).flatten(2).transpose(1, 2)  # [N, G², D]
        feats = feats.reshape(B, T, self.grid * self.grid, -1)
        mask = F.adaptive_avg_pool2d(pixels[:, :, 3].reshape(B * T, 1, S, S), self.grid).reshape(B, T, -1, 1)
        return self.proj(torch.cat([feats, feats - feats[:, :1], mask], dim=-1))


class _HFPatchTokens(nn.Module):
    """Adapter: a transformers vision model → its patch tokens (class/register tokens dropped)."""

    def __init__(self, model: nn.Module, skip: int):
        super().__init__()
        self.model, self.skip = model, skip

    def forward(self, images: Tensor) -> Tensor:
        return self.model(pixel_values=images).last_hidden_state[:, self.skip:]


def load_backbone(path) -> tuple[nn.Module, int]:
    """(backbone, feature dim) from a local folder holding a transformers DINOv2 checkpoint.

    The folder is what ``save_pretrained`` writes (config.json + weights). Nothing is
    downloaded: a missing folder or a missing ``transformers`` package is a clear error.
    """
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path}: no backbone here (expected a transformers folder with config.json, e.g. from "
            "`AutoModel.from_pretrained('facebook/dinov2-small').save_pretrained(DIR)` on a machine with network)"
        )
    try:
        from transformers import AutoModel
    except ImportError as exc:
        raise ImportError("a pretrained video backbone needs the `transformers` package: pip install transformers") from exc
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    skip = 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)
    return _HFPatchTokens(model, skip), int(model.config.hidden_size)
