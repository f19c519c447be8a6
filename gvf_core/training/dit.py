"""Training the GVF diffusion transformer: ``gvf train dit --preset tiny --data DIR --out DIR``.

Inputs come from ``gvf data encode`` (the shipped VAE's latents per sample) and the
samples' driving videos, gathered once into a cache file per split and video size
(:func:`build_cache`), then held in memory: a step only slices tensors.

Each step takes B clips of T ≥ 16 frames from frame 0 (T is drawn per step from
``frames``, so temporal attention sees several lengths), noises the normalised residual
latent at a flow time (logit-normal, half of them from the high-noise end U(0.8, 1)), and regresses the flow velocity on frames 1..T−1 (frame
0 is the rest pose, known and clamped). Conditions are dropped independently (video,
canonical, magnitude) so every guidance branch is trained. The magnitude head learns
the clip's log motion magnitude from the video. The optional Geometry-Forcing loss
aligns a middle block's states with the anchors' true displacement: angular
(1 − cosine, weight 0.5) and scale (squared error of the norms, weight 0.05).

AdamW, warm-up + cosine, EMA, gradient clipping, resumable checkpoints, a loss log,
single process or ``torchrun`` (DDP, every rank its own batches).
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from gvf_core.atomic_write import atomic_path
from gvf_core.models.checkpoint import fingerprint
from gvf_core.models.dit import DIT_PRESETS, DiTConditions, DiTConfig, GVFDiT, save_dit
from gvf_core.models.sampler import add_noise
from gvf_core.models.video_inputs import prepare_video
from gvf_core.training.common import autocast_for, optimize, resume_checkpoint, save_checkpoint, warmup_cosine

CACHE_FORMAT = "1"
TRACKS_FORMAT = "1"
LIFT_FORMAT = "3"  # 2: the rigid transform where it explains the tracks; 3: by LIFT_RIGID_RESIDUAL (0.115, was 0.15)


@dataclass(frozen=True)
class DiTTrainConfig:
    steps: int = 2000
    batch_size: int = 4
    frames: tuple[int, ...] = (16, 24)
    """Clip lengths drawn per step (all ≥ 16; from frame 0)."""
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    ema_decay: float = 0.998
    grad_clip: float = 1.0
    high_noise_fraction: float = 0.5
    """Fraction of training times drawn from U(0.8, 1) instead of logit-normal(0, 1).
    Logit-normal alone almost never draws t > 0.95 (0.16 %), yet sampling starts at t = 1
    where only the conditions can tell x₀: measured after 1400 such steps, the x₀ estimate at
    t = 1 was no better than predicting zero motion (docs/models.md)."""
    p_drop_video: float = 0.1
    p_drop_canonical: float = 0.1
    p_drop_magnitude: float = 0.1
    w_magnitude: float = 0.1
    """Weight of the magnitude head's L1 on normalised log magnitude."""
    w_gf_angle: float = 0.5
    """Geometry Forcing, angular alignment (used when the model has the head)."""
    w_gf_scale: float = 0.05
    """Geometry Forcing, scale alignment."""
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if min(self.frames) < 2:
            raise ValueError(f"training clips need at least 2 frames, got {self.frames}")

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------- data cache
def _save_cache(tensors: dict[str, Tensor], path: Path, tag: str) -> None:
    """Write a cache file whole or not at all (:func:`~gvf_core.atomic_write.atomic_path`: processes
    sharing DIR, evaluation parts or DDP ranks, never write the same temporary file), its ``tag`` in
    the metadata."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"tag": tag})


def build_cache(data_dir, split: str, video_size: int, progress=None) -> dict[str, Tensor]:
    """Gather latents, anchors, canonical features and prepared videos of one split.

    Written to ``DIR/latents/dit-cache-{split}-{size}.safetensors`` and reused while the
    latents do not change.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from gvf_core.data.shards import Manifest, ShardReader

    data_dir = Path(data_dir)
    manifest = Manifest.load(data_dir)
    shards = manifest.shards_of(split)
    if not shards:
        raise FileNotFoundError(f"{data_dir}: no {split!r} shards; run `gvf data make` first")
    latent_files = [data_dir / "latents" / s.file for s in shards]
    missing = [str(p) for p in latent_files if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} latent files missing (e.g. {missing[0]}); run `gvf data encode --data {data_dir}` first")
    tag = json.dumps({"format": CACHE_FORMAT, "size": video_size,
                      "latents": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in latent_files]})
    cache_path = data_dir / "latents" / f"dit-cache-{split}-{video_size}.safetensors"
    if cache_path.exists():
        with safe_open(str(cache_path), framework="pt") as f:
            if (f.metadata() or {}).get("tag") == tag:
                return load_file(str(cache_path))
    rows: dict[str, list] = {k: [] for k in ("latent", "anchors", "anchor_motion", "canonical", "magnitude", "pixels", "K", "w2c", "seed")}
    total = sum(s.count for s in shards)
    done = 0
    for info, latent_path in zip(shards, latent_files):
        latents = load_file(str(latent_path))
        with ShardReader(data_dir / info.file) as reader:
            for i in range(len(reader)):
                arrays, meta = reader[i]
                video = prepare_video(arrays["video"], arrays["camera_K"], video_size, source=f"{info.file}#{i}")
                rows["latent"].append(latents[f"{i:04d}/mean"])
                rows["anchors"].append(latents[f"{i:04d}/anchors"])
                rows["anchor_motion"].append(latents[f"{i:04d}/anchor_motion"])
                rows["canonical"].append(latents[f"{i:04d}/canonical"])
                rows["magnitude"].append(torch.tensor(float(meta["motion_magnitude"])))
                rows["pixels"].append((video.pixels * 255 + 0.5).to(torch.uint8))
                rows["K"].append(video.K)
                rows["w2c"].append(torch.as_tensor(arrays["camera_w2c"]).float())
                rows["seed"].append(torch.tensor(int(meta["seed"])))
                done += 1
                if progress is not None:
                    progress(done, total)
    cache = {k: torch.stack(v).contiguous() for k, v in rows.items()}
    _save_cache(cache, cache_path, tag)
    return cache


