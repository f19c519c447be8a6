"""The GVF diffusion transformer (gvf_core/models/dit.py): init, frames, conditions, backbone, checkpoints."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from gvf_core.cameras import Cameras
from gvf_core.models.checkpoint import CheckpointError
from gvf_core.models.dit import DIT_PRESETS, DiTConditions, DiTConfig, GVFDiT, load_dit, save_dit
from gvf_core.models.video_encoder import load_backbone

MICRO = replace(DIT_PRESETS["tiny"], width=32, heads=2, depth=2, num_latents=16, latent_channels=4,
                video_size=16, video_grid=4, canonical_tokens=8)


def conditions(B: int = 2, T: int = 3, seed: int = 0, config: DiTConfig = MICRO, magnitude: bool = True) -> DiTConditions:
    g = torch.Generator().manual_seed(seed)
    S, L, C, M = config.video_size, config.num_latents, config.latent_channels, config.canonical_tokens
    cams = Cameras.orbit(torch.linspace(0, 90, B), distance=2.5)
    K = torch.tensor([[float(S), 0, S / 2], [0, float(S), S / 2], [0, 0, 1.0]])
    return DiTConditions(
        anchors=torch.rand(B, L, 3, generator=g) - 0.5,
        rest_latent=torch.randn(B, L, C, generator=g),
        canonical=torch.randn(B, M, 14, generator=g) * 0.3,
        pixels=torch.rand(B, T, 4, S, S, generator=g),
        K=K.expand(B, 3, 3).clone(),
        world_to_camera=cams.world_to_camera,
        magnitude=torch.rand(B, generator=g) + 0.1 if magnitude else None,
    )


def perturb(model: GVFDiT, std: float = 0.1, seed: int = 0) -> GVFDiT:
    """Give the zero-initialised parameters (adaLN gates, output layer, biases) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.abs().max() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def noisy(cond: DiTConditions, config: DiTConfig = MICRO, seed: int = 1):
    B, T = cond.pixels.shape[:2]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, config.num_latents, config.latent_channels, generator=g), torch.rand(B, generator=g)


def test_untrained_model_predicts_zero_velocity():
    torch.manual_seed(0)
    model = GVFDiT(MICRO)
    cond = conditions()
    ctx = model.encode_conditions(cond)
    x, t = noisy(cond)
    v, gf = model(x, t, ctx, return_hidden=True)
    assert v.shape == x.shape == (2, 3, MICRO.num_latents, MICRO.latent_channels)
    assert v.abs().max() == 0  # adaLN-Zero blocks + zero output layer
    assert gf.shape == (2, 3, MICRO.num_latents, 3) and torch.isfinite(gf).all()
    for name in ("video", "canonical", "tokens_in", "spatial_bias", "video_bias", "log_magnitude", "predicted_log_magnitude"):
        assert torch.isfinite(getattr(ctx, name)).all(), name
    assert ctx.video.shape == (2, 3, MICRO.video_grid ** 2, MICRO.width)
    assert ctx.spatial_bias.shape == (2, MICRO.heads, MICRO.num_latents, MICRO.num_latents)
    assert ctx.video_bias.shape == (2, MICRO.heads, MICRO.num_latents, MICRO.video_grid ** 2)
    # after a perturbation the model is no longer trivially zero
    v = perturb(model)(x, t, ctx)
    assert v.abs().max() > 1e-3 and torch.isfinite(v).all()


