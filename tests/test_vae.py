"""The Gaussian Variation Field VAE: shapes, identity at init, interpolation, checkpoints, DDP."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from gvf_core.data.make import make_sample
from gvf_core.data.sample import SampleConfig
from gvf_core.models.checkpoint import CheckpointError
from gvf_core.models.vae import (
    VAE_PRESETS, GVFVAE, VAEConfig, apply_deltas, load_vae, mesh_guided_interpolation, save_vae,
)
from gvf_core.models.vae_inputs import prepare_sample, stack
from gvf_core.training.vae import VAETrainConfig, VAETrainer

MICRO = VAEConfig(width=32, heads=2, num_latents=16, latent_channels=4, num_points=256, decoder_layers=1, pos_freqs=3, decode_chunk=100)
DATA = SampleConfig(frames=6, num_gaussians=256, num_points=512, image_size=32, extra_views=1, extra_frames=2)


@pytest.fixture(scope="module")
def samples():
    out = []
    for seed in range(4):
        arrays, meta = make_sample(seed, DATA)
        arrays["meta"] = meta
        out.append(arrays)
    return out


def batch_of(samples, config=MICRO):
    return stack([prepare_sample(s, config.num_latents, config.num_points, config.knn, config.interp_beta) for s in samples])


def test_shapes_and_chunked_decoding(samples):
    model = GVFVAE(MICRO)
    b = batch_of(samples[:2])
    deltas, mean, logvar = model(b.rest_points, b.displacements, b.anchors, b.neighbours, b.canonical, sample=False)
    T, n = b.deltas.shape[1], b.canonical.num
    assert mean.shape == logvar.shape == (2, T, MICRO.num_latents, MICRO.latent_channels)
    assert deltas.shape == (2, T, n, 14)
    # chunking (100 Gaussians per chunk here) gives the same result as one chunk
    whole = GVFVAE(replace(MICRO, decode_chunk=10_000))
    whole.load_state_dict(model.state_dict())
    torch.nn.init.normal_(model.out.weight, std=0.1)
    whole.out.weight.data.copy_(model.out.weight.data)
    z = torch.randn_like(mean)
    torch.testing.assert_close(model.decode(z, b.anchors, b.canonical), whole.decode(z, b.anchors, b.canonical))


def test_untrained_decoder_is_identity(samples):
    model = GVFVAE(MICRO)
    b = batch_of(samples[:2])
    deltas, _, _ = model(b.rest_points, b.displacements, b.anchors, b.neighbours, b.canonical)
    assert deltas.abs().max() == 0
    frames = apply_deltas(b.canonical, deltas)
    torch.testing.assert_close(frames.means, b.canonical.means[:, None].expand_as(frames.means))


def test_interpolation_weights_hand_computed():
    # one anchor at the origin; points at distances 1, 2, 3 (K = 3)
    anchors = torch.zeros(1, 1, 3)
    points = torch.tensor([[[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [10.0, 0, 0]]])
    idx, w = mesh_guided_interpolation(anchors, points, k=3, beta=7.0)
    assert idx[0, 0].tolist() == [0, 1, 2]
    r2 = (1 + 4 + 9) / 3  # mean squared distance; the point at distance 3 (d² = 9 > r²) is dropped
    raw = [math.exp(-7 * 1 / r2), math.exp(-7 * 4 / r2), 0.0]
    expected = torch.tensor(raw) / sum(raw)
    torch.testing.assert_close(w[0, 0], expected)


def test_checkpoint_round_trip(tmp_path, samples):
    trainer = VAETrainer(MICRO, VAETrainConfig(batch_size=2, warmup_steps=1), "cpu")
    trainer.set_statistics(samples)
    trainer.train_step(samples[:2])
    path = save_vae(trainer.ema, tmp_path / "vae.safetensors")
    loaded = load_vae(tmp_path)  # a folder works too
    assert loaded.config == MICRO
    for (k, a), (_, b) in zip(trainer.ema.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert float(loaded.displacement_scale) != 1.0  # statistics travel with the weights
    assert GVFVAE.from_pretrained(path).config == MICRO


def test_bad_and_mismatched_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_vae(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        load_vae(garbage)
    # weights of one size under the config of another
    from gvf_core.models.checkpoint import save_model

    bigger = GVFVAE(replace(MICRO, width=64))
    mixed = tmp_path / "mixed.safetensors"
    save_model(mixed, bigger, "gvf-vae", MICRO.to_json())
    with pytest.raises(CheckpointError, match="do not match"):
        load_vae(mixed)
    # another kind of checkpoint
    other = tmp_path / "other.safetensors"
    save_model(other, GVFVAE(MICRO), "gvf-dit", MICRO.to_json())
    with pytest.raises(CheckpointError, match="gvf-dit"):
        load_vae(other)


def test_training_reduces_loss_and_resumes(tmp_path, samples):
    # all frames and Gaussians, posterior mean: the loss is deterministic, so its drop is real
    train = VAETrainConfig(batch_size=4, lr=3e-3, warmup_steps=2, steps=40, frames_per_sample=100,
                           gaussians_per_sample=100_000, sample_posterior=False)
    trainer = VAETrainer(MICRO, train, "cpu")
    trainer.set_statistics(samples)
    first = trainer.train_step(samples)["position"]
    for _ in range(35):
        last = trainer.train_step(samples)["position"]
    assert last < 0.8 * first
    trainer.save(tmp_path)
    again = VAETrainer(MICRO, train, "cpu")
    assert again.resume(tmp_path) and again.step == trainer.step
    a, b = trainer.train_step(samples), again.train_step(samples)
    assert a["total"] == pytest.approx(b["total"], rel=1e-6)


def test_presets():
    assert VAE_PRESETS["paper"].width == 768 and VAE_PRESETS["paper"].num_latents == 512
    assert VAE_PRESETS["paper"].latent_channels == 16 and VAE_PRESETS["paper"].decoder_layers == 12
    assert VAEConfig.from_json(VAE_PRESETS["tiny"].to_json()) == VAE_PRESETS["tiny"]
    with pytest.raises(ValueError, match="unknown fields"):
        VAEConfig.from_json('{"width": 8, "bogus": 1}')


# ------------------------------------------------------------------------- DDP
def _ddp_worker(rank, world, init_file, samples, result_path):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        train = VAETrainConfig(batch_size=2, lr=1e-3, warmup_steps=1, frames_per_sample=3, gaussians_per_sample=64, ema_decay=0.0)
        trainer = VAETrainer(MICRO, train, "cpu")
        trainer.set_statistics(samples)
        half = samples[rank * 2 : rank * 2 + 2]
        for _ in range(3):
            trainer.train_step(half)
        if rank == 0:
            from safetensors.torch import save_file

            save_file({k: v.detach().clone().contiguous() for k, v in trainer.model.state_dict().items()}, result_path)
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_one_process_with_double_batch(tmp_path, samples):
    result = tmp_path / "ddp.safetensors"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), samples, str(result)), nprocs=2, join=True)
    from safetensors.torch import load_file

    ddp_state = load_file(str(result))

    torch.set_num_threads(1)
    train = VAETrainConfig(batch_size=4, lr=1e-3, warmup_steps=1, frames_per_sample=3, gaussians_per_sample=64, ema_decay=0.0)
    single = VAETrainer(MICRO, train, "cpu")
    single.set_statistics(samples)
    for _ in range(3):
        single.train_step(samples)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp_state[k], v, atol=1e-5, rtol=1e-4, msg=k)


def test_render_loss_path_gives_gradients(samples):
    config = replace(MICRO, w_render=1.0)
    trainer = VAETrainer(config, VAETrainConfig(batch_size=2, warmup_steps=1, frames_per_sample=2, gaussians_per_sample=64, render_size=24), "cpu")
    trainer.set_statistics(samples)
    losses = trainer.train_step(samples[:2])
    assert losses["render"] >= 0 and np.isfinite(losses["total"])
