"""Training the DiT (gvf_core/training/dit.py): temporal length, dropout, Geometry Forcing, overfit, resume, DDP."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp

from gvf_core.cameras import Cameras
from gvf_core.models.dit import DIT_PRESETS, load_dit
from gvf_core.training.dit import (
    DiTTrainConfig, DiTTrainer, conditions_from_cache, dit_losses, fit_statistics, geometry_forcing_losses,
)

MICRO = replace(DIT_PRESETS["tiny"], width=32, heads=2, depth=2, num_latents=16, latent_channels=4,
                video_size=16, video_grid=4, canonical_tokens=8)
FRAMES = 24  # what the data engine writes per sample


def synthetic_cache(n: int = 4, seed: int = 0, config=MICRO) -> dict[str, torch.Tensor]:
    """The keys and layouts ``build_cache`` returns, with latents that follow the video's motion."""
    g = torch.Generator().manual_seed(seed)
    L, C, M, S = config.num_latents, config.latent_channels, config.canonical_tokens, config.video_size
    anchors = torch.rand(n, L, 3, generator=g) - 0.5
    speed = torch.randn(n, 1, 1, 3, generator=g) * 0.02
    phase = torch.arange(FRAMES, dtype=torch.float32)[None, :, None, None]
    motion = speed * phase * (anchors[:, None, :, :1] + 0.5)  # [n, T, L, 3], zero at frame 0
    rest = torch.randn(n, L, C, generator=g)
    mix = torch.randn(3, C, generator=g)
    latent = rest[:, None] + motion @ mix * 5.0
    pixels = torch.full((n, FRAMES, 4, S, S), 255, dtype=torch.uint8)
    pixels[:, :, 3] = 0
    for i in range(n):  # a square that moves with the clip's speed
        for t in range(FRAMES):
            x0 = int(4 + (t * speed[i, 0, 0, 0] * 20).clamp(-3, 6))
            pixels[i, t, :3, 5:11, x0:x0 + 6] = torch.tensor([200, 40 * i, 30], dtype=torch.uint8)[:, None, None]
            pixels[i, t, 3, 5:11, x0:x0 + 6] = 255
    cams = Cameras.orbit(torch.linspace(0, 270, n), elevation_deg=15.0, distance=2.5)
    K = torch.tensor([[float(S), 0, S / 2], [0, float(S), S / 2], [0, 0, 1.0]])
    return {
        "latent": latent.float(),
        "anchors": anchors,
        "anchor_motion": motion.float(),
        "canonical": torch.randn(n, M, 14, generator=g) * 0.3,
        "magnitude": speed.norm(dim=-1).reshape(n) * FRAMES + 0.05,
        "pixels": pixels,
        "K": K.expand(n, 3, 3).clone(),
        "w2c": cams.world_to_camera,
        "seed": torch.arange(n),
    }


@pytest.fixture(scope="module")
def cache():
    return synthetic_cache()


