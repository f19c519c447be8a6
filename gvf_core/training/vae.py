"""Training the GVF VAE: ``gvf train vae --preset tiny --data DIR --out DIR``.

AdamW with linear warm-up then cosine decay, EMA of the weights, gradient clipping,
bf16 autocast on CUDA, resumable checkpoints (safetensors), a progress bar and a
JSON-lines loss log. Runs as one process or under ``torchrun`` (DDP; gloo on CPU,
nccl on CUDA): every rank reads its own part of the shards, gradients are averaged.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from gvf_core.cameras import Cameras
from gvf_core.metrics import ssim
from gvf_core.models.vae import (
    VAE_PRESETS, GVFVAE, VAEConfig, apply_deltas, interpolate, kl_divergence, load_vae, save_vae,
)
from gvf_core.models.vae_inputs import VAEBatch, prepare_sample, stack
from gvf_core.render import rasterize
from gvf_core.training.common import autocast_for, optimize, resume_checkpoint, save_checkpoint, warmup_cosine


@dataclass(frozen=True)
class VAETrainConfig:
    """Optimisation settings of :func:`train_vae` (the model's own settings are in VAEConfig)."""

    steps: int = 2000
    """Optimizer steps."""
    batch_size: int = 4
    """Samples per step per process."""
    lr: float = 5e-4
    """Peak learning rate (the paper's 5e-5 is for width 768 on 8 GPUs)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear warm-up steps; cosine decay to 10 % afterwards."""
    ema_decay: float = 0.999
    """EMA decay of the weights that are saved."""
    grad_clip: float = 1.0
    """Gradient norm clip."""
    frames_per_sample: int = 8
    """Random frames per sample per step (the VAE is per-frame)."""
    gaussians_per_sample: int = 1024
    """Random canonical Gaussians decoded per sample per step (plus the anchors)."""
    sample_posterior: bool = True
    """Decode a posterior sample (True) or its mean."""
    render_size: int = 64
    """Render-loss image size (only when the model's w_render > 0)."""
    stats_samples: int = 32
    """Training samples used to fit the normalisation statistics."""
    seed: int = 0
    """Data order and subset seed."""
    log_every: int = 10
    """Steps between loss-log lines."""
    checkpoint_every: int = 250
    """Steps between checkpoints."""

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------- losses
def render_loss(pred, target, size: int, ssim_weight: float, generator: torch.Generator) -> Tensor:
    """L1 + w·(1 − SSIM) between renders of predicted and exact Gaussians from a random view."""
    az = float(torch.rand((), generator=generator) * 360.0)
    cams = Cameras.orbit([az], elevation_deg=20.0, distance=2.6, fov_deg=40.0, width=size, height=size)
    a = rasterize(pred, cams, size, size, background=1.0, backend="auto").rgb
    with torch.no_grad():
        b = rasterize(target, cams, size, size, background=1.0, backend="auto").rgb
    return (a - b).abs().mean() + ssim_weight * (1 - ssim(a, b))


def _at_anchors(values: Tensor, anchor_index: Tensor) -> Tensor:
    """values [B, T, n, D], anchor_index [B, L] → [B, T, L, D]."""
    B, T, _, D = values.shape
    L = anchor_index.shape[1]
    return torch.gather(values, 2, anchor_index[:, None, :, None].expand(B, T, L, D))


def vae_losses(model: torch.nn.Module, batch: VAEBatch, config: VAEConfig, noise: Tensor | None,
               render_size: int = 64, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    deltas, mean, logvar = model(batch.rest_points, batch.displacements, batch.anchors, batch.neighbours,
                                 batch.canonical, noise=noise, sample=False)  # deltas [B, T, n, 14]
    target = batch.deltas
    anchor_truth = interpolate(batch.displacements, *batch.neighbours)  # [B, T, L, 3]
    losses = {
        "mesh_guided": (_at_anchors(deltas[..., 0:3], batch.anchor_index) - anchor_truth).abs().mean(),
        "position": (deltas[..., 0:3] - target[..., 0:3]).abs().mean(),
        "scale": (deltas[..., 7:10] - target[..., 7:10]).abs().mean(),
        "appearance": (deltas[..., 3:7] - target[..., 3:7]).abs().mean(),
        "kl": kl_divergence(mean, logvar),
    }
    pred = apply_deltas(batch.canonical, deltas)
    truth = apply_deltas(batch.canonical, target)
    scale2 = batch.canonical.scales.pow(2).mean(dim=(-1, -2))[:, None, None, None, None]  # [B, 1, 1, 1, 1]
    losses["covariance"] = ((pred.covariances - truth.covariances).abs() / scale2).mean()
    total = (
        config.w_mesh_guided * losses["mesh_guided"] + config.w_position * losses["position"]
        + config.w_scale * losses["scale"] + config.w_appearance * losses["appearance"]
        + config.w_covariance * losses["covariance"] + config.w_kl * losses["kl"]
    )
    if config.w_render > 0:
        gen = generator or torch.Generator().manual_seed(0)
        b, t = int(torch.randint(batch.deltas.shape[0], (), generator=gen)), int(torch.randint(batch.deltas.shape[1], (), generator=gen))
        losses["render"] = render_loss(pred[b][t], truth[b][t].detach(), render_size, config.ssim_weight, gen)
        total = total + config.w_render * losses["render"]
    losses["total"] = total
    return losses


# ------------------------------------------------------------------------- statistics
@torch.no_grad()
def fit_statistics(model: GVFVAE, samples: list[dict]) -> dict:
    """Displacement scale, per-channel delta scale and Gaussian feature mean/std from samples."""
    from gvf_core.models.vae import gaussian_features

    c = model.config
    prepared = [prepare_sample(s, c.num_latents, c.num_points, c.knn, c.interp_beta) for s in samples]
    disp = torch.cat([p["displacements"].reshape(-1, 3) for p in prepared])
    deltas = torch.cat([p["deltas"].reshape(-1, 14) for p in prepared])
    feats = torch.cat([gaussian_features(p["canonical"]) for p in prepared])
    stats = {
        "displacement_scale": 1.0 / disp.std().clamp(min=1e-4),
        "delta_scale": deltas.std(0).clamp(min=1e-3),
        "gaussian_mean": feats.mean(0),
        "gaussian_std": feats.std(0).clamp(min=1e-3),
    }
    for k, v in stats.items():
        getattr(model, k).copy_(v)
    return {k: v.tolist() if v.dim() else float(v) for k, v in stats.items()}


# ------------------------------------------------------------------------- trainer
class VAETrainer:
    """One optimisation step at a time, single-process or DDP (then the model is wrapped)."""

    def __init__(self, config: VAEConfig, train: VAETrainConfig, device="cpu"):
        self.config, self.train, self.device = config, train, torch.device(device)
        torch.manual_seed(train.seed)
        self.model = GVFVAE(config).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay, betas=(0.9, 0.99), foreach=True)
        self.step = 0
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.wrapped = (
            torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.distributed else self.model
        )

    def set_statistics(self, samples: list[dict]) -> dict:
        stats = fit_statistics(self.model, samples)
        self.ema.load_state_dict(self.model.state_dict())
        return stats

    def lr_at(self, step: int) -> float:
        t = self.train
        return warmup_cosine(step, t.lr, t.warmup_steps, t.steps)

    def prepare(self, samples: list[dict]) -> tuple[VAEBatch, Tensor | None]:
        c, t = self.config, self.train
        prepared = [
            prepare_sample(s, c.num_latents, c.num_points, c.knn, c.interp_beta, frames=t.frames_per_sample,
                           gaussians=t.gaussians_per_sample, step=self.step)
            for s in samples
        ]
        noise = None
        if t.sample_posterior:
            noise = torch.stack([
                torch.randn(p["displacements"].shape[0], c.num_latents, c.latent_channels,
                            generator=torch.Generator().manual_seed(hash((int(s["meta"]["seed"]), self.step, 1)) & 0x7FFFFFFF))
                for p, s in zip(prepared, samples)
            ]).to(self.device)
        return stack(prepared).to(self.device), noise

    def train_step(self, samples: list[dict]) -> dict[str, float]:
        batch, noise = self.prepare(samples)
        with autocast_for(self.device):
            losses = vae_losses(self.wrapped, batch, self.config, noise, self.train.render_size,
                                torch.Generator().manual_seed(hash((self.train.seed, self.step)) & 0x7FFFFFFF))
        grad_norm = optimize(losses["total"], self.model, self.ema, self.optimizer, self.lr_at(self.step),
                             self.train.grad_clip, self.train.ema_decay)
        self.step += 1
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["grad_norm"] = grad_norm
        out["lr"] = self.lr_at(self.step - 1)
        return out

    # checkpoints ------------------------------------------------------------------
    def save(self, out_dir) -> None:
        save_checkpoint(out_dir, self.step, self.model, self.ema, self.optimizer,
                        lambda d: save_vae(self.ema, d / "vae.safetensors", extra={"step": self.step, "train": self.train.to_dict()}))

    def resume(self, out_dir) -> bool:
        step = resume_checkpoint(out_dir, self.model, self.ema, self.optimizer)
        if step is not None:
            self.step = step
        return step is not None


def _batches(root, split: str, batch_size: int, seed: int):
    """Endless stream of lists of samples (dicts with "meta"), epoch after epoch."""
    from gvf_core.data.dataset import GVFDataset

    ds = GVFDataset(root, split=split, seed=seed, drop_uneven=True)
    epoch = 0
    while True:
        ds.set_epoch(epoch)
        batch = []
        for sample in ds:
            batch.append(sample)
            if len(batch) == batch_size:
                yield batch
                batch = []
        epoch += 1


def train_vae(data_dir, out_dir, preset: str = "tiny", train: VAETrainConfig = VAETrainConfig(),
              device: str = "cpu", resume: bool = True, progress: bool = True, overrides: dict | None = None,
              max_minutes: float | None = None) -> Path:
    """Train (or resume) a VAE on ``data_dir``'s train split; returns the weights path.

    ``max_minutes`` stops early (after a checkpoint) when the wall-clock budget is spent;
    running the same command again resumes.
    """
    if preset not in VAE_PRESETS:
        raise ValueError(f"unknown VAE preset {preset!r}; choose one of {sorted(VAE_PRESETS)}")
    config = VAE_PRESETS[preset]
    if overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if device == "cuda" and dist.is_initialized():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    trainer = VAETrainer(config, train, device)
    out_dir = Path(out_dir)
    if not (resume and trainer.resume(out_dir)):
        from gvf_core.data.dataset import GVFMapDataset

        ds = GVFMapDataset(data_dir, split="train")
        count = min(train.stats_samples, len(ds))
        samples = [ds[i] for i in range(count)]
        stats = trainer.set_statistics(samples)
        if rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "statistics.json").write_text(json.dumps(stats, indent=2))
    bar = None
    if progress and rank == 0 and trainer.step < train.steps:
        from tqdm import tqdm

        bar = tqdm(total=train.steps, initial=trainer.step, desc="train vae", dynamic_ncols=True)
    log = open(out_dir / "loss_log.jsonl", "a") if rank == 0 else None
    start = time.perf_counter()
    try:
        for samples in _batches(data_dir, "train", train.batch_size, train.seed + trainer.step):
            if trainer.step >= train.steps:
                break
            if max_minutes is not None and time.perf_counter() - start > 60.0 * max_minutes:
                break
            losses = trainer.train_step(samples)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses['total']:.4f}", pos=f"{losses['position']:.4f}")
            if log is not None and trainer.step % train.log_every == 0:
                log.write(json.dumps({"step": trainer.step, "seconds": time.perf_counter() - start, **losses}) + "\n")
                log.flush()
            if rank == 0 and (trainer.step % train.checkpoint_every == 0 or trainer.step == train.steps):
                trainer.save(out_dir)
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    if rank == 0:
        trainer.save(out_dir)
    return out_dir / "vae.safetensors"


__all__ = ["VAETrainConfig", "VAETrainer", "fit_statistics", "load_vae", "train_vae", "vae_losses"]