def _checksum(values: Tensor, clips_per_chunk: int = 64) -> float:
    """Sum of ``values`` in float64, a few clips at a time (a float64 copy of the whole
    cached video would take 8 bytes per pixel: 6 GB for 2000 clips of 64² crops)."""
    return float(sum(chunk.double().sum() for chunk in values.split(clips_per_chunk)))


def add_tracks(data_dir, split: str, cache: dict[str, Tensor], progress=None) -> dict[str, Tensor]:
    """``cache`` with ``"tracks"`` [N, T, L, TRACK_FEATURES] (float16): each clip's anchor tracks
    (:func:`gvf_core.models.video_tracks.clip_tracks` on the cached crops, exactly as the
    pipeline computes them). Kept in ``DIR/latents/dit-tracks-{split}-{size}.safetensors``
    beside the cache and recomputed when its inputs change (0.4 s per clip on one core)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from gvf_core.models.video_tracks import clip_tracks

    size = int(cache["pixels"].shape[-1])
    path = Path(data_dir) / "latents" / f"dit-tracks-{split}-{size}.safetensors"
    # the tracks depend on the crops, anchors, surfaces and cameras: a checksum of each names the cache they belong to
    inputs = {k: _checksum(cache[k]) for k in ("pixels", "anchors", "canonical", "K", "w2c")}
    tag = json.dumps({"format": TRACKS_FORMAT, "seeds": cache["seed"].tolist(), "inputs": inputs})
    if path.exists():
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("tag") == tag:
                return {**cache, "tracks": load_file(str(path))["tracks"]}
    rows = []
    n = len(cache["seed"])
    for i in range(n):
        rows.append(clip_tracks(cache["anchors"][i], cache["canonical"][i, :, :3], cache["pixels"][i].float() / 255.0,
                                cache["K"][i], cache["w2c"][i]).half())
        if progress is not None:
            progress(i + 1, n)
    tracks = torch.stack(rows).contiguous()
    _save_cache({"tracks": tracks}, path, tag)
    return {**cache, "tracks": tracks}


def check_latents_vae(data_dir, split: str, vae) -> None:
    """Refuse a VAE other than the one ``gvf data encode`` used for ``split``'s latents."""
    from safetensors import safe_open

    from gvf_core.data.encode import FORMAT
    from gvf_core.data.shards import Manifest

    shards = Manifest.load(Path(data_dir)).shards_of(split)
    if not shards:
        raise ValueError(f"{data_dir}: no {split} shards to check the VAE against; make and encode the data set first "
                         "(gvf data make, gvf data encode)")
    with safe_open(str(Path(data_dir) / "latents" / shards[0].file), framework="pt") as f:
        meta = f.metadata() or {}
    # latents encoded before the fingerprint was recorded can only be checked by config
    if (meta.get("vae_config") != vae.config.to_json() + "/format" + FORMAT
            or meta.get("vae_fingerprint", fingerprint(vae)) != fingerprint(vae)):
        raise ValueError(f"{data_dir}: the {split} latents were encoded by another VAE than the one given for the lift; "
                         "pass the VAE they were encoded with (--vae), or encode again with this one")