def perturb(model, std: float = 0.1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.abs().max() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def test_temporal_attention_sees_sixteen_frames(cache):
    train = DiTTrainConfig(frames=(16,), batch_size=2, warmup_steps=1)
    trainer = DiTTrainer(MICRO, train, cache)
    trainer.set_statistics()
    shapes = []
    hooks = [block.temporal.register_forward_pre_hook(lambda mod, args, kwargs: shapes.append(tuple(args[0].shape)), with_kwargs=True)
             for block in trainer.model.blocks]
    try:
        out = trainer.train_step()
    finally:
        for h in hooks:
            h.remove()
    assert out["frames"] == 16
    assert len(shapes) == MICRO.depth
    for shape in shapes:
        assert shape == (train.batch_size * MICRO.num_latents, 16, MICRO.width)  # [B*L, T, W]


def test_default_frames_are_at_least_sixteen():
    assert min(DiTTrainConfig().frames) >= 16
    with pytest.raises(ValueError, match="at least 2 frames"):
        DiTTrainConfig(frames=(1, 16))


def test_condition_dropout(cache):
    torch.manual_seed(0)
    trainer = DiTTrainer(MICRO, DiTTrainConfig(), cache)
    trainer.set_statistics()
    model = perturb(trainer.model, std=0.3).eval()
    index = torch.tensor([0, 1])
    cond, latent = conditions_from_cache(cache, index, 16, MICRO.canonical_tokens)
    motion = cache["anchor_motion"][index, :16]
    other = replace(cond, pixels=torch.rand(cond.pixels.shape, generator=torch.Generator().manual_seed(9)))

    def losses(c, p):
        train = DiTTrainConfig(p_drop_video=p, p_drop_canonical=p, p_drop_magnitude=p)
        with torch.no_grad():
            return {k: float(v) for k, v in dit_losses(model, c, latent, motion, train, torch.Generator().manual_seed(4)).items()}

    dropped, dropped_other = losses(cond, 1.0), losses(other, 1.0)
    for key in ("flow", "gf_angle", "gf_scale"):
        assert dropped[key] == pytest.approx(dropped_other[key], rel=1e-5, abs=1e-7), key
    kept, kept_other = losses(cond, 0.0), losses(other, 0.0)
    assert abs(kept["flow"] - kept_other["flow"]) > 1e-4
    assert abs(kept["gf_angle"] - kept_other["gf_angle"]) > 1e-5
    assert kept["flow"] != pytest.approx(dropped["flow"], rel=1e-4)  # the null tokens are a different input
    # the magnitude head reads the video whatever is dropped (it is trained on every clip)
    assert dropped["magnitude"] != pytest.approx(dropped_other["magnitude"], rel=1e-5)


def test_geometry_forcing_losses():
    g = torch.Generator().manual_seed(0)
    motion = torch.randn(2, 5, 7, 3, generator=g)
    motion[:, 0] = 0  # frame 0 is the rest pose
    angle, scale = geometry_forcing_losses(motion.clone(), motion)
    assert float(angle) == pytest.approx(0.0, abs=1e-6) and float(scale) == pytest.approx(0.0, abs=1e-10)
    angle, scale = geometry_forcing_losses(-motion, motion)
    assert float(angle) == pytest.approx(2.0, rel=1e-5)  # (1 − cos) = 2, norm-weighted mean of the weights is 1
    assert float(scale) == pytest.approx(0.0, abs=1e-10)
    angle, scale = geometry_forcing_losses(2 * motion, motion)
    assert float(angle) == pytest.approx(0.0, abs=1e-6)
    assert float(scale) == pytest.approx(float(motion[:, 1:].norm(dim=-1).pow(2).mean()), rel=1e-5)
    # frame 0 of the prediction is ignored
    pred = motion.clone()
    pred[:, 0] = torch.randn(2, 7, 3, generator=g)
    assert float(sum(geometry_forcing_losses(pred, motion))) == pytest.approx(0.0, abs=1e-6)
    # a wrong direction on a large displacement costs more than on a small one
    norms = motion[:, 1:].norm(dim=-1)
    flip_big, flip_small = motion.clone(), motion.clone()
    flip_big[:, 1:][norms == norms.max()] *= -1
    flip_small[:, 1:][norms == norms.min()] *= -1
    assert geometry_forcing_losses(flip_big, motion)[0] > 5 * geometry_forcing_losses(flip_small, motion)[0] > 0


def test_statistics_are_fitted(cache):
    trainer = DiTTrainer(MICRO, DiTTrainConfig(), cache)
    stats = fit_statistics(trainer.model, cache)
    residual = cache["latent"][:, 1:] - cache["latent"][:, :1]
    torch.testing.assert_close(trainer.model.residual_std, residual.reshape(-1, MICRO.latent_channels).std(0))
    assert stats["motion_scale"] == pytest.approx(float(cache["anchor_motion"].std()), rel=1e-5)


def test_overfit_ema_and_resume(tmp_path, cache):
    small = {k: v[:2] for k, v in cache.items()}
    train = DiTTrainConfig(frames=(16,), batch_size=2, lr=3e-3, warmup_steps=2, steps=40, ema_decay=0.9, seed=0)
    trainer = DiTTrainer(MICRO, train, small)
    trainer.set_statistics()
    init = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    index = torch.tensor([0, 1])
    cond, latent = conditions_from_cache(small, index, 16, MICRO.canonical_tokens)
    motion = small["anchor_motion"][index, :16]
    eval_train = replace(train, p_drop_video=0.0, p_drop_canonical=0.0, p_drop_magnitude=0.0)

    def flow_loss():  # fixed times and noises: the same loss function before and after
        with torch.no_grad():
            return sum(float(dit_losses(trainer.model, cond, latent, motion, eval_train, torch.Generator().manual_seed(s))["flow"])
                       for s in range(4)) / 4

    before = flow_loss()
    for _ in range(40):
        trainer.train_step()
    after = flow_loss()
    assert after < 0.75 * before, (before, after)
    assert trainer.step == 40

    # the EMA lags the model: between the initial and the current weights
    name = "blocks.0.modulation.weight"
    ema, model = trainer.ema.state_dict()[name], trainer.model.state_dict()[name]
    assert (ema - model).abs().max() > 1e-4 and (ema - init[name]).abs().max() > 1e-4

    trainer.save(tmp_path)
    published = load_dit(tmp_path)  # the published weights are the EMA, loadable without the trainer
    for k, v in trainer.ema.state_dict().items():
        assert torch.equal(published.state_dict()[k], v), k
    torch.testing.assert_close(published.residual_std, trainer.model.residual_std)  # statistics travel with it

    again = DiTTrainer(MICRO, train, small)
    assert again.resume(tmp_path) and again.step == 40
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v), k
    for k, v in trainer.ema.state_dict().items():
        assert torch.equal(again.ema.state_dict()[k], v), k
    a, b = trainer.train_step(), again.train_step()  # optimizer moments and step came back too
    assert a["total"] == pytest.approx(b["total"], rel=1e-6) and a["lr"] == b["lr"]
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v, atol=1e-6, rtol=1e-5, msg=k)


