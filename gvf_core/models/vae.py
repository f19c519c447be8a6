"""Gaussian Variation Field VAE: animated mesh → compact latent → per-frame Gaussian deltas.

The paper's "Direct 4DMesh-to-GS Variation Field VAE", frame by frame:

encoder  mesh points of one frame (rest position + displacement from frame 0)
         → L anchor queries (FPS-sampled canonical Gaussians) whose input is their
           mesh-guided interpolated displacement (K nearest rest points inside an
           adaptive radius, weights exp(−β d²/r²))
         → one cross-attention block (queries → points) → mean, log-variance [L, C]
decoder  latent [L, C] + anchor position embedding → self-attention stack
         → every canonical Gaussian (its 14 attributes + position embedding)
           cross-attends to the latent, in chunks of ``decode_chunk`` Gaussians
         → zero-initialised linear → 14 deltas (Δxyz 3, Δsh0 3, Δopacity-logit 1,
           Δlog-scale 3, Δquaternion 4), scaled by per-channel statistics

Deltas act on the raw parameters of :class:`gvf_core.gaussians.Gaussians` (log
scales rather than the public code's pre-softplus scales). An untrained decoder
returns the canonical Gaussians unchanged. Normalisation statistics live in buffers,
so a checkpoint carries them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import Tensor, nn

from gvf_core.gaussians import Gaussians
from gvf_core.models.layers import CrossAttentionBlock, DistanceBias, FourierEmbedding, SelfAttentionBlock

DELTA_CHANNELS = 14
GAUSSIAN_CHANNELS = 14


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and loss weights of :class:`GVFVAE` (``paper`` preset by default)."""

    width: int = 768
    """Transformer width."""
    heads: int = 12
    """Attention heads."""
    num_latents: int = 512
    """L: latent tokens (anchor Gaussians) per frame."""
    latent_channels: int = 16
    """C: channels per latent token."""
    num_points: int = 8192
    """Mesh points per frame the encoder reads."""
    decoder_layers: int = 12
    """Self-attention layers over the latent."""
    knn: int = 8
    """K: rest-pose neighbours of each anchor in the mesh-guided interpolation."""
    interp_beta: float = 7.0
    """β of the interpolation weights exp(−β d² / r²)."""
    pos_freqs: int = 8
    """Fourier frequencies of the position embedding."""
    decode_chunk: int = 16384
    """Gaussians decoded at once (bounds decoder memory for 100k Gaussians)."""
    distance_bias: bool = True
    """Add a learnable locality prior (−γ d²/s²) to the encoder, latent and decoder attention
    logits, d between anchor/point/Gaussian rest positions. Not in the paper: measured to
    speed up learning of the local structure (docs/models.md)."""
    anchor_skip: bool = True
    """Also decode one displacement per latent token and spread it to every Gaussian with
    the mesh-guided weights of its K nearest anchors (added to the decoded Δxyz). Not in
    the paper: it gives the decoder the interpolation the encoder already uses, so the
    smooth part of the motion is learnt in a few hundred steps (docs/models.md)."""
    w_mesh_guided: float = 1.0
    """L1 between decoded Δxyz at the anchors and their interpolated displacement."""
    w_position: float = 1.0
    """L1 on Δxyz of every Gaussian against the exact bound states."""
    w_scale: float = 0.1
    """L1 on Δlog-scale against the exact states."""
    w_covariance: float = 1.0
    """L1 between predicted and exact covariances / (mean canonical scale)²."""
    w_appearance: float = 0.1
    """L1 on Δsh0 and Δopacity (exactly zero for mesh-bound Gaussians)."""
    w_render: float = 0.0
    """Render loss weight (L1 + ssim_weight · (1 − SSIM)) on a few views; 0 disables it."""
    ssim_weight: float = 0.2
    """Weight of (1 − SSIM) inside the render loss."""
    w_kl: float = 1e-6
    """KL weight."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "VAEConfig":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"VAE config has unknown fields {unknown}; the checkpoint is from another version")
        return cls(**data)


VAE_PRESETS: dict[str, VAEConfig] = {
    "paper": VAEConfig(),
    "tiny": VAEConfig(width=128, heads=4, num_latents=128, latent_channels=8, num_points=2048, decoder_layers=3, pos_freqs=6),
}


def gaussian_features(g: Gaussians) -> Tensor:
    """[..., N, 14]: means, sh0, opacity logit, log-scales, unit quaternion."""
    return torch.cat([g.means, g.sh0, g.opacity_logits[..., None], g.log_scales, g.rotations], dim=-1)


def apply_deltas(canonical: Gaussians, deltas: Tensor) -> Gaussians:
    """Canonical Gaussians [..., N] + deltas [..., T, N, 14] → per-frame Gaussians [..., T, N]."""
    c = canonical
    return Gaussians(
        means=c.means.unsqueeze(-3) + deltas[..., 0:3],
        sh0=c.sh0.unsqueeze(-3) + deltas[..., 3:6],
        opacity_logits=c.opacity_logits.unsqueeze(-2) + deltas[..., 6],
        log_scales=c.log_scales.unsqueeze(-3) + deltas[..., 7:10],
        quats=c.rotations.unsqueeze(-3) + deltas[..., 10:14],
    )


def state_deltas(canonical: Gaussians, states: Gaussians) -> Tensor:
    """Exact deltas [..., T, N, 14] that take ``canonical`` [..., N] to ``states`` [..., T, N].

    Quaternions are sign-aligned with the canonical one (q and −q are the same rotation).
    """
    q0 = canonical.rotations.unsqueeze(-3)
    q = states.rotations
    q = torch.where((q * q0).sum(-1, keepdim=True) < 0, -q, q)
    return torch.cat(
        [
            states.means - canonical.means.unsqueeze(-3),
            states.sh0 - canonical.sh0.unsqueeze(-3),
            (states.opacity_logits - canonical.opacity_logits.unsqueeze(-2))[..., None],
            states.log_scales - canonical.log_scales.unsqueeze(-3),
            q - q0,
        ],
        dim=-1,
    )


def mesh_guided_interpolation(anchors: Tensor, points: Tensor, k: int = 8, beta: float = 7.0) -> tuple[Tensor, Tensor]:
    """Neighbours and weights of each anchor among the rest-pose points.

    ``anchors`` [B, L, 3], ``points`` [B, P, 3] → (indices [B, L, K], weights [B, L, K]).
    The radius is r = sqrt(mean of the K squared distances); neighbours beyond r get
    weight 0; the others exp(−β d²/r²), normalised to sum to 1 (the nearest neighbour
    is always inside r, so every anchor has at least one).
    """
    d2 = torch.cdist(anchors, points).pow(2)  # [B, L, P]
    d2k, idx = torch.topk(d2, k, dim=-1, largest=False)  # [B, L, K]
    r2 = d2k.mean(-1, keepdim=True).clamp(min=1e-12)
    w = torch.exp(-beta * d2k / r2) * (d2k <= r2)
    return idx, w / w.sum(-1, keepdim=True)


@torch.no_grad()
def encode_points(vae: "GVFVAE", rest_points: Tensor, anchors: Tensor, displacements: Tensor) -> Tensor:
    """Posterior-mean latent [T, L, C] of one clip: ``rest_points`` [P, 3] moved by
    ``displacements`` [T, P, 3], seen through ``anchors`` [L, 3] (model frame)."""
    c = vae.config
    pts, anc = rest_points[None].float(), anchors[None].float()
    neighbours = mesh_guided_interpolation(anc, pts, c.knn, c.interp_beta)
    mean, _ = vae.encode(pts, displacements[None].float(), anc, neighbours)
    return mean[0]


def anchor_spacing(anchors: Tensor) -> Tensor:
    """[B, L, 3] → [B] mean distance from each anchor to its nearest other anchor."""
    d = torch.cdist(anchors, anchors)
    d = d + torch.eye(anchors.shape[1], dtype=d.dtype, device=d.device) * 1e9
    return d.min(-1).values.mean(-1).clamp(min=1e-6)


def interpolate(values: Tensor, idx: Tensor, weights: Tensor) -> Tensor:
    """values [B, T, P, D], idx/weights [B, L, K] → [B, T, L, D]."""
    B, T, P, D = values.shape
    L, K = idx.shape[1:]
    gathered = torch.gather(values, 2, idx.reshape(B, 1, L * K, 1).expand(B, T, L * K, D)).reshape(B, T, L, K, D)
    return (gathered * weights[:, None, :, :, None]).sum(-2)


class GVFVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        self.pos_embed = FourierEmbedding(3, c.pos_freqs)
        pe = self.pos_embed.out_dim
        # encoder
        self.point_in = nn.Linear(pe + 3, c.width)
        self.query_in = nn.Linear(pe + 3, c.width)
        self.encoder = CrossAttentionBlock(c.width, c.heads)
        self.encoder_bias = DistanceBias(c.heads) if c.distance_bias else None
        self.latent_bias = DistanceBias(c.heads) if c.distance_bias else None
        self.decoder_bias = DistanceBias(c.heads) if c.distance_bias else None
        self.to_moments = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, 2 * c.latent_channels))
        # decoder
        self.latent_in = nn.Linear(c.latent_channels + pe, c.width)
        self.decoder = nn.ModuleList([SelfAttentionBlock(c.width, c.heads) for _ in range(c.decoder_layers)])
        self.gaussian_in = nn.Linear(GAUSSIAN_CHANNELS + pe, c.width)
        self.gaussian_cross = CrossAttentionBlock(c.width, c.heads)
        self.out_norm = nn.LayerNorm(c.width)
        self.out = nn.Linear(c.width, DELTA_CHANNELS)
        self.anchor_head = nn.Linear(c.width, 3) if c.anchor_skip else None
        # normalisation statistics (set from data before training; saved with the weights)
        self.register_buffer("displacement_scale", torch.ones(()))
        self.register_buffer("delta_scale", torch.ones(DELTA_CHANNELS))
        self.register_buffer("gaussian_mean", torch.zeros(GAUSSIAN_CHANNELS))
        self.register_buffer("gaussian_std", torch.ones(GAUSSIAN_CHANNELS))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for head in (self.out, self.anchor_head):  # untrained decoder = identity
            if head is not None:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    # ------------------------------------------------------------------ encoder
    def encode(
        self,
        rest_points: Tensor,  # [B, P, 3] frame-0 mesh points
        displacements: Tensor,  # [B, T, P, 3] point minus its frame-0 position
        anchors: Tensor,  # [B, L, 3] anchor (canonical Gaussian) positions
        neighbours: tuple[Tensor, Tensor],  # from mesh_guided_interpolation, [B, L, K] each
    ) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, [B, T, L, C] each."""
        B, T, P, _ = displacements.shape
        L = anchors.shape[1]
        disp = displacements * self.displacement_scale
        anchor_disp = interpolate(disp, *neighbours)  # [B, T, L, 3]
        points = torch.cat([self.pos_embed(rest_points)[:, None].expand(B, T, P, -1), disp], dim=-1)
        queries = torch.cat([self.pos_embed(anchors)[:, None].expand(B, T, L, -1), anchor_disp], dim=-1)
        bias = None
        if self.encoder_bias is not None:
            bias = self.encoder_bias(anchors, rest_points, anchor_spacing(anchors), repeats=T)
        h = self.encoder(self.query_in(queries).reshape(B * T, L, -1), self.point_in(points).reshape(B * T, P, -1), bias)
        mean, logvar = self.to_moments(h).reshape(B, T, L, -1).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    # ------------------------------------------------------------------ decoder
    def decode(
        self,
        latent: Tensor,  # [B, T, L, C]
        anchors: Tensor,  # [B, L, 3]
        canonical: Gaussians,  # [B, N]
    ) -> Tensor:
        """Deltas [B, T, N, 14] of every canonical Gaussian in every frame."""
        B, T, L, _ = latent.shape
        N = canonical.num
        h = self.latent_in(torch.cat([latent, self.pos_embed(anchors)[:, None].expand(B, T, L, -1)], dim=-1))
        h = h.reshape(B * T, L, -1)
        spacing = anchor_spacing(anchors)
        latent_bias = None if self.latent_bias is None else self.latent_bias(anchors, anchors, spacing, repeats=T)
        for block in self.decoder:
            h = block(h, latent_bias)
        anchor_disp = None
        if self.anchor_head is not None:
            anchor_disp = self.anchor_head(h).reshape(B, T, L, 3)  # one displacement per latent token
        feats = (gaussian_features(canonical) - self.gaussian_mean) / self.gaussian_std
        tokens = self.gaussian_in(torch.cat([feats, self.pos_embed(canonical.means)], dim=-1))  # [B, N, W]
        out = []
        for start in range(0, N, self.config.decode_chunk):
            chunk = tokens[:, start : start + self.config.decode_chunk]
            n = chunk.shape[1]
            x = chunk[:, None].expand(B, T, n, -1).reshape(B * T, n, -1)
            bias = None
            if self.decoder_bias is not None:
                bias = self.decoder_bias(canonical.means[:, start : start + n], anchors, spacing, repeats=T)
            x = self.gaussian_cross(x, h, bias)
            delta = self.out(self.out_norm(x)).reshape(B, T, n, DELTA_CHANNELS)
            if anchor_disp is not None:
                idx, w = mesh_guided_interpolation(canonical.means[:, start : start + n], anchors, self.config.knn, self.config.interp_beta)
                skip = interpolate(anchor_disp, idx, w)  # [B, T, n, 3]
                delta = torch.cat([delta[..., :3] + skip, delta[..., 3:]], dim=-1)
            out.append(delta)
        return torch.cat(out, dim=2) * self.delta_scale

    def forward(self, rest_points, displacements, anchors, neighbours, canonical, noise: Tensor | None = None, sample: bool = True):
        """Encode, sample (``noise`` [B, T, L, C] if given, else fresh, or the mean when
        ``sample`` is False), decode: (deltas, mean, logvar)."""
        mean, logvar = self.encode(rest_points, displacements, anchors, neighbours)
        if noise is None and sample:
            noise = torch.randn_like(mean)
        z = mean if noise is None else mean + noise * torch.exp(0.5 * logvar)
        return self.decode(z, anchors, canonical), mean, logvar


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """Mean KL(N(mean, exp(logvar)) || N(0, 1)) per latent element."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def with_overrides(config: VAEConfig, **overrides) -> VAEConfig:
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


# ---------------------------------------------------------------------- checkpoints
def save_vae(model: GVFVAE, path, extra: dict | None = None):
    """Write weights + statistics + config to one safetensors file."""
    from gvf_core.models.checkpoint import save_model

    return save_model(path, model, "gvf-vae", model.config.to_json(), extra)


def load_vae(path, device="cpu") -> GVFVAE:
    """``from_pretrained``: a VAE file (or a folder holding ``vae.safetensors``), ready for eval."""
    from gvf_core.models.checkpoint import CheckpointError, load_state, read_model

    meta, tensors = read_model(path, "gvf-vae")
    try:
        config = VAEConfig.from_json(meta["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad VAE config in the checkpoint ({exc})") from exc
    model = GVFVAE(config)
    load_state(model, tensors, path)
    return model.to(device).eval()


GVFVAE.from_pretrained = staticmethod(load_vae)
GVFVAE.save_pretrained = save_vae
