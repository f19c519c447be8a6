"""Building blocks shared by the VAE and the DiT: embeddings, attention, MLP.

Attention uses ``F.scaled_dot_product_attention`` with RMS-normalised queries and
keys (QK-norm); ``attention_reference`` is its naive twin for tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FourierEmbedding(nn.Module):
    """Sinusoidal embedding of coordinates: [..., D] -> [..., D * (2 * freqs + 1)].

    Frequencies are powers of two times pi, from 1 to 2^(freqs-1); the input itself is
    kept. Coordinates are expected in the model frame (about [-1, 1]).
    """

    def __init__(self, in_dim: int, freqs: int):
        super().__init__()
        self.register_buffer("bands", (2.0 ** torch.arange(freqs)) * math.pi, persistent=False)
        self.out_dim = in_dim * (2 * freqs + 1)

    def forward(self, x: Tensor) -> Tensor:
        xb = x[..., None] * self.bands  # [..., D, F]
        return torch.cat([x, torch.sin(xb).flatten(-2), torch.cos(xb).flatten(-2)], dim=-1)


def attention_reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Naive softmax attention, [B, H, Lq, D] x [B, H, Lk, D] -> [B, H, Lq, D]."""
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v


class Attention(nn.Module):
    """Multi-head attention with QK RMS-norm; self-attention when ``context`` is None."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim)
        self.q_norm = nn.RMSNorm(self.head_dim)
        self.k_norm = nn.RMSNorm(self.head_dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """``bias``: optional additive attention logits, broadcastable to [B, heads, Lq, Lk]."""
        B, Lq, _ = x.shape
        ctx = x if context is None else context
        Lk = ctx.shape[1]
        q = self.to_q(x).reshape(B, Lq, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.to_kv(ctx).reshape(B, Lk, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v, attn_mask=bias)  # [B, H, Lq, D]
        return self.out(out.transpose(1, 2).reshape(B, Lq, -1))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float = 4.0, out_dim: int | None = None):
        super().__init__()
        hidden = int(dim * ratio)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, out_dim or dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)); x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), bias=bias)
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention block: x + attn(norm(x), norm(context)); x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.norm_x = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(context_dim or dim)
        self.attn = Attention(dim, heads, context_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x: Tensor, context: Tensor, bias: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm_x(x), self.norm_ctx(context), bias=bias)
        return x + self.mlp(self.norm2(x))


class DistanceBias(nn.Module):
    """Additive attention logits −γₕ · d² / s², a learnable locality prior per head.

    d is the distance between a query's and a key's anchor positions, s a length scale
    (the mean spacing of the anchors); γ starts at 1, so at init a key one spacing away
    loses 1 logit and one three spacings away 9. The network can sharpen or flatten it.
    """

    def __init__(self, heads: int):
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(heads))

    def forward(self, queries: Tensor, keys: Tensor, scale: Tensor, repeats: int = 1) -> Tensor:
        """queries [B, Lq, 3], keys [B, Lk, 3], scale [B] → bias [B * repeats, H, Lq, Lk]."""
        d2 = torch.cdist(queries, keys).pow(2) / scale.pow(2)[:, None, None]  # [B, Lq, Lk]
        bias = -self.log_gamma.exp()[None, :, None, None] * d2[:, None]  # [B, H, Lq, Lk]
        return bias.repeat_interleave(repeats, dim=0) if repeats > 1 else bias