# ------------------------------------------------------------------------------ DDP
def _ddp_worker(rank, world, init_file, cache, result_path):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        train = DiTTrainConfig(frames=(16,), batch_size=2, lr=1e-3, warmup_steps=1, ema_decay=0.5)
        trainer = DiTTrainer(MICRO, train, cache)
        assert trainer.distributed
        trainer.set_statistics()
        losses = [trainer.train_step()["flow"] for _ in range(2)]
        from safetensors.torch import save_file

        state = {k: v.detach().clone().contiguous() for k, v in trainer.model.state_dict().items()}
        state["_losses"] = torch.tensor(losses)
        save_file(state, f"{result_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_stay_in_sync(tmp_path, cache):
    result = tmp_path / "ddp.safetensors"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), cache, str(result)), nprocs=2, join=True)
    from safetensors.torch import load_file

    r0, r1 = load_file(f"{result}.0"), load_file(f"{result}.1")
    # every rank drew its own batches (different losses) ...
    assert not torch.allclose(r0.pop("_losses"), r1.pop("_losses"))
    # ... yet the averaged gradients leave both with the same weights, which did move
    torch.manual_seed(0)
    init = DiTTrainer(MICRO, DiTTrainConfig(frames=(16,), batch_size=2), cache).model.state_dict()
    moved = 0
    for k, v in r0.items():
        torch.testing.assert_close(r1[k], v, atol=0, rtol=0, msg=k)
        if v.is_floating_point() and not k.endswith(("_std", "_mean", "motion_scale")):
            moved += int(not torch.equal(v, init[k]))
    assert moved > 10


def test_training_times_cover_the_high_noise_end():
    from gvf_core.training.dit import sample_times

    gen = torch.Generator().manual_seed(0)
    t = sample_times(20000, 0.5, gen)
    assert float(t.min()) > 0 and float(t.max()) < 1
    assert 0.11 < float((t > 0.95).float().mean()) < 0.14  # a quarter of the U(0.8, 1) half: 12.5 %
    t0 = sample_times(20000, 0.0, torch.Generator().manual_seed(0))
    assert float((t0 > 0.95).float().mean()) < 0.01  # logit-normal alone hardly ever gets there