def test_no_frame_index_embedding():
    """A static video with the same x in every frame gives the same output in every frame, for any T.

    Temporal attention over identical frames returns their common value whatever the relative
    bias; an absolute frame embedding (or anything sized by a maximum T) would break this.
    """
    torch.manual_seed(0)
    model = perturb(GVFDiT(MICRO)).eval()
    base = conditions(B=1, T=2)
    frame = base.pixels[:, :1]
    x_frame = torch.randn(1, 1, MICRO.num_latents, MICRO.latent_channels, generator=torch.Generator().manual_seed(5))
    outs = {}
    for T in (2, 17, 40):
        cond = replace(base, pixels=frame.expand(1, T, -1, -1, -1).contiguous())
        with torch.no_grad():
            outs[T] = model(x_frame.expand(1, T, -1, -1).contiguous(), torch.tensor([0.6]), model.encode_conditions(cond))
        assert outs[T].shape == (1, T, MICRO.num_latents, MICRO.latent_channels)
        torch.testing.assert_close(outs[T], outs[T][:, :1].expand_as(outs[T]), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(outs[40][:, 0], outs[2][:, 0], atol=2e-5, rtol=1e-4)
    assert outs[2].abs().max() > 1e-3
    # the temporal bias is relative: −slope · |i − j|, Toeplitz for every T
    bias = model.temporal_bias(40, "cpu")[0]
    torch.testing.assert_close(bias[:, 3:, 3:], model.temporal_bias(37, "cpu")[0])
    # but frames do interact: a different video frame changes the other frames' outputs
    cond = replace(base, pixels=frame.expand(1, 17, -1, -1, -1).clone())
    cond.pixels[:, 9] = torch.rand_like(cond.pixels[:, 9])
    with torch.no_grad():
        moved = model(x_frame.expand(1, 17, -1, -1).contiguous(), torch.tensor([0.6]), model.encode_conditions(cond))
    assert (moved[:, 8] - outs[17][:, 8]).abs().max() > 1e-4


def test_dropped_conditions_are_ignored():
    torch.manual_seed(0)
    model = perturb(GVFDiT(MICRO)).eval()
    a = conditions(seed=0)
    other_pixels = replace(a, pixels=conditions(seed=1).pixels)
    other_canonical = replace(a, canonical=conditions(seed=2).canonical)
    x, t = noisy(a)
    B = x.shape[0]
    yes, no = torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
    with torch.no_grad():
        ca, cp, cc = (model.encode_conditions(c) for c in (a, other_pixels, other_canonical))
        # video dropped: the pixels do not matter; kept: they do
        torch.testing.assert_close(model(x, t, ca, yes, no), model(x, t, cp, yes, no), atol=1e-6, rtol=0)
        assert (model(x, t, ca, no, no) - model(x, t, cp, no, no)).abs().max() > 1e-3
        # canonical dropped: the canonical Gaussians do not matter; kept: they do
        torch.testing.assert_close(model(x, t, ca, no, yes), model(x, t, cc, no, yes), atol=1e-6, rtol=0)
        assert (model(x, t, ca, no, no) - model(x, t, cc, no, no)).abs().max() > 1e-3
        # the flags act per sample: dropping sample 0's video leaves sample 1 as before
        mixed = model(x, t, ca, torch.tensor([True, False]), no)
        torch.testing.assert_close(mixed[1], model(x, t, ca, no, no)[1], atol=1e-6, rtol=0)
        torch.testing.assert_close(mixed[0], model(x, t, ca, yes, no)[0], atol=1e-6, rtol=0)
        # dropping the magnitude makes the output independent of it
        other_mag = model.encode_conditions(replace(a, magnitude=a.magnitude * 3))
        torch.testing.assert_close(model(x, t, ca, no, no, yes), model(x, t, other_mag, no, no, yes), atol=1e-6, rtol=0)
        assert (model(x, t, ca) - model(x, t, other_mag)).abs().max() > 1e-4


def test_magnitude_condition():
    torch.manual_seed(0)
    model = perturb(GVFDiT(MICRO)).eval()
    model.log_magnitude_mean.fill_(-0.7)
    model.log_magnitude_std.fill_(1.9)
    predicted = model.encode_conditions(conditions(magnitude=False))
    assert predicted.predicted_log_magnitude.abs().min() > 0  # the head says something
    torch.testing.assert_close(predicted.log_magnitude, predicted.predicted_log_magnitude)
    given = conditions(magnitude=True)
    ctx = model.encode_conditions(given)
    torch.testing.assert_close(ctx.log_magnitude, (torch.log(given.magnitude) + 0.7) / 1.9)
    torch.testing.assert_close(ctx.predicted_log_magnitude, predicted.predicted_log_magnitude)
    torch.testing.assert_close(model.magnitude_from_normalised(ctx.log_magnitude), given.magnitude)


def test_residual_latent_round_trip():
    model = GVFDiT(MICRO)
    model.residual_std.copy_(torch.tensor([0.5, 2.0, 1.0, 0.1]))
    rest = torch.randn(2, MICRO.num_latents, MICRO.latent_channels)
    latent = torch.randn(2, 5, MICRO.num_latents, MICRO.latent_channels)
    residual = model.to_residual(latent, rest)
    torch.testing.assert_close(model.to_latent(residual, rest), latent)
    torch.testing.assert_close(residual[:, :, :, 1], (latent - rest[:, None])[..., 1] / 2.0)


# ------------------------------------------------------------------------------ backbone
class TinyBackbone(nn.Module):
    """[N, 3, S, S] → [N, (S/4)², D] patch tokens, like a ViT without the class token."""

    def __init__(self, dim: int):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.head = nn.Linear(dim, dim)
        self.drop = nn.Dropout(0.5)

    def forward(self, images):
        return self.drop(self.head(self.patch(images).flatten(2).transpose(1, 2)))


def test_backbone_encoder():
    torch.manual_seed(0)
    D = 12
    backbone = TinyBackbone(D)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    config = replace(MICRO, video_encoder="backbone", backbone_dim=D)
    model = GVFDiT(config, backbone)
    for k, v in backbone.state_dict().items():  # initialize_weights left the pretrained weights alone
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in model.video_encoder.backbone.parameters())
    model.train()
    assert not model.video_encoder.backbone.training  # frozen: dropout off even in training
    perturb(model)
    cond = conditions(config=config)
    x, t = noisy(cond, config)
    ctx = model.encode_conditions(cond)
    assert ctx.video.shape == (2, 3, config.video_grid ** 2, config.width)
    v = model(x, t, ctx)
    assert v.shape == x.shape and torch.isfinite(v).all()
    # deterministic despite the Dropout inside the backbone
    torch.testing.assert_close(model.encode_conditions(cond).video, ctx.video)
    v.square().mean().backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert model.video_encoder.proj.weight.grad is not None
    with pytest.raises(ValueError, match="not supported"):
        save_dit(model, "unused.safetensors")
    with pytest.raises(ValueError, match="needs a backbone module"):
        GVFDiT(config)


