"""The model-frame core of the pipeline: canonical Gaussians + video → per-frame motion.

Shared by :func:`gvf_core.pipeline.animate`, :func:`gvf_core.pipeline.extend` and the
evaluation, so all three run the same code: rest latent (the VAE encoding of the rest
pose), DiT sampling of the residual latent, VAE decoding of per-frame Gaussian deltas
(a few frames at a time, so memory does not grow with the clip), and the way back to
mesh vertices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from gvf_core.canonical import BoundGaussians, VertexSolver
from gvf_core.gaussians import Gaussians
from gvf_core.models.checkpoint import CheckpointError
from gvf_core.models.dit import DiTConditions, GVFDiT, load_dit
from gvf_core.models.sampler import Cancelled, SamplerConfig, sample
from gvf_core.models.track_lift import lift_motion, lifted_latent
from gvf_core.models.vae import GVFVAE, apply_deltas, encode_points, gaussian_features, load_vae
from gvf_core.models.vae_inputs import anchor_indices
from gvf_core.models.video_inputs import VideoInputs
from gvf_core.models.video_tracks import clip_tracks, visibility_surface

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "weights" / "tiny"
DECODE_FRAMES = 8
"""Frames decoded by the VAE at once."""

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total)."""


@dataclass
class Models:
    vae: GVFVAE
    dit: GVFDiT
    source: str

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device


def load_models(model_dir=None, device="cpu") -> Models:
    """VAE + DiT from a folder holding ``vae.safetensors`` and ``dit.safetensors``
    (default: the shipped tiny model), checked to belong together."""
    folder = Path(model_dir) if model_dir is not None else SHIPPED_MODEL
    for name in ("vae.safetensors", "dit.safetensors"):
        if not (folder / name).exists():
            raise CheckpointError(f"{folder}: missing {name}; a model folder holds vae.safetensors and dit.safetensors "
                                  f"(the shipped one is {SHIPPED_MODEL})")
    vae = load_vae(folder / "vae.safetensors", device)
    dit = load_dit(folder / "dit.safetensors", device)
    v, d = vae.config, dit.config
    if (v.num_latents, v.latent_channels) != (d.num_latents, d.latent_channels):
        raise CheckpointError(
            f"{folder}: mismatched model files: the VAE makes latents of [L={v.num_latents}, C={v.latent_channels}] "
            f"but the DiT was trained on [L={d.num_latents}, C={d.latent_channels}]; use the VAE the DiT was trained with"
        )
    return Models(vae, dit, str(folder))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for, but PyTorch sees no CUDA GPU here; use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


@dataclass
class Motion:
    """Generated motion of one clip, model frame; frame 0 is the canonical (rest) state."""

    latent: Tensor  # [T, L, C]
    deltas: Tensor  # [T, N, 14]
    gaussians: Gaussians  # [T, N]
    vertices: Tensor  # [T, V, 3]
    magnitude: float  # motion magnitude the DiT was conditioned on (NaN: decode_latent)
    predicted_magnitude: float  # what the DiT read from the video (NaN: decode_latent)
    timings: dict = field(default_factory=dict)
    lift: Tensor | None = None  # [T, L, C] the lifted latent the DiT denoised from (base="lift"), else None
    rest_points: Tensor | None = None  # [P, 3] the VAE's surface points at rest it was generated through


CPU_DRAWS_PER_CALL = 2
"""Sampler draws per DiT call on the CPU (on CUDA: all in one). Per draw the CPU is fastest in
small batches: 8 draws of 24 frames took 2.7 s in calls of 2 against 3.5 s in one call (two
threads; one thread: 4.7 against 6.1 s), the result the same to 1e-6."""


