"""Anchor tracks from optical flow (gvf_core/models/video_tracks.py) and the DiT's track input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from gvf_core.models.dit import DIT_PRESETS, GVFDiT, load_dit, save_dit
from gvf_core.models.video_tracks import (
    DISPLACEMENT_SCALE, TRACK_FEATURES, anchor_tracks, anchor_visibility, clip_tracks, visibility_over_frames,
)
from gvf_core.training.dit import DiTTrainConfig, DiTTrainer, add_tracks, conditions_from_cache, init_from

from test_dit import MICRO, conditions, noisy, perturb
from test_training_dit import synthetic_cache


def textured_clip(T: int = 6, S: int = 64, shift=(1.5, -1.0)) -> torch.Tensor:
    """[T, 4, S, S]: a smooth random texture on a disc that moves by ``shift`` pixels per frame."""
    rng = np.random.default_rng(0)
    coarse = rng.random((8, 8)).astype(np.float32)
    import cv2

    texture = cv2.resize(coarse, (S, S), interpolation=cv2.INTER_CUBIC)
    frames = torch.ones(T, 4, S, S)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
    for t in range(T):
        dx, dy = shift[0] * t, shift[1] * t
        M = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(texture, M, (S, S), borderMode=cv2.BORDER_REFLECT)
        disc = ((xx - S / 2 - dx) ** 2 + (yy - S / 2 - dy) ** 2 < (S * 0.3) ** 2).astype(np.float32)
        frames[t, 3] = torch.from_numpy(disc)
        frames[t, :3] = torch.from_numpy(0.2 + 0.6 * moved)[None] * frames[t, 3] + (1 - frames[t, 3])
    return frames


def test_tracks_follow_a_known_translation():
    T, S, shift = 6, 64, (1.5, -1.0)
    pixels = textured_clip(T, S, shift)
    screen = torch.tensor([[0.45, 0.5], [0.55, 0.45], [0.5, 0.58]])
    tracks = anchor_tracks(pixels, screen, torch.ones(3))
    assert tracks.shape == (T, 3, TRACK_FEATURES)
    assert tracks[0, :, :3].abs().max() == 0  # frame 0 is the rest pose
    for t in range(T):
        expected = torch.tensor(shift) * t / S * DISPLACEMENT_SCALE
        got = tracks[t, :, :2]
        assert (got - expected).norm(dim=-1).max() < 0.3 / S * DISPLACEMENT_SCALE, (t, got, expected)  # < 0.3 px
    assert (tracks[:, :, 3] == 1).all()  # visibility carried through
    assert (tracks[:, :, 4] > 0.9).all()  # the tracked points stay on the object


def test_static_video_gives_zero_tracks():
    pixels = textured_clip(T=4, shift=(0.0, 0.0))
    tracks = anchor_tracks(pixels, torch.tensor([[0.5, 0.5], [0.4, 0.55]]), torch.zeros(2))
    assert tracks[..., :3].abs().max() < 1e-3
    assert (tracks[..., 3] == 0).all()


def test_visibility_depth_test():
    # camera at the origin looking down +z; a wall of points at z = 2 hides what is behind it
    K = torch.tensor([[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]])
    w2c = torch.eye(4)
    g = torch.linspace(-0.4, 0.4, 30)
    wall = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    surface = torch.cat([wall, torch.full((len(wall), 1), 2.0)], -1)
    surface = torch.cat([surface, surface + torch.tensor([0, 0, 0.5])])  # and a back layer
    anchors = torch.tensor([[0.0, 0.0, 2.0], [0.1, -0.1, 2.5], [2.0, 2.0, 3.0]])  # front, behind, off the object
    vis = anchor_visibility(anchors, surface, K, w2c, 64)
    assert vis.tolist() == [1.0, 0.0, 1.0]


def test_visibility_over_frames_follows_a_point_that_goes_behind_the_surface():
    K = torch.tensor([[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]])
    g = torch.linspace(-0.4, 0.4, 30)
    wall = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    surface = torch.cat([wall, torch.full((len(wall), 1), 2.0)], -1)
    surface = torch.cat([surface, surface + torch.tensor([0, 0, 0.5])])
    frames = torch.stack([surface, surface, surface + torch.tensor([1.5, 0, 0])])  # the wall moves aside in frame 2
    point = torch.tensor([[[0.1, 0.0, 1.9]], [[0.1, 0.0, 2.4]], [[0.1, 0.0, 2.4]]])  # in front, then behind
    vis = visibility_over_frames(point, frames, K, torch.eye(4), 64)
    assert vis.shape == (3, 1) and vis[:, 0].tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="number of frames"):
        visibility_over_frames(point[:2], frames, K, torch.eye(4), 64)


def test_clip_tracks_shapes_and_determinism():
    cache = synthetic_cache(n=1)
    px = cache["pixels"][0].float() / 255
    a = clip_tracks(cache["anchors"][0], cache["canonical"][0, :, :3], px, cache["K"][0], cache["w2c"][0])
    b = clip_tracks(cache["anchors"][0], cache["canonical"][0, :, :3], px, cache["K"][0], cache["w2c"][0])
    assert a.shape == (px.shape[0], cache["anchors"].shape[1], TRACK_FEATURES)
    assert torch.equal(a, b)


TRACKS_MICRO = replace(MICRO, tracks=True)


def track_conditions(B=2, T=3, seed=0):
    cond = conditions(B, T, seed, TRACKS_MICRO)
    cond.tracks = torch.randn(B, T, TRACKS_MICRO.num_latents, TRACK_FEATURES, generator=torch.Generator().manual_seed(seed))
    return cond


def test_track_input_starts_as_no_tracks_and_then_matters():
    torch.manual_seed(0)
    plain = perturb(GVFDiT(MICRO))
    with_tracks = GVFDiT(TRACKS_MICRO)
    with_tracks.load_state_dict(plain.state_dict(), strict=False)  # zero-initialised track output
    cond = track_conditions()
    x, t = noisy(cond, TRACKS_MICRO)
    torch.testing.assert_close(with_tracks(x, t, with_tracks.encode_conditions(cond)), plain(x, t, plain.encode_conditions(cond)))
    perturb(with_tracks, seed=3)
    other = track_conditions(seed=5)
    other.pixels, other.anchors = cond.pixels, cond.anchors
    other.rest_latent, other.canonical, other.magnitude = cond.rest_latent, cond.canonical, cond.magnitude
    a = with_tracks(x, t, with_tracks.encode_conditions(cond))
    b = with_tracks(x, t, with_tracks.encode_conditions(other))
    assert (a - b).abs().max() > 1e-4  # the tracks now change the prediction
    drop = torch.tensor([True, True])
    a = with_tracks(x, t, with_tracks.encode_conditions(cond), drop_video=drop)
    b = with_tracks(x, t, with_tracks.encode_conditions(other), drop_video=drop)
    torch.testing.assert_close(a, b)  # dropped with the video: the unconditional branch never sees them


def test_track_model_needs_tracks_and_round_trips(tmp_path):
    model = GVFDiT(TRACKS_MICRO)
    cond = track_conditions()
    cond.tracks = None
    with pytest.raises(ValueError, match="anchor tracks"):
        model.encode_conditions(cond)
    save_dit(perturb(model), tmp_path / "dit.safetensors")
    loaded = load_dit(tmp_path / "dit.safetensors")
    assert loaded.config.tracks and loaded.track_in is not None
    assert not DIT_PRESETS["tiny"].tracks and DIT_PRESETS["tiny-tracks"].tracks


def test_training_with_tracks_from_an_existing_model(tmp_path):
    cache = synthetic_cache(n=2)
    cache = {**cache, "tracks": torch.stack([
        clip_tracks(cache["anchors"][i], cache["canonical"][i, :, :3], cache["pixels"][i].float() / 255, cache["K"][i], cache["w2c"][i])
        for i in range(2)]).half()}
    train = DiTTrainConfig(frames=(16,), batch_size=2, steps=3, warmup_steps=1)
    base = DiTTrainer(MICRO, train, cache)
    base.set_statistics()
    perturb(base.model)
    base.ema.load_state_dict(base.model.state_dict())
    save_dit(base.ema, tmp_path / "base.safetensors")
    trainer = DiTTrainer(TRACKS_MICRO, train, cache)
    trainer.set_statistics()
    info = init_from(trainer, tmp_path / "base.safetensors")
    assert info["new"] and all(k.startswith("track_in") for k in info["new"])
    cond, _ = conditions_from_cache(cache, torch.tensor([0, 1]), 16, MICRO.canonical_tokens)
    assert cond.tracks.shape == (2, 16, MICRO.num_latents, TRACK_FEATURES)
    losses = trainer.train_step()
    assert np.isfinite(losses["flow"])
    assert trainer.model.track_in[-1].weight.abs().max() > 0  # the new input learns
    with pytest.raises(Exception, match="cannot start from this DiT"):
        init_from(DiTTrainer(replace(MICRO, width=16), train, cache), tmp_path / "base.safetensors")


def test_track_cache_is_written_and_reused(tmp_path):
    cache = synthetic_cache(n=2)
    (tmp_path / "latents").mkdir()
    first = add_tracks(tmp_path, "val", cache)
    path = tmp_path / "latents" / f"dit-tracks-val-{cache['pixels'].shape[-1]}.safetensors"
    assert path.exists() and first["tracks"].shape[:3] == (2, 24, MICRO.num_latents)
    stamp = path.stat().st_mtime_ns
    again = add_tracks(tmp_path, "val", cache)
    assert path.stat().st_mtime_ns == stamp and torch.equal(again["tracks"], first["tracks"])
    moved = {**cache, "anchors": cache["anchors"] + 0.05}  # re-encoded data: the stored tracks are stale
    add_tracks(tmp_path, "val", moved)
    assert path.stat().st_mtime_ns != stamp


def test_visibility_surface_is_the_one_the_data_engine_stores():
    from gvf_core.data.encode import CANONICAL_TOKENS
    from gvf_core.models.video_tracks import SURFACE_POINTS, visibility_surface

    assert SURFACE_POINTS == CANONICAL_TOKENS  # the training cache tests against the stored canonical tokens
    means = torch.rand(2000, 3)
    surface = visibility_surface(means)
    assert surface.shape == (SURFACE_POINTS, 3) and visibility_surface(means[:10]).shape == (10, 3)
