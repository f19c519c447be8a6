"""Gaussian Variation Field diffusion transformer: video → per-frame motion latent.

The model denoises the VAE latents of one clip, ``[B, T, L, C]`` (T frames, L anchor
tokens, C channels), written as a residual from a *base* latent: the latent of the rest pose
(``base="rest"``: static parts are zero everywhere), or the lifted latent of the video's point
tracks (``base="lift"``, :mod:`gvf_core.models.track_lift`: the model adds what the flow cannot
see, such as depth). Frame 0 of every clip is the canonical state, so its residual is exactly
zero and stays clamped. Each block (adaLN-Zero conditioning on the flow
time and the motion-magnitude condition, QK RMS-norm in every attention) has

1. spatial self-attention among the L tokens of a frame (plus a learnable locality
   prior on the anchors' rest distances);
2. temporal self-attention along the T frames of each token (a learnable per-head
   decay in |Δframe|, relative only: no frame-index embedding, any T works);
3. cross-attention from each frame's tokens to that frame's video tokens (plus a
   locality prior between the anchor's projection into the crop and the token cell);
4. cross-attention to M farthest-point-sampled canonical Gaussians;
5. an MLP.

Anchor tokens carry a Fourier embedding of their model-frame rest position (the same
normalisation in training and sampling: the model frame of :mod:`gvf_core.normalize`)
and of their projection into the video crop; video tokens carry their Plücker ray, so
the camera is known, not guessed. Conditions can be dropped (learned null tokens) for
two-scale classifier-free guidance. A small head predicts the clip's motion magnitude
from the video, so ``strength`` can scale it at sampling time. An optional head maps
a middle block's states to the anchors' displacement for the Geometry-Forcing loss.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import Tensor, nn

from gvf_core.models.layers import MLP, Attention, DistanceBias, FourierEmbedding
from gvf_core.models.video_encoder import BackboneVideoEncoder, ConvVideoEncoder
from gvf_core.models.video_inputs import cell_centres, project, ray_embedding
from gvf_core.models.video_tracks import TRACK_FEATURES

CANONICAL_FEATURES = 14


@dataclass(frozen=True)
class DiTConfig:
    """Architecture of :class:`GVFDiT` (``paper`` preset by default)."""

    width: int = 512
    heads: int = 16
    depth: int = 12
    num_latents: int = 512
    """L, must equal the VAE's."""
    latent_channels: int = 16
    """C, must equal the VAE's."""
    video_size: int = 128
    """Side of the square video crop, pixels."""
    video_grid: int = 16
    """Video tokens per frame: grid × grid."""
    video_encoder: str = "conv"
    """"conv" (trained with the DiT) or "backbone" (frozen pretrained, see video_encoder.py)."""
    backbone_dim: int = 0
    """Feature width of the pretrained backbone (backbone encoder only)."""
    canonical_tokens: int = 2048
    """M: canonical Gaussians the blocks cross-attend to."""
    pos_freqs: int = 8
    distance_bias: bool = True
    """Locality priors in spatial and video attention (not in the paper; docs/models.md)."""
    geometry_forcing: bool = False
    """Build the Geometry-Forcing head (its loss weights live in the training config)."""
    tracks: bool = False
    """Also read each anchor's 2-D optical-flow track (video_tracks.py), added to its token per frame."""
    base: str = "rest"
    """What the residual is taken from: "rest" (the rest-pose latent) or "lift" (the lifted latent
    of the video's point tracks, track_lift.py, also read as a per-frame token input)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DiTConfig":
        data = json.loads(text)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"DiT config has unknown fields {unknown}; the checkpoint is from another version")
        return cls(**data)

    @property
    def gf_layer(self) -> int:
        return self.depth // 2


DIT_PRESETS: dict[str, DiTConfig] = {
    "paper": DiTConfig(),
    "tiny": DiTConfig(width=128, heads=4, depth=4, num_latents=128, latent_channels=8, video_size=64,
                      video_grid=8, canonical_tokens=256, pos_freqs=6, geometry_forcing=True),
}
DIT_PRESETS["tiny-tracks"] = replace(DIT_PRESETS["tiny"], tracks=True)
DIT_PRESETS["tiny-lift"] = replace(DIT_PRESETS["tiny-tracks"], base="lift")
BASES = ("rest", "lift")


@dataclass
class DiTConditions:
    """Everything the DiT is conditioned on, batched; all geometry in the model frame."""

    anchors: Tensor  # [B, L, 3] rest positions of the latent tokens
    rest_latent: Tensor  # [B, L, C] the VAE latent of the rest pose (frame 0)
    canonical: Tensor  # [B, M, 14] canonical Gaussian features (gaussian_features)
    pixels: Tensor  # [B, T, 4, S, S] prepared video (video_inputs.prepare_video)
    K: Tensor  # [B, 3, 3] crop intrinsics
    world_to_camera: Tensor  # [B, 4, 4] camera in the model frame
    magnitude: Tensor | None = None  # [B] motion magnitude, None: predicted from the video
    tracks: Tensor | None = None  # [B, T, L, TRACK_FEATURES] anchor tracks (models with config.tracks)
    base_latent: Tensor | None = None  # [B, T, L, C] lifted latent of the point tracks (models with base="lift")

    def to(self, device) -> "DiTConditions":
        return DiTConditions(**{k: (None if v is None else v.to(device)) for k, v in self.__dict__.items()})

    def repeat(self, n: int) -> "DiTConditions":
        return DiTConditions(**{k: (None if v is None else v.repeat(n, *([1] * (v.dim() - 1)))) for k, v in self.__dict__.items()})


@dataclass
class DiTContext:
    """Conditions encoded once per clip, reused at every sampling step."""

    video: Tensor  # [B, T, G², W]
    canonical: Tensor  # [B, M, W]
    tokens_in: Tensor  # [B, L, W] per-token embedding (anchors, rest latent, projection)
    spatial_bias: Tensor | None  # [B, H, L, L]
    video_bias: Tensor | None  # [B, H, L, G²]
    log_magnitude: Tensor  # [B] normalised log motion magnitude used
    predicted_log_magnitude: Tensor  # [B] normalised, from the video
    tracks: Tensor | None = None  # [B, T, L, W] embedded anchor tracks (part of the video condition)
    base: Tensor | None = None  # [B, T, L, W] embedded base latent (base="lift"; the state, never dropped)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of flow times t in [0, 1] (scaled by 1000), [B] → [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class TemporalBias(nn.Module):
    """Additive logits −slopeₕ · |i − j| over frame pairs (relative, any T)."""

    def __init__(self, heads: int):
        super().__init__()
        # slopes spread geometrically from 1/16 to 1 frame⁻¹ (ALiBi-like), learnable
        target = torch.logspace(-4, 0, heads, base=2.0)
        self.raw = nn.Parameter(torch.log(torch.expm1(target)))

    def forward(self, frames: int, device) -> Tensor:
        idx = torch.arange(frames, device=device, dtype=torch.float32)
        dist = (idx[:, None] - idx[None, :]).abs()
        return -nn.functional.softplus(self.raw)[None, :, None, None] * dist  # [1, H, T, T]


class DiTBlock(nn.Module):
    SUBLAYERS = 5  # spatial, temporal, video, canonical, mlp

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norms = nn.ModuleList([nn.LayerNorm(width, elementwise_affine=False, eps=1e-6) for _ in range(self.SUBLAYERS)])
        self.spatial = Attention(width, heads)
        self.temporal = Attention(width, heads)
        self.video = Attention(width, heads)
        self.canonical = Attention(width, heads)
        self.mlp = MLP(width)
        self.modulation = nn.Linear(width, 3 * self.SUBLAYERS * width)

    def forward(self, x: Tensor, cond: Tensor, ctx: DiTContext, temporal_bias: Tensor | None) -> Tensor:
        B, T, L, W = x.shape
        m = self.modulation(cond).view(B, 1, 1, 3 * self.SUBLAYERS, W).unbind(3)

        def pre(i: int, h: Tensor) -> Tensor:
            return _modulate(self.norms[i](h), m[3 * i], m[3 * i + 1])

        def rep(bias):
            return None if bias is None else bias.repeat_interleave(T, dim=0)

        h = pre(0, x).reshape(B * T, L, W)
        x = x + m[2] * self.spatial(h, bias=rep(ctx.spatial_bias)).reshape(B, T, L, W)
        h = pre(1, x).transpose(1, 2).reshape(B * L, T, W)
        x = x + m[5] * self.temporal(h, bias=temporal_bias).reshape(B, L, T, W).transpose(1, 2)
        h = pre(2, x).reshape(B * T, L, W)
        video = ctx.video.reshape(B * T, -1, W)
        x = x + m[8] * self.video(h, video, bias=rep(ctx.video_bias)).reshape(B, T, L, W)
        h = pre(3, x).reshape(B, T * L, W)
        x = x + m[11] * self.canonical(h, ctx.canonical).reshape(B, T, L, W)
        return x + m[14] * self.mlp(pre(4, x))


class GVFDiT(nn.Module):
    def __init__(self, config: DiTConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = c = config
        if c.base not in BASES:
            raise ValueError(f"unknown DiT base {c.base!r}; choose one of {BASES}")
        W = c.width
        self.pos_embed = FourierEmbedding(3, c.pos_freqs)
        self.screen_embed = FourierEmbedding(2, c.pos_freqs)
        # per-token input
        self.latent_in = nn.Linear(c.latent_channels, W)
        self.rest_in = nn.Linear(c.latent_channels, W)
        self.anchor_in = nn.Linear(self.pos_embed.out_dim + self.screen_embed.out_dim, W)
        # conditions
        if c.video_encoder == "conv":
            self.video_encoder = ConvVideoEncoder(W, c.video_size, c.video_grid)
        elif c.video_encoder == "backbone":
            if backbone is None or c.backbone_dim <= 0:
                raise ValueError("video_encoder='backbone' needs a backbone module and backbone_dim > 0 (see load_backbone)")
            self.video_encoder = BackboneVideoEncoder(backbone, c.backbone_dim, W, c.video_grid)
        else:
            raise ValueError(f"unknown video encoder {c.video_encoder!r}; use 'conv' or 'backbone'")
        self.ray_in = nn.Linear(6, W)
        self.video_norm = nn.LayerNorm(W)
        self.canonical_in = nn.Linear(CANONICAL_FEATURES + self.pos_embed.out_dim, W)
        self.canonical_norm = nn.LayerNorm(W)
        self.null_video = nn.Parameter(torch.zeros(c.video_grid ** 2, W))
        self.null_canonical = nn.Parameter(torch.zeros(1, W))
        self.time_mlp = nn.Sequential(nn.Linear(W, W), nn.SiLU(), nn.Linear(W, W))
        self.magnitude_embed = FourierEmbedding(1, 4)
        self.magnitude_mlp = nn.Sequential(nn.Linear(self.magnitude_embed.out_dim, W), nn.SiLU(), nn.Linear(W, W))
        self.null_magnitude = nn.Parameter(torch.zeros(W))
        self.magnitude_head = nn.Sequential(nn.LayerNorm(W), nn.Linear(W, W), nn.SiLU(), nn.Linear(W, 1))
        self.spatial_bias = DistanceBias(c.heads) if c.distance_bias else None
        self.video_bias = DistanceBias(c.heads) if c.distance_bias else None
        self.temporal_bias = TemporalBias(c.heads)
        self.blocks = nn.ModuleList([DiTBlock(W, c.heads) for _ in range(c.depth)])
        self.final_norm = nn.LayerNorm(W, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(W, 2 * W)
        self.out = nn.Linear(W, c.latent_channels)
        self.track_in = (nn.Sequential(nn.Linear(TRACK_FEATURES, W), nn.SiLU(), nn.Linear(W, W))
                         if c.tracks else None)
        self.base_in = nn.Linear(c.latent_channels, W) if c.base == "lift" else None
        self.gf_head = nn.Sequential(nn.LayerNorm(W), nn.Linear(W, W), nn.SiLU(), nn.Linear(W, 3)) if c.geometry_forcing else None
        # statistics (fitted on training data, saved with the weights)
        self.register_buffer("residual_std", torch.ones(c.latent_channels))
        self.register_buffer("latent_mean", torch.zeros(c.latent_channels))
        self.register_buffer("latent_std", torch.ones(c.latent_channels))
        self.register_buffer("canonical_mean", torch.zeros(CANONICAL_FEATURES))
        self.register_buffer("canonical_std", torch.ones(CANONICAL_FEATURES))
        self.register_buffer("log_magnitude_mean", torch.zeros(()))
        self.register_buffer("log_magnitude_std", torch.ones(()))
        self.register_buffer("motion_scale", torch.ones(()))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.startswith("video_encoder.backbone"):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.null_video, std=0.02)
        nn.init.normal_(self.null_canonical, std=0.02)
        nn.init.normal_(self.null_magnitude, std=0.02)
        for block in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        for layer in (self.final_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.track_in is not None:  # starts as "no tracks": a model fine-tuned from one without them is unchanged
            nn.init.zeros_(self.track_in[-1].weight)
        if self.base_in is not None:  # likewise for the base input
            nn.init.zeros_(self.base_in.weight)

    # ------------------------------------------------------------------ conditions
    def encode_conditions(self, cond: DiTConditions) -> DiTContext:
        c = self.config
        B, T = cond.pixels.shape[:2]
        video = self.video_encoder(cond.pixels)  # [B, T, G², W]
        pooled = video.mean(dim=(1, 2))
        predicted = self.magnitude_head(pooled)[:, 0]
        rays = ray_embedding(cond.K, cond.world_to_camera, c.video_size, c.video_grid)  # [B, G², 6]
        video = self.video_norm(video + self.ray_in(rays)[:, None])
        feats = (cond.canonical - self.canonical_mean) / self.canonical_std
        canonical = self.canonical_norm(self.canonical_in(torch.cat([feats, self.pos_embed(cond.canonical[..., :3])], dim=-1)))
        screen = project(cond.anchors, cond.K, cond.world_to_camera, c.video_size)  # [B, L, 2]
        rest = (cond.rest_latent - self.latent_mean) / self.latent_std
        tokens_in = self.rest_in(rest) + self.anchor_in(torch.cat([self.pos_embed(cond.anchors), self.screen_embed(screen)], dim=-1))
        spatial_bias = video_bias = None
        if self.spatial_bias is not None:
            from gvf_core.models.vae import anchor_spacing

            spatial_bias = self.spatial_bias(cond.anchors, cond.anchors, anchor_spacing(cond.anchors))
            cells = cell_centres(c.video_grid, screen.device)[None].expand(B, -1, -1)
            video_bias = self.video_bias(screen, cells, torch.full((B,), 1.0 / c.video_grid, device=screen.device))
        if cond.magnitude is None:
            log_magnitude = predicted.detach()
        else:
            log_magnitude = (torch.log(cond.magnitude.clamp(min=1e-4)) - self.log_magnitude_mean) / self.log_magnitude_std
        tracks = None
        if self.track_in is not None:
            if cond.tracks is None or cond.tracks.shape[:3] != (B, T, c.num_latents):
                got = None if cond.tracks is None else tuple(cond.tracks.shape)
                raise ValueError(f"this DiT reads anchor tracks [B={B}, T={T}, L={c.num_latents}, {TRACK_FEATURES}]; got {got} "
                                 "(compute them with gvf_core.models.video_tracks)")
            tracks = self.track_in(cond.tracks.float())
        return DiTContext(video, canonical, tokens_in, spatial_bias, video_bias, log_magnitude, predicted, tracks,
                          self.embed_base(cond))

    def embed_base(self, cond: DiTConditions) -> Tensor | None:
        """[B, T, L, W] token input of the base latent's change from the rest latent (None unless base="lift")."""
        if self.base_in is None:
            return None
        return self.base_in(self.to_residual(self.base_of(cond), cond.rest_latent))

    def magnitude_from_normalised(self, value: Tensor) -> Tensor:
        return torch.exp(value * self.log_magnitude_std + self.log_magnitude_mean)

    # ------------------------------------------------------------------ denoiser
    def forward(
        self,
        x: Tensor,  # [B, T, L, C] noisy normalised residual latent
        t: Tensor,  # [B] flow time (1 = noise)
        ctx: DiTContext,
        drop_video: Tensor | None = None,  # [B] bool
        drop_canonical: Tensor | None = None,
        drop_magnitude: Tensor | None = None,
        return_hidden: bool = False,
    ):
        """Predicted velocity (noise − clean) [B, T, L, C]; with ``return_hidden`` also the
        Geometry-Forcing prediction [B, T, L, 3] (None without the head)."""
        B, T, L, _ = x.shape
        video, canonical = ctx.video, ctx.canonical
        tracks = ctx.tracks
        if drop_video is not None:
            video = torch.where(drop_video[:, None, None, None], self.null_video.to(video.dtype).expand_as(video), video)
            if tracks is not None:  # tracks are read from the video: dropped with it
                tracks = tracks * (~drop_video).to(tracks.dtype)[:, None, None, None]
        if drop_canonical is not None:
            canonical = torch.where(drop_canonical[:, None, None], self.null_canonical.to(canonical.dtype).expand_as(canonical), canonical)
        mag = self.magnitude_mlp(self.magnitude_embed(ctx.log_magnitude[:, None]))
        if drop_magnitude is not None:
            mag = torch.where(drop_magnitude[:, None], self.null_magnitude.expand_as(mag), mag)
        cond = nn.functional.silu(self.time_mlp(timestep_embedding(t, self.config.width)) + mag)
        ctx = DiTContext(video, canonical, ctx.tokens_in, ctx.spatial_bias, ctx.video_bias, ctx.log_magnitude,
                         ctx.predicted_log_magnitude, tracks, ctx.base)
        h = self.latent_in(x) + ctx.tokens_in[:, None]
        if tracks is not None:
            h = h + tracks
        if ctx.base is not None:
            h = h + ctx.base
        temporal_bias = self.temporal_bias(T, x.device)
        gf = None
        for i, block in enumerate(self.blocks):
            h = block(h, cond, ctx, temporal_bias)
            if self.gf_head is not None and return_hidden and i == self.config.gf_layer - 1:
                gf = self.gf_head(h)
        shift, scale = self.final_modulation(cond).view(B, 1, 1, 2, -1).unbind(3)
        out = self.out(_modulate(self.final_norm(h), shift, scale))
        return (out, gf) if return_hidden else out

    # ------------------------------------------------------------------ latents
    def base_of(self, cond: DiTConditions) -> Tensor:
        """The latent the residual is taken from: the rest latent [B, L, C] or, with ``base="lift"``,
        the lifted latent [B, T, L, C] of the conditions."""
        if self.config.base == "rest":
            return cond.rest_latent
        rest = cond.rest_latent
        base = cond.base_latent
        if base is None or base.dim() != 4 or base.shape[0] != rest.shape[0] or base.shape[2:] != rest.shape[1:]:
            got = None if base is None else tuple(base.shape)
            raise ValueError(f"this DiT denoises from the lifted latent of the point tracks [B, T, L, C] with B, L, C "
                             f"of the rest latent {tuple(rest.shape)}; got {got} "
                             "(compute it with gvf_core.models.track_lift.lifted_latent)")
        return base

    def to_latent(self, residual: Tensor, base: Tensor) -> Tensor:
        """Normalised residual [B, T, L, C] → VAE latent (``base`` [B, L, C] or [B, T, L, C] added)."""
        return (base[:, None] if base.dim() == 3 else base) + residual * self.residual_std

    def to_residual(self, latent: Tensor, base: Tensor) -> Tensor:
        return (latent - (base[:, None] if base.dim() == 3 else base)) / self.residual_std


# ---------------------------------------------------------------------- checkpoints
def save_dit(model: GVFDiT, path, extra: dict | None = None):
    from gvf_core.models.checkpoint import save_model

    if model.config.video_encoder == "backbone":  # the frozen backbone is the user's file, not ours
        raise ValueError("saving a DiT with a pretrained backbone is not supported; save the conv-encoder model")
    return save_model(path, model, "gvf-dit", model.config.to_json(), extra)


def load_dit(path, device="cpu", backbone: nn.Module | None = None) -> GVFDiT:
    """``from_pretrained``: a DiT file (or a folder holding ``dit.safetensors``), ready for eval."""
    from gvf_core.models.checkpoint import CheckpointError, load_state, read_model

    meta, tensors = read_model(path, "gvf-dit")
    try:
        config = DiTConfig.from_json(meta["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad DiT config in the checkpoint ({exc})") from exc
    model = GVFDiT(config, backbone)
    load_state(model, tensors, path)
    return model.to(device).eval()


GVFDiT.from_pretrained = staticmethod(load_dit)
GVFDiT.save_pretrained = save_dit