def _one_thread() -> None:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _clip_lift(points, surface, pixels, K, w2c) -> Tensor:
    """One clip's lifted displacement [T, P, 3] (a worker's job in :func:`add_lift`; numpy arrays in,
    so a worker receives copies of its clip rather than the whole shared cache)."""
    from gvf_core.models.track_lift import lift_motion
    from gvf_core.models.video_tracks import clip_tracks

    points, surface, pixels, K, w2c = (torch.as_tensor(a) for a in (points, surface, pixels, K, w2c))
    tracks = clip_tracks(points, surface, pixels.float() / 255.0, K, w2c)
    return lift_motion(points, tracks, K, w2c, int(pixels.shape[-1])).displacement


def add_lift(data_dir, split: str, cache: dict[str, Tensor], vae, progress=None, workers: int | None = None
             ) -> dict[str, Tensor]:
    """``cache`` with ``"lift"`` [N, T, L, C]: each clip's lifted latent
    (:func:`gvf_core.models.track_lift.lift_motion`: the VAE's rest points tracked through the
    cached crops and lifted, then encoded by ``vae``), exactly as the pipeline computes it. Kept in
    ``DIR/latents/dit-lift-{split}-{size}.safetensors`` and recomputed when the crops, anchors,
    surfaces, cameras or the VAE change. About 1.5 s per clip on one core, most of it the rigid
    fit; ``workers`` processes (default: one per core) share the clips.

    The lift is made once over each clip's full length and training cuts the first T frames of
    it, so the rigid-or-plane choice of a training clip sees all its frames, where the pipeline
    sees only the frames it animates; the two agree whenever the choice does not flip on the
    frames left out."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from safetensors import safe_open
    from safetensors.torch import load_file

    from gvf_core.data.shards import Manifest, ShardReader
    from gvf_core.models.track_lift import lifted_latent
    from gvf_core.models.vae_inputs import rest_points_of

    size = int(cache["pixels"].shape[-1])
    path = Path(data_dir) / "latents" / f"dit-lift-{split}-{size}.safetensors"
    inputs = {k: _checksum(cache[k]) for k in ("pixels", "anchors", "canonical", "K", "w2c")}
    tag = json.dumps({"format": LIFT_FORMAT, "seeds": cache["seed"].tolist(), "inputs": inputs,
                      "vae": fingerprint(vae)})
    check_latents_vae(data_dir, split, vae)  # before the cache: a lift made with the wrong VAE is no use either
    if path.exists():
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("tag") == tag:
                return {**cache, "lift": load_file(str(path))["lift"]}
    if next(vae.parameters()).device.type != "cpu":
        vae = copy.deepcopy(vae).cpu()
    vae = vae.eval()
    n = len(cache["seed"])
    points = []
    for info in Manifest.load(Path(data_dir)).shards_of(split):
        with ShardReader(Path(data_dir) / info.file) as reader:
            for j in range(len(reader)):
                arrays, meta = reader[j]
                i = len(points)
                if int(meta["seed"]) != int(cache["seed"][i]):
                    raise ValueError(f"{data_dir}: sample {i} of the {split} cache is seed {int(cache['seed'][i])} but the "
                                     f"shards hold {meta['seed']}; delete {path.parent}/dit-cache-{split}-*.safetensors")
                if i >= n:
                    raise ValueError(f"{data_dir}: the {split} shards hold more samples than its cache ({n}); "
                                     f"delete {path.parent}/dit-cache-{split}-*.safetensors")
                points.append(rest_points_of(arrays, vae.config.num_points))
    if len(points) != n:
        raise ValueError(f"{data_dir}: the {split} shards hold {len(points)} samples but its cache {n}; "
                         f"delete {path.parent}/dit-cache-{split}-*.safetensors")
    jobs = ((points[i].numpy().copy(), cache["canonical"][i, :, :3].float().numpy().copy(),
             cache["pixels"][i].numpy().copy(), cache["K"][i].float().numpy().copy(),
             cache["w2c"][i].float().numpy().copy()) for i in range(n))
    workers = min(workers or os.cpu_count() or 1, n)
    rows = []

    def encode(i: int, displacement: Tensor) -> None:
        rows.append(lifted_latent(vae, points[i], cache["anchors"][i].float(), displacement))
        if progress is not None:
            progress(len(rows), n)

    if workers <= 1 or n < 32:  # a pool's start-up costs more than a few clips
        for i, job in enumerate(jobs):
            encode(i, _clip_lift(*job))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
            for i, displacement in enumerate(pool.map(_clip_lift, *zip(*jobs), chunksize=4)):
                encode(i, displacement)
    lift = torch.stack(rows).contiguous()
    _save_cache({"lift": lift}, path, tag)
    return {**cache, "lift": lift}


def conditions_from_cache(cache: dict[str, Tensor], index: Tensor, frames: int, canonical_tokens: int,
                          magnitude: bool = True) -> tuple[DiTConditions, Tensor]:
    """(conditions, clean VAE latents [B, T, L, C]) of the cached clips ``index``, first ``frames`` frames
    (with their anchor tracks and lifted latents when the cache has them, see :func:`add_tracks`
    and :func:`add_lift`)."""
    latent = cache["latent"][index, :frames].float()
    cond = DiTConditions(
        anchors=cache["anchors"][index].float(),
        rest_latent=latent[:, 0],
        canonical=cache["canonical"][index, :canonical_tokens].float(),
        pixels=cache["pixels"][index, :frames].float() / 255.0,
        K=cache["K"][index].float(),
        world_to_camera=cache["w2c"][index].float(),
        magnitude=cache["magnitude"][index].float() if magnitude else None,
        tracks=cache["tracks"][index, :frames].float() if "tracks" in cache else None,
        base_latent=cache["lift"][index, :frames].float() if "lift" in cache else None,
    )
    return cond, latent


# ------------------------------------------------------------------------- statistics
@torch.no_grad()
def fit_statistics(model: GVFDiT, cache: dict[str, Tensor], count: int = 256) -> dict:
    n = min(count, len(cache["seed"]))
    latent = cache["latent"][:n].float()  # [n, T, L, C]
    base = cache["lift"][:n, 1:].float() if model.config.base == "lift" else latent[:, :1]
    residual = latent[:, 1:] - base
    rest = latent[:, 0]
    canonical = cache["canonical"][:n].reshape(-1, cache["canonical"].shape[-1]).float()
    log_mag = torch.log(cache["magnitude"][:n].float().clamp(min=1e-4))
    stats = {
        "residual_std": residual.reshape(-1, residual.shape[-1]).std(0).clamp(min=1e-4),
        "latent_mean": rest.reshape(-1, rest.shape[-1]).mean(0),
        "latent_std": rest.reshape(-1, rest.shape[-1]).std(0).clamp(min=1e-4),
        "canonical_mean": canonical.mean(0),
        "canonical_std": canonical.std(0).clamp(min=1e-3),
        "log_magnitude_mean": log_mag.mean(),
        "log_magnitude_std": log_mag.std().clamp(min=1e-3),
        "motion_scale": cache["anchor_motion"][:n].float().std().clamp(min=1e-5),
    }
    for k, v in stats.items():
        getattr(model, k).copy_(v)
    return {k: v.tolist() if v.dim() else float(v) for k, v in stats.items()}


# ------------------------------------------------------------------------- losses
def geometry_forcing_losses(pred: Tensor, motion: Tensor) -> tuple[Tensor, Tensor]:
    """Angular (1 − cos) and scale (squared norm error) alignment, frames 1.. only.

    ``pred``/``motion`` [B, T, L, 3], motion already divided by the data's motion scale.
    The angular term is weighted by the true displacement's norm (a near-static token
    has no direction to align to).
    """
    p, f = pred[:, 1:], motion[:, 1:]
    fn = f.norm(dim=-1)
    cos = F.cosine_similarity(p, f, dim=-1, eps=1e-6)
    weight = fn / fn.mean().clamp(min=1e-6)
    angle = ((1 - cos) * weight).mean()
    scale = (p.norm(dim=-1) - fn).pow(2).mean()
    return angle, scale


def sample_times(n: int, high_noise_fraction: float, generator: torch.Generator) -> Tensor:
    """Flow times: logit-normal(0, 1), a ``high_noise_fraction`` of them from U(0.8, 1) instead."""
    t = torch.sigmoid(torch.randn(n, generator=generator))
    high = torch.rand(n, generator=generator) < high_noise_fraction
    return torch.where(high, 0.8 + 0.2 * torch.rand(n, generator=generator), t)


def dit_losses(model, cond: DiTConditions, latent: Tensor, motion: Tensor, train: DiTTrainConfig,
               generator: torch.Generator) -> dict[str, Tensor]:
    """Flow-matching loss and the auxiliary terms for one batch (model may be DDP-wrapped)."""
    core = model.module if hasattr(model, "module") else model
    B = latent.shape[0]
    device = latent.device
    x0 = core.to_residual(latent, core.base_of(cond))
    x0[:, 0] = 0
    t = sample_times(B, train.high_noise_fraction, generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    xt = add_noise(x0, noise, t)
    xt[:, 0] = 0  # the rest frame is known
    drops = [torch.rand(B, generator=generator).to(device) < p for p in (train.p_drop_video, train.p_drop_canonical, train.p_drop_magnitude)]
    ctx = core.encode_conditions(cond)
    v, gf = model(xt, t, ctx, *drops, return_hidden=True) if core.gf_head is not None else (model(xt, t, ctx, *drops), None)
    target = noise - x0
    losses = {"flow": (v[:, 1:] - target[:, 1:]).pow(2).mean()}
    true_mag = (torch.log(cond.magnitude.clamp(min=1e-4)) - core.log_magnitude_mean) / core.log_magnitude_std
    losses["magnitude"] = (ctx.predicted_log_magnitude - true_mag).abs().mean()
    total = losses["flow"] + train.w_magnitude * losses["magnitude"]
    if gf is not None:
        losses["gf_angle"], losses["gf_scale"] = geometry_forcing_losses(gf, motion / core.motion_scale)
        total = total + train.w_gf_angle * losses["gf_angle"] + train.w_gf_scale * losses["gf_scale"]
    losses["total"] = total
    return losses


# ------------------------------------------------------------------------- trainer
class DiTTrainer:
    def __init__(self, config: DiTConfig, train: DiTTrainConfig, cache: dict[str, Tensor], device="cpu"):
        self.config, self.train, self.cache, self.device = config, train, cache, torch.device(device)
        torch.manual_seed(train.seed)
        self.model = GVFDiT(config).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay, betas=(0.9, 0.99))
        self.step = 0
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.wrapped = (
            torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.distributed else self.model
        )

    def set_statistics(self) -> dict:
        stats = fit_statistics(self.model, self.cache)
        self.ema.load_state_dict(self.model.state_dict())
        return stats

    def lr_at(self, step: int) -> float:
        t = self.train
        return warmup_cosine(step, t.lr, t.warmup_steps, t.steps)

    def batch(self, generator: torch.Generator) -> tuple[DiTConditions, Tensor, Tensor, int]:
        n = len(self.cache["seed"])
        index = torch.randint(n, (self.train.batch_size,), generator=generator)
        T = int(self.train.frames[int(torch.randint(len(self.train.frames), (), generator=generator))])
        T = min(T, self.cache["latent"].shape[1])
        cond, latent = conditions_from_cache(self.cache, index, T, self.config.canonical_tokens)
        motion = self.cache["anchor_motion"][index, :T].float()
        return cond.to(self.device), latent.to(self.device), motion.to(self.device), T

    def train_step(self) -> dict[str, float]:
        gen = torch.Generator().manual_seed(hash((self.train.seed, self.rank, self.step)) & 0x7FFFFFFF)
        cond, latent, motion, T = self.batch(gen)
        with autocast_for(self.device):
            losses = dit_losses(self.wrapped, cond, latent, motion, self.train, gen)
        grad_norm = optimize(losses["total"], self.model, self.ema, self.optimizer, self.lr_at(self.step),
                             self.train.grad_clip, self.train.ema_decay)
        self.step += 1
        out = {k: float(v.detach()) for k, v in losses.items()}
        out.update(grad_norm=grad_norm, lr=self.lr_at(self.step - 1), frames=T)
        return out

    def save(self, out_dir) -> None:
        save_checkpoint(out_dir, self.step, self.model, self.ema, self.optimizer,
                        lambda d: save_dit(self.ema, d / "dit.safetensors", extra={"step": self.step, "train": self.train.to_dict()}))

    def resume(self, out_dir) -> bool:
        step = resume_checkpoint(out_dir, self.model, self.ema, self.optimizer)
        if step is not None:
            self.step = step
        return step is not None


def init_from(trainer: DiTTrainer, path) -> dict:
    """Start ``trainer`` from the weights of another DiT file (e.g. the shipped model, to add
    anchor tracks to it). Parameters missing from the file (the new track or base input) keep
    their initialisation (zero output); every other tensor must match in shape. The data
    statistics stay the ones fitted for this run (a lift-based DiT's residuals are smaller than
    the file's). Returns what was loaded, for statistics.json."""
    from gvf_core.models.checkpoint import CheckpointError, read_model

    _, tensors = read_model(path, "gvf-dit")
    own = trainer.model.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if unexpected or wrong:
        raise CheckpointError(f"{path}: cannot start from this DiT: it has tensors this preset lacks ({unexpected[:5]}) "
                              f"or of other shapes ({wrong[:5]}); pick the preset it was trained with")
    fitted = {name: buffer.clone() for name, buffer in trainer.model.named_buffers()}
    trainer.model.load_state_dict(tensors, strict=False)
    for name, buffer in trainer.model.named_buffers():
        buffer.copy_(fitted[name])
    trainer.ema.load_state_dict(trainer.model.state_dict())
    return {"path": str(path), "loaded": len(tensors), "new": sorted(set(own) - set(tensors))}


def train_dit(data_dir, out_dir, preset: str = "tiny", train: DiTTrainConfig = DiTTrainConfig(), device: str = "cpu",
              resume: bool = True, progress: bool = True, overrides: dict | None = None,
              max_minutes: float | None = None, vae_config=None, init=None, vae=None) -> Path:
    """Train (or resume) a DiT on ``data_dir``'s encoded train split; returns the weights path.

    ``vae_config`` (the VAE the latents came from) is checked against the DiT's L and C.
    ``init``: a DiT file to start from (a fresh run only), see :func:`init_from`.
    ``vae``: the VAE file the latents were encoded with (default: the shipped one); a DiT with
    ``base="lift"`` needs it for the lifted latents (:func:`add_lift`).
    """
    if preset not in DIT_PRESETS:
        raise ValueError(f"unknown DiT preset {preset!r}; choose one of {sorted(DIT_PRESETS)}")
    config = DIT_PRESETS[preset]
    if overrides:
        config = replace(config, **overrides)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if device == "cuda" and dist.is_available() and dist.is_initialized():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    cache_bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        cache_bar = tqdm(desc="dit cache", unit="clip", dynamic_ncols=True)

    def cache_progress(done, total):
        if cache_bar is not None:
            cache_bar.total, cache_bar.n = total, done
            cache_bar.refresh()

    cache = build_cache(data_dir, "train", config.video_size, cache_progress)
    if config.tracks:
        if cache_bar is not None:
            cache_bar.set_description("anchor tracks")
        cache = add_tracks(data_dir, "train", cache, cache_progress)
    if config.base == "lift":
        from gvf_core.models.vae import load_vae
        from gvf_core.pipeline.core import SHIPPED_MODEL

        if cache_bar is not None:
            cache_bar.set_description("lifted latents")
        cache = add_lift(data_dir, "train", cache, load_vae(vae or SHIPPED_MODEL / "vae.safetensors"), cache_progress)
    if cache_bar is not None:
        cache_bar.close()
    L, C = cache["latent"].shape[2:]
    if (L, C) != (config.num_latents, config.latent_channels):
        raise ValueError(f"the encoded latents are [L={L}, C={C}] but the {preset} DiT expects "
                         f"[{config.num_latents}, {config.latent_channels}]; encode with the matching VAE or pick another preset")
    trainer = DiTTrainer(config, train, cache, device)
    out_dir = Path(out_dir)
    if not (resume and trainer.resume(out_dir)):
        stats = trainer.set_statistics()
        if init is not None:
            stats["init"] = init_from(trainer, init)
        if rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "statistics.json").write_text(json.dumps(stats, indent=2))
    bar = None
    if progress and rank == 0 and trainer.step < train.steps:
        from tqdm import tqdm

        bar = tqdm(total=train.steps, initial=trainer.step, desc="train dit", dynamic_ncols=True)
    log = open(out_dir / "loss_log.jsonl", "a") if rank == 0 else None
    start = time.perf_counter()
    try:
        while trainer.step < train.steps:
            if max_minutes is not None and time.perf_counter() - start > 60.0 * max_minutes:
                break
            losses = trainer.train_step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(flow=f"{losses['flow']:.4f}", T=losses["frames"])
            if log is not None and trainer.step % train.log_every == 0:
                log.write(json.dumps({"step": trainer.step, "seconds": time.perf_counter() - start, **losses}) + "\n")
                log.flush()
            if rank == 0 and trainer.step % train.checkpoint_every == 0:
                trainer.save(out_dir)
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    if rank == 0:
        trainer.save(out_dir)
    return out_dir / "dit.safetensors"


__all__ = ["DiTTrainConfig", "DiTTrainer", "add_lift", "add_tracks", "build_cache", "check_latents_vae", "init_from", "conditions_from_cache", "dit_losses",
           "fit_statistics", "geometry_forcing_losses", "train_dit"]