def _clock(timings: dict, stage: str, start: float) -> float:
    """Add the seconds since ``start`` to ``timings[stage]`` and return the time now. On CUDA it
    first waits for the queued kernels, so a stage's GPU work is counted in that stage, not in
    the next one that reads a result back."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    now = time.perf_counter()
    timings[stage] = timings.get(stage, 0.0) + now - start
    return now


@torch.no_grad()
def rest_latent(vae: GVFVAE, rest_points: Tensor, anchors: Tensor) -> Tensor:
    """The VAE latent [L, C] of the rest pose (zero displacement) seen through ``rest_points`` [P, 3]."""
    return encode_points(vae, rest_points, anchors, torch.zeros(1, *rest_points.shape, device=rest_points.device))[0]


@torch.no_grad()
def generate_motion(
    models: Models,
    bound: BoundGaussians,
    rest_points: Tensor,
    video: VideoInputs,
    world_to_camera: Tensor,
    sampler: SamplerConfig = SamplerConfig(),
    seed: int = 0,
    strength: float = 1.0,
    magnitude: float | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    solver: VertexSolver | None = None,
) -> Motion:
    """Sample the motion that ``video`` shows for ``bound`` (model frame, rest = frame 0).

    ``world_to_camera`` [4, 4]: the video's camera in the model frame; ``video.K`` its crop
    intrinsics. ``magnitude`` (absolute) overrides the magnitude read from the video;
    ``strength`` multiplies either.
    """
    if strength <= 0:
        raise ValueError(f"strength must be > 0 (1 = the motion the video shows), got {strength}")
    vae, dit = models.vae, models.dit
    device = models.device
    timings: dict = {}
    t0 = time.perf_counter()
    canonical = bound.canonical.to(device)
    L, C = dit.config.num_latents, dit.config.latent_channels
    anchors = model_anchors(models, canonical)
    z0 = rest_latent(vae, rest_points.to(device), anchors)
    tokens = anchor_indices(canonical.means, min(dit.config.canonical_tokens, canonical.num)).to(device)
    tracks = point_tracks = None
    lift = dit.config.base == "lift"
    if dit.config.tracks or lift:
        # one optical-flow pass tracks the anchors (the DiT's track input) and the rest points (the lift)
        tracked = anchors.cpu() if not lift else torch.cat([anchors.cpu(), rest_points.cpu().float()])
        found = clip_tracks(tracked, visibility_surface(canonical.means), video.pixels, video.K, world_to_camera)
        tracks = found[:, :L][None].to(device) if dit.config.tracks else None
        point_tracks = found[:, L:] if lift else None
        t0 = _clock(timings, "tracks", t0)
    cond = DiTConditions(
        anchors=anchors[None], rest_latent=z0[None], canonical=gaussian_features(canonical.select(tokens))[None],
        pixels=video.pixels[None].to(device), K=video.K[None].to(device),
        world_to_camera=world_to_camera[None].float().to(device), magnitude=None, tracks=tracks,
    )
    if lift:
        lifted = lift_motion(rest_points, point_tracks, video.K, world_to_camera, video.size)

        def lift_at(scale: float) -> Tensor:
            return lifted_latent(vae, rest_points, anchors, lifted.displacement, scale)[None]

        cond.base_latent = lift_at(1.0)
        t0 = _clock(timings, "lift", t0)
    ctx = dit.encode_conditions(cond)
    predicted = float(dit.magnitude_from_normalised(ctx.predicted_log_magnitude)[0])
    target = strength * (predicted if magnitude is None else float(magnitude))
    if lift and target != predicted:  # the lift shows the video's own motion: scaled like the magnitude condition
        cond.base_latent = lift_at(target / max(predicted, 1e-8))
        ctx.base = dit.embed_base(cond)
    ctx.log_magnitude = ((torch.log(torch.tensor([target], device=device).clamp(min=1e-4)) - dit.log_magnitude_mean)
                         / dit.log_magnitude_std)
    t0 = _clock(timings, "conditions", t0)
    T = video.pixels.shape[0]

    def denoise(x, t, drop_video, drop_canonical):
        n = x.shape[0]
        batched = ctx if n == 1 else _repeat_context(ctx, n)
        return dit(x, t, batched, drop_video, drop_canonical)

    def constrain(x):
        x = x.clone()
        x[:, 0] = 0
        return x

    step_progress = None if progress is None else (lambda i, n: progress("diffusion", i, n))
    max_batch = None if torch.device(device).type == "cuda" else CPU_DRAWS_PER_CALL
    residual = sample(denoise, (1, T, L, C), sampler, seed=seed, device=device, constrain=constrain,
                      progress=step_progress, cancel=cancel, max_batch=max_batch)
    latent = dit.to_latent(residual, dit.base_of(cond))[0]
    t0 = _clock(timings, "diffusion", t0)

    deltas, gaussians, vertices = decode_motion(models, bound, latent, anchors, solver=solver, progress=progress,
                                                cancel=cancel, timings=timings)
    lift_latent = cond.base_latent[0].cpu() if lift else None
    return Motion(latent.cpu(), deltas, gaussians, vertices, target, predicted, timings, lift_latent,
                  rest_points.detach().cpu().float())


@torch.no_grad()
def decode_latent(models: Models, bound: BoundGaussians, latent: Tensor, solver: VertexSolver | None = None) -> Motion:
    """The motion of a given latent [T, L, C] (the evaluation's VAE ceiling and lift rows):
    decoded only, no tracks, conditions or sampling; its magnitudes are NaN."""
    timings: dict = {}
    anchors = model_anchors(models, bound.canonical.to(models.device))
    deltas, gaussians, vertices = decode_motion(models, bound, latent, anchors, solver=solver, timings=timings)
    return Motion(latent.cpu(), deltas, gaussians, vertices, float("nan"), float("nan"), timings)


@torch.no_grad()
def video_lift(models: Models, canonical: Gaussians, rest_points: Tensor, video: VideoInputs,
               world_to_camera: Tensor) -> Tensor:
    """The lifted latent [T, L, C] of the video's point tracks (:mod:`gvf_core.models.track_lift`):
    the motion the flow shows, at the rest depth, without the DiT (a reference in the evaluation)."""
    canonical = canonical.to(models.device)
    anchors = model_anchors(models, canonical)
    tracks = clip_tracks(rest_points.cpu().float(), visibility_surface(canonical.means), video.pixels, video.K,
                         world_to_camera)
    lifted = lift_motion(rest_points, tracks, video.K, world_to_camera, video.size)
    return lifted_latent(models.vae, rest_points, anchors, lifted.displacement)


def model_anchors(models: Models, canonical: Gaussians) -> Tensor:
    """The VAE's L anchors [L, 3]: farthest-point samples of the canonical Gaussians."""
    return canonical.means[anchor_indices(canonical.means, models.dit.config.num_latents).to(canonical.means.device)]


@torch.no_grad()
def decode_motion(models: Models, bound: BoundGaussians, latent: Tensor, anchors: Tensor,
                  offsets: Tensor | None = None, solver: VertexSolver | None = None,
                  progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                  timings: dict | None = None,
                  transform: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Gaussians, Tensor]:
    """Latent [T, L, C] → (deltas [T, N, 14], Gaussians [T, N], vertices [T, V, 3]) on the CPU.

    Decodes ``DECODE_FRAMES`` frames at a time; frame 0 is the canonical state exactly.
    ``offsets`` [T, N, 3] (refinement's residual deformation) are added to the positions, then
    ``transform`` (refinement's rigid transform and temporal filter) maps all frames' deltas
    [T, N, 14] to new ones.
    ``timings`` receives the seconds of the "decode" and "vertices" stages.
    """
    t0 = time.perf_counter()
    timings = {} if timings is None else timings
    device = models.device
    canonical = bound.canonical.to(device)
    T = latent.shape[0]
    deltas = []
    for start in range(0, T, DECODE_FRAMES):
        if cancel is not None and cancel():
            raise Cancelled("cancelled while decoding the motion")
        chunk = latent[None, start:start + DECODE_FRAMES].to(device)
        deltas.append(models.vae.decode(chunk, anchors[None].to(device), Gaussians.stack([canonical]))[0])
        if progress is not None:
            progress("decode", min(T, start + DECODE_FRAMES), T)
    deltas = torch.cat(deltas).float()
    if offsets is not None:
        deltas[..., :3] += offsets.to(deltas)
    if transform is not None:
        deltas = transform(deltas)
    deltas[0] = 0  # frame 0 is the canonical state exactly
    gaussians = apply_deltas(canonical, deltas)
    t0 = _clock(timings, "decode", t0)
    solver = solver or VertexSolver.from_bound(bound)
    rest = bound.rest_vertices.to(deltas)
    vertices = rest + solver.solve(deltas[..., :3].cpu()).to(deltas)
    _clock(timings, "vertices", t0)
    return deltas.cpu(), gaussians.to("cpu"), vertices.cpu()


def _repeat_context(ctx, n: int):
    from dataclasses import fields

    from gvf_core.models.dit import DiTContext

    def rep(x):
        return None if x is None else x.expand(n, *x.shape[1:])

    return DiTContext(*(rep(getattr(ctx, f.name)) for f in fields(DiTContext)))