def test_load_backbone_needs_a_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_backbone(tmp_path / "dinov2-small")


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = perturb(GVFDiT(MICRO)).eval()
    model.residual_std.fill_(0.37)
    model.log_magnitude_mean.fill_(0.2)
    path = save_dit(model, tmp_path / "dit.safetensors", extra={"step": 3})
    loaded = load_dit(tmp_path)  # a folder works too
    assert loaded.config == MICRO and not loaded.training
    assert float(loaded.residual_std[0]) == pytest.approx(0.37)  # statistics travel with the weights
    cond = conditions()
    x, t = noisy(cond)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, loaded.encode_conditions(cond)), model(x, t, model.encode_conditions(cond)),
                                   atol=0, rtol=0)
    assert GVFDiT.from_pretrained(path).config == MICRO
    assert DiTConfig.from_json(MICRO.to_json()) == MICRO


def test_wrong_checkpoints_are_refused(tmp_path):
    from gvf_core.models.checkpoint import save_model
    from gvf_core.models.vae import GVFVAE, VAEConfig, save_vae

    vae = GVFVAE(VAEConfig(width=32, heads=2, num_latents=16, latent_channels=4, num_points=64, decoder_layers=1, pos_freqs=3))
    save_vae(vae, tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="'gvf-vae' checkpoint, expected 'gvf-dit'"):
        load_dit(tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_dit(tmp_path)  # the folder has no dit.safetensors
    bad = tmp_path / "bad.safetensors"
    save_model(bad, GVFDiT(MICRO), "gvf-dit", '{"width": 32, "bogus": 1}')
    with pytest.raises(CheckpointError, match="bad DiT config"):
        load_dit(bad)
    mixed = tmp_path / "mixed.safetensors"
    save_model(mixed, GVFDiT(replace(MICRO, depth=1)), "gvf-dit", MICRO.to_json())
    with pytest.raises(CheckpointError, match="do not match"):
        load_dit(mixed)


def test_presets():
    assert DIT_PRESETS["paper"].num_latents == 512 and DIT_PRESETS["paper"].latent_channels == 16
    assert DiTConfig.from_json(DIT_PRESETS["tiny"].to_json()) == DIT_PRESETS["tiny"]
    with pytest.raises(ValueError, match="unknown video encoder"):
        GVFDiT(replace(MICRO, video_encoder="clip"))
    with pytest.raises(ValueError, match="multiple of the token grid"):
        GVFDiT(replace(MICRO, video_grid=5))
