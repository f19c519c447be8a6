"""Lifting point tracks to 3-D (gvf_core/models/track_lift.py) and the DiT that denoises from the lift."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gvf_core.cameras import Cameras
from gvf_core.models.dit import DIT_PRESETS, GVFDiT, load_dit, save_dit
from gvf_core.models.track_lift import LIFT_RIGID_RESIDUAL, lift_motion, lift_tracks, lifted_latent
from gvf_core.models.vae import VAE_PRESETS, GVFVAE, encode_points
from gvf_core.models.video_inputs import project
from gvf_core.models.video_tracks import DISPLACEMENT_SCALE, TRACK_FEATURES, clip_tracks
from gvf_core.training.dit import DiTTrainConfig, DiTTrainer, conditions_from_cache, fit_statistics, init_from

from test_dit import MICRO, conditions, noisy, perturb
from test_training_dit import synthetic_cache
from test_video_tracks import textured_clip

LIFT_MICRO = replace(MICRO, tracks=True, base="lift")
S = 64
K = torch.tensor([[80.0, 0, S / 2], [0, 80.0, S / 2], [0, 0, 1.0]])


def _features(pixel_motion: torch.Tensor) -> torch.Tensor:
    """Track features [T, P, TRACK_FEATURES] of a pixel displacement [T, P, 2] (S-pixel crop)."""
    feats = torch.zeros(*pixel_motion.shape[:2], TRACK_FEATURES)
    feats[..., :2] = pixel_motion / S * DISPLACEMENT_SCALE
    return feats


def test_lift_is_exact_in_the_image_plane_and_blind_to_depth():
    g = torch.Generator().manual_seed(0)
    w2c = Cameras.orbit([35.0], elevation_deg=20.0, distance=2.5).world_to_camera[0]
    R, t = w2c[:3, :3], w2c[:3, 3]
    points = torch.rand(20, 3, generator=g) - 0.5
    T = 4
    # motion parallel to the image plane (camera x, y), each point at its own depth
    in_plane = torch.zeros(T, 20, 3)
    in_plane[1:, :, :2] = torch.randn(T - 1, 20, 2, generator=g) * 0.05
    truth = in_plane @ R  # camera → model frame
    moved = points[None] + truth
    pixels = torch.stack([project(moved[f], K, w2c, S) for f in range(T)]) * S
    lifted = lift_tracks(points, _features(pixels - pixels[:1]), K, w2c, S)
    torch.testing.assert_close(lifted, truth, atol=1e-5, rtol=0)
    # motion along each point's viewing ray leaves its pixel where it was: the lift sees none of it
    ray = (points @ R.T + t)
    ray = ray / ray.norm(dim=-1, keepdim=True)
    along = points[None] + (torch.linspace(0, 0.2, T)[:, None, None] * ray[None]) @ R
    pixels = torch.stack([project(along[f], K, w2c, S) for f in range(T)]) * S
    assert lift_tracks(points, _features(pixels - pixels[:1]), K, w2c, S).abs().max() < 1e-5


def test_lift_of_a_flow_tracked_translation():
    """A textured disc moving 1.5 px right and 1 px up per frame, seen by a camera looking down +z
    at depth 2: the lift moves points on it by 1.5·2/80 and −1·2/80 per frame in x and y."""
    T, shift = 6, (1.5, -1.0)
    pixels = textured_clip(T, S, shift)
    w2c = torch.eye(4)
    uv = torch.tensor([[0.45, 0.5], [0.55, 0.45], [0.5, 0.58], [0.42, 0.42]]) * S
    depth = 2.0
    points = torch.cat([(uv - K[:2, 2]) / K[0, 0] * depth, torch.full((4, 1), depth)], -1)
    tracks = clip_tracks(points, points, pixels, K, w2c)
    lifted = lift_tracks(points, tracks, K, w2c, S)
    for f in range(T):
        expected = torch.tensor([shift[0] * f, shift[1] * f, 0.0]) * depth / K[0, 0]
        error_px = (lifted[f] - expected).norm(dim=-1).max() * K[0, 0] / depth
        assert error_px < 0.3, (f, lifted[f], expected)


def test_lifted_latent_is_the_vae_encoding_of_the_scaled_lift():
    torch.manual_seed(0)
    vae = GVFVAE(replace(VAE_PRESETS["tiny"], width=32, heads=2, num_latents=8, latent_channels=4, num_points=64,
                         decoder_layers=1, pos_freqs=2)).eval()
    g = torch.Generator().manual_seed(1)
    points = torch.rand(64, 3, generator=g) - 0.5
    anchors = points[:8]
    displacement = torch.randn(5, 64, 3, generator=g) * 0.05
    displacement[0] = 0
    lifted = lifted_latent(vae, points, anchors, displacement, scale=2.0)
    torch.testing.assert_close(lifted, encode_points(vae, points, anchors, 2.0 * displacement))
    assert lifted.shape == (5, 8, 4)
    still = encode_points(vae, points, anchors, torch.zeros(1, 64, 3))
    torch.testing.assert_close(lifted[0], still[0])  # frame 0 of the lift is the rest latent


def _exact_tracks(points, moved, w2c):
    """Track features of points moving to ``moved`` [T, P, 3], all visible, on the object."""
    pixels = torch.stack([project(m, K, w2c, S) for m in moved]) * S
    feats = _features(pixels - pixels[:1])
    feats[..., 3:] = 1
    return feats


def test_lift_takes_the_rigid_transform_when_it_explains_the_tracks():
    """A box turning 25° about its vertical axis while it moves toward the camera: the plane lift
    sees no depth; the rigid transform, fitted to the tracks, recovers it."""
    g = torch.Generator().manual_seed(2)
    points = (torch.rand(1024, 3, generator=g) - 0.5) * torch.tensor([0.8, 0.4, 1.0])
    w2c = Cameras.orbit([20.0], elevation_deg=15.0, distance=2.5).world_to_camera[0]
    T = 12
    angle = torch.linspace(0, 25, T) * torch.pi / 180
    c, s_ = torch.cos(angle), torch.sin(angle)
    R = torch.zeros(T, 3, 3)
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s_, s_, c, 1
    toward = -w2c[2, :3] * torch.linspace(0, 0.3, T)[:, None]  # along the camera's −z, in the model frame
    moved = torch.einsum("tij,pj->tpi", R, points) + toward[:, None]
    truth = moved - points[None]
    tracks = _exact_tracks(points, moved, w2c)
    lifted = lift_motion(points, tracks, K, w2c, S)
    plane = lift_tracks(points, tracks, K, w2c, S)
    assert lifted.rigid["used"] and lifted.rigid["residual_px"] < 0.05 * lifted.rigid["motion_px"]
    error = (lifted.displacement - truth).norm(dim=-1).mean()
    plane_error = (plane - truth).norm(dim=-1).mean()
    assert error < 0.15 * plane_error, (error, plane_error)
    # a slight bend on top of the same motion: the fit leaves 11.5–15 % of the tracked motion,
    # where most training clips deform (LIFT_RIGID_RESIDUAL): the plane lift, unless asked for 15 %
    slight = moved + torch.linspace(0, 1, T)[:, None, None] * torch.stack(
        [0.18 * points[:, 2] ** 2, torch.zeros(1024), torch.zeros(1024)], -1)[None]
    tracks = _exact_tracks(points, slight, w2c)
    lifted = lift_motion(points, tracks, K, w2c, S)
    assert LIFT_RIGID_RESIDUAL < lifted.rigid["residual_px"] / lifted.rigid["motion_px"] < 0.15
    assert not lifted.rigid["used"]
    torch.testing.assert_close(lifted.displacement, lift_tracks(points, tracks, K, w2c, S))
    taken = lift_motion(points, tracks, K, w2c, S, residual=0.15)
    assert taken.rigid["used"]
    # the fitted transform comes back used or not (scripts/lift_rigid_probe.py applies it to other points)
    with torch.no_grad():
        torch.testing.assert_close(lifted.root.apply(points[None].expand(T, -1, -1), torch.arange(T))[1:],
                                   points[None] + taken.displacement[1:])
    # a bend is not one rigid motion: the plane lift stays
    bent = points[None] + torch.linspace(0, 1, T)[:, None, None] * torch.stack(
        [0.3 * points[:, 2] ** 2 * 4, torch.zeros(1024), torch.zeros(1024)], -1)[None]
    tracks = _exact_tracks(points, bent, w2c)
    lifted = lift_motion(points, tracks, K, w2c, S)
    assert not lifted.rigid["used"]
    torch.testing.assert_close(lifted.displacement, lift_tracks(points, tracks, K, w2c, S))


def lift_conditions(B=2, T=3, seed=0):
    cond = conditions(B, T, seed, LIFT_MICRO)
    g = torch.Generator().manual_seed(seed + 10)
    cond.tracks = torch.randn(B, T, LIFT_MICRO.num_latents, TRACK_FEATURES, generator=g)
    cond.base_latent = cond.rest_latent[:, None] + torch.randn(B, T, LIFT_MICRO.num_latents, LIFT_MICRO.latent_channels, generator=g)
    cond.base_latent[:, 0] = cond.rest_latent
    return cond


def test_a_lift_dit_starts_as_the_tracks_dit_and_denoises_from_the_lift(tmp_path):
    torch.manual_seed(0)
    tracks_model = perturb(GVFDiT(replace(MICRO, tracks=True)))
    model = GVFDiT(LIFT_MICRO)
    model.load_state_dict(tracks_model.state_dict(), strict=False)  # base input zero-initialised
    cond = lift_conditions()
    x, t = noisy(cond, LIFT_MICRO)
    torch.testing.assert_close(model(x, t, model.encode_conditions(cond)),
                               tracks_model(x, t, tracks_model.encode_conditions(cond)))
    # the residual is taken from the lift, frame by frame
    latent = torch.randn_like(cond.base_latent)
    residual = model.to_residual(latent, model.base_of(cond))
    torch.testing.assert_close(residual, latent - cond.base_latent)
    torch.testing.assert_close(model.to_latent(residual, model.base_of(cond)), latent)
    # once trained, the base input matters, and it is the state: dropping the video keeps it
    perturb(model, seed=3)
    other = lift_conditions()
    other.base_latent = cond.base_latent + 0.5
    drop = torch.tensor([True, True])
    a = model(x, t, model.encode_conditions(cond), drop_video=drop)
    b = model(x, t, model.encode_conditions(other), drop_video=drop)
    assert (a - b).abs().max() > 1e-4
    save_dit(model, tmp_path / "dit.safetensors")
    assert load_dit(tmp_path / "dit.safetensors").config.base == "lift"
    assert DIT_PRESETS["tiny-lift"].base == "lift" and DIT_PRESETS["tiny-lift"].tracks


def test_a_lift_dit_needs_the_lift_and_a_known_base():
    model = GVFDiT(LIFT_MICRO)
    cond = lift_conditions()
    cond.base_latent = None
    with pytest.raises(ValueError, match="lifted latent"):
        model.encode_conditions(cond)
    with pytest.raises(ValueError, match="unknown DiT base"):
        GVFDiT(replace(MICRO, base="mean"))


def _lift_cache(n=2):
    cache = synthetic_cache(n=n)
    noise = torch.randn(cache["latent"].shape, generator=torch.Generator().manual_seed(4)) * 0.1
    lift = cache["latent"] + noise  # a lift close to the truth
    lift[:, 0] = cache["latent"][:, 0]
    tracks = torch.zeros(n, cache["latent"].shape[1], MICRO.num_latents, TRACK_FEATURES)
    return {**cache, "lift": lift, "tracks": tracks.half()}


def test_training_a_lift_dit_from_a_tracks_dit(tmp_path):
    cache = _lift_cache()
    train = DiTTrainConfig(frames=(16,), batch_size=2, steps=3, warmup_steps=1)
    stats = fit_statistics(GVFDiT(LIFT_MICRO), cache)
    from_rest = fit_statistics(GVFDiT(replace(MICRO, tracks=True)), cache)
    # the lift residual is the small noise, not the motion
    assert max(stats["residual_std"]) < 0.2 < min(from_rest["residual_std"])
    source = DiTTrainer(replace(MICRO, tracks=True), train, cache)
    source.set_statistics()
    perturb(source.model)
    source.ema.load_state_dict(source.model.state_dict())
    save_dit(source.ema, tmp_path / "tracks.safetensors")
    trainer = DiTTrainer(LIFT_MICRO, train, cache)
    trainer.set_statistics()
    info = init_from(trainer, tmp_path / "tracks.safetensors")
    assert info["new"] == ["base_in.bias", "base_in.weight"]
    # this run's fitted statistics, not the file's
    torch.testing.assert_close(trainer.model.residual_std, torch.tensor(stats["residual_std"]))
    torch.testing.assert_close(trainer.ema.residual_std, torch.tensor(stats["residual_std"]))
    cond, _ = conditions_from_cache(cache, torch.tensor([0, 1]), 16, MICRO.canonical_tokens)
    assert cond.base_latent.shape == (2, 16, MICRO.num_latents, MICRO.latent_channels)
    losses = trainer.train_step()
    assert torch.isfinite(torch.tensor(losses["flow"]))
    assert trainer.model.base_in.weight.abs().max() > 0  # the base input learns
