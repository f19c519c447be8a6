"""Test-time refinement: fit a generated motion to its driving video.

The diffusion prior gives a plausible motion; this stage makes it follow the video. It
optimises the motion latent [T, L, C] through the frozen VAE decoder in up to two phases:

1. tracks (every mode), one of two kinds:
   - ``point_fit`` (``fast``): the VAE's 2048 rest points are tracked with optical flow
     (:func:`point_tracks`) and moved freely to their tracks, keeping the rest shape's neighbour
     distances and starting from the sample (or the rigid transform below)
     (:func:`gvf_core.models.template_fit.fit_template`); a track counts only in the frames
     where that start shows its point (``frame_visibility``, :func:`start_visibility`: behind
     another part the flow is that part's); the VAE encodes the fitted points
     into the latent the next phase starts from. ``fast`` is this phase alone, and so is ``best``,
     with a longer, tighter rigid fit (below) and a point fit twice as long with the ARAP term
     (``w_point_arap``: each point's neighbourhood kept a turned copy of its rest one). Where the rigid
     transform started the fit but its fit left more than ``rigid_depth_residual`` of the tracked
     motion, the refined Gaussians then go back along their camera rays to the sample's
     distances (:func:`restore_depth`).
   - the latent fit (``track_iterations``; no preset since 2026-12-07): 256 tracked Gaussians
     (:func:`track_targets`) decoded from the latent, their projections pulled onto their
     tracks, neighbouring tracked points keeping their distances, plus the prior and temporal
     terms below.
2. images (``iterations`` > 0; no preset: after the point fit it made the 3-D error worse,
   docs/models.md): the Gaussians rendered from the video's camera are fitted to each frame,
   optionally (``residual``) with a small per-Gaussian residual deformation:

- RGB: 0.8 · L1 + 0.2 · (1 − SSIM) against the frame composited on white;
- silhouette: L1 between the rendered alpha and the object mask;
- prior: mean squared distance of the latent to the diffusion sample, so the sides the
  camera never sees stay as the prior made them;
- temporal: the squared second difference over frames of the latent's change, so frames
  fitted separately do not flicker;
- residual deformation only: local rigidity (neighbour distances of the decoded motion are
  kept, ARAP-style), temporal smoothness (second difference) and a small magnitude term.

When one rigid transform per frame explains the point tracks (``root`` auto: it leaves less
than ``rigid_residual`` of the tracked motion), that transform is fitted first (:class:`RootTransform`;
in ``fast`` without the tracks of points hidden at frame 0, ``rigid_hidden_weight``, and with a
Cauchy track loss, ``rigid_cauchy``: :func:`fit_rigid`; ``best`` fits it twice as long with half
the Cauchy scale).
With ``point_fit`` it is where the points start (and the encoded latent carries it); otherwise
it is carried, fixed, under the decoded motion, and the latent starts from, and its prior term
holds it near, the rest state. Where the transform leaves too much of the tracked motion to be
used but less than ``rigid_blend_residual``, and its motion is no further from the refined one than
``rigid_blend_disagreement`` times the refined one's travel (:func:`rigid_disagreement`), the
refined geometry is moved ``rigid_blend`` of the way to the transform's (:func:`blend_motions`; in
``fast``): the point fit reads the rays, the transform the global depth, and their errors differ.
The returned latent does not carry that mix (nor :func:`restore_depth`): both act on the decoded geometry.
The refined motion's geometry is finally
filtered over frames (``smoothing``, :func:`smooth_over_frames`) against the shake of frames
fitted a few at a time.

Frames are rendered in the object's square crop (the one the DiT sees, at ``resolution``
pixels), ``frames_per_step`` random frames per iteration (frame 0 is the canonical state
and is never moved). The frame draws come from a generator seeded with ``seed``, so a run
is deterministic. ``cancel()`` is checked every iteration; a cancelled refinement returns
the unrefined motion untouched.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gvf_core.canonical import BoundGaussians, VertexSolver
from gvf_core.cameras import Cameras
from gvf_core.gaussians import Gaussians
from gvf_core.metrics import ssim
from gvf_core.models.sampler import Cancelled
from gvf_core.models.template_fit import TemplateFitSettings, fit_template, neighbour_lengths, neighbours
from gvf_core.models.vae import apply_deltas, encode_points
from gvf_core.models.vae_inputs import anchor_indices
from gvf_core.models.video_inputs import ALPHA_THRESHOLD, VideoInputError, crop_intrinsics, prepare_video, project
from gvf_core.models.rigid_motion import (RIGID_ITERATIONS, RIGID_RESIDUAL, RIGID_SMOOTHNESS, RootTransform,
                                          explains, fit_rigid_motion, track_pixel_error, weighted_track_loss)
from gvf_core.models.video_tracks import (DISPLACEMENT_SCALE, SURFACE_POINTS, anchor_tracks, anchor_visibility,
                                          track_weights, visibility_over_frames, visibility_surface)
from gvf_core.pipeline.core import Models, Motion, Progress, decode_motion, model_anchors
from gvf_core.render import rasterize

REFINE_MODES = ("off", "fast", "best")
ROOT_MODES = ("auto", "on", "off")
MIN_MASK_FRACTION = 1e-3
"""A frame whose mask covers less of the crop than this has no object to fit."""


class RefineInputError(ValueError):
    """Video frames or masks that refinement cannot fit to."""


@dataclass(frozen=True)
class RefineSettings:
    iterations: int
    frames_per_step: int
    resolution: int  # side of the square object crop that is tracked and rendered
    lr: float = 0.2
    w_rgb: float = 0.2  # low: the video's shading is not the Gaussians' (measured, docs/models.md)
    w_silhouette: float = 1.0
    w_prior: float = 0.01
    w_temporal: float = 1.0  # squared second difference of the latent over frames (against flicker)
    residual: bool = False  # optimise a per-Gaussian residual deformation too
    residual_lr: float = 2e-3
    w_rigidity: float = 1.0
    w_smooth: float = 1.0
    w_residual: float = 0.1
    rigidity_neighbours: int = 6
    w_track: float = 1.0  # optical-flow tracks of visible points (0: off); see track_targets
    track_points: int = 256
    w_track_hidden: float = 1.0  # points behind the surface at frame 0 follow the flow of the surface in front
    track_iterations: int = 100  # first phase: tracks only, decoding just the tracked points
    track_frames: int = 12  # frames decoded per first-phase iteration (0: all)
    w_track_rigidity: float = 1.0  # first phase: neighbour distances among the tracked points are kept
    root: str = "auto"  # a rigid transform per frame under the decoded motion: auto | on | off (RootTransform)
    rigid_iterations: int = RIGID_ITERATIONS  # fit of one rigid transform per frame to the tracks alone (auto's test)
    rigid_residual: float = RIGID_RESIDUAL  # auto: on when that fit leaves less than this fraction of the tracked motion
    w_rigid_smooth: float = RIGID_SMOOTHNESS  # that fit: squared second difference over frames of the transform
    rigid_hidden_weight: float = 1.0  # that fit: weight of the tracks of points hidden at frame 0 (rest_visibility)
    rigid_cauchy: float = 0.0  # that fit: Cauchy track loss of this scale in crop pixels (0: smooth L1)
    smoothing: float = 1.0  # σ in frames of a Gaussian filter over the refined motion (0: off); smooth_over_frames
    backend: str = "auto"  # renderer backend: auto | torch | gsplat
    point_fit: bool = False  # first phase: the VAE's rest points fitted to their tracks (template_fit), then encoded
    point_fit_iterations: int = 300
    w_point_edge: float = 100.0  # that fit: neighbour distances of the rest shape kept
    w_point_prior: float = 0.01  # that fit: points held near where they started
    w_point_smooth: float = 0.1  # that fit: squared acceleration over frames
    w_point_arap: float = 0.0  # that fit: each point's neighbourhood kept as a turned copy of its rest one (ARAP)
    rigid_depth_residual: float = 1.0  # rigid start of the point fit: its depth kept where the rigid fit leaves less
    # than this fraction of the tracked motion; above, its rays at the sample's depth (restore_depth; 0: always)
    frame_visibility: bool = False  # point fit: a track counts only in the frames where the start shows its point
    point_fit_cauchy: float = 0.0  # point fit: Cauchy track loss of this scale in crop pixels (0: smooth L1)
    # the rigid transform fitted but not used: rigid_blend of its motion mixed into the refined one (blend_motions)
    # where its fit leaves less than rigid_blend_residual of the tracked motion and it is less than
    # rigid_blend_disagreement times as far from the refined motion as that travels (rigid_disagreement)
    rigid_blend: float = 0.0
    rigid_blend_residual: float = 0.0
    rigid_blend_disagreement: float = float("inf")

    def check(self) -> None:
        if self.iterations < 0 or self.frames_per_step < 1 or self.resolution < 16:
            raise ValueError(f"refinement needs iterations >= 0, frames_per_step >= 1 and resolution >= 16; got "
                             f"{self.iterations}, {self.frames_per_step}, {self.resolution}")
        if self.iterations == 0 and not self.point_fit and (self.w_track <= 0 or self.track_iterations < 1):
            raise ValueError("refinement with no image iterations needs a track phase (point_fit, or w_track > 0 "
                             "and track_iterations >= 1): otherwise nothing is fitted")
        if self.point_fit and self.point_fit_iterations < 1:
            raise ValueError(f"point_fit needs point_fit_iterations >= 1, got {self.point_fit_iterations}")
        if self.smoothing < 0:
            raise ValueError(f"smoothing is a σ in frames (>= 0), got {self.smoothing}")
        if self.rigid_depth_residual < 0:
            raise ValueError(f"rigid_depth_residual is a fraction of the tracked motion (>= 0), got "
                             f"{self.rigid_depth_residual}")
        if not 0 <= self.rigid_blend <= 1 or self.rigid_blend_residual < 0 or self.rigid_blend_disagreement < 0:
            raise ValueError(f"rigid_blend is a weight in [0, 1], rigid_blend_residual a fraction of the tracked "
                             f"motion and rigid_blend_disagreement a ratio (both >= 0); got {self.rigid_blend}, "
                             f"{self.rigid_blend_residual}, {self.rigid_blend_disagreement}")
        if self.root not in ROOT_MODES:
            raise ValueError(f"unknown root mode {self.root!r}; choose one of {ROOT_MODES}")


# fast: the point fit alone (the rigid transform as its start where it explains the tracks):
# 95.9 % of the unrefined vertex error on the 64 validation clips from a 1-draw sample, 100.4 %
# from the default 8-draw one, 97.8 % with rigid_rays_only (test clips 98.8 %), 98.0 % (99.0 %) from the
# sample with the lift's rigid threshold at 0.115; the latent track fit after it
# rendered the input view 4 dB closer but put the 3-D error back to 101 % (16 clips), and image
# iterations after the track phase added no 3-D accuracy for 4.5x the time (docs/models.md)
# rigid_rays_only: on the 13 validation clips where the rigid transform starts the point fit, its
# rays with the sample's depth 0.0461 against 0.0505 (its depth) and 0.0468 (no rigid start);
# frame_visibility (2026-12-04): 98.0 % -> 95.8 % of unrefined on validation (clips 16-63, not
# looked at while it was found: 95.4 %), 26 -> 12 clips worse than unrefined; then the Cauchy
# track loss and 128² tracks (64² before): 95.1 % (test clips 99.0 -> 97.4 -> 97.3 %)
# (rigid_rays_only, until 2026-12-06, is rigid_depth_residual 0.) rigid_hidden_weight 0 and
# rigid_cauchy 1 (2026-12-06): the rigid fit without the tracks of points hidden at frame 0,
# stray tracks let go, reads depth well where it leaves little of the tracked motion: its own
# depth below 0.115 (chosen on 66 training clips: 96.3 % -> 88.0 % of unrefined), the sample's
# above; validation 95.1 % -> 91.5 % of unrefined, test 97.3 % -> 96.3 % (docs/models.md)
# rigid_blend 0.5 below 0.4 and a disagreement of 2 (2026-12-07): the transform fitted but not used
# mixed in half; chosen on 128 training clips (94.3 % -> 86.2 % of unrefined there), then measured
# once: validation 91.5 % -> 86.4 %, test 96.3 % -> 81.0 % (docs/models.md)
_FAST = RefineSettings(iterations=0, frames_per_step=8, resolution=128, point_fit=True, track_iterations=0,
                       frame_visibility=True, point_fit_cauchy=1.0, rigid_hidden_weight=0.0, rigid_cauchy=1.0,
                       rigid_depth_residual=0.115, rigid_blend=0.5, rigid_blend_residual=0.4,
                       rigid_blend_disagreement=2.0, point_fit_iterations=150)
# best (2026-12-07): fast with a rigid fit twice as long and a tighter Cauchy scale (0.5 px), which
# lets more stray tracks go and only converges with the longer fit (0.5 px at 300 iterations: 86.8 %);
# chosen on the 24 training clips of fast's point-fit count (fast 85.2 % of unrefined there, best
# 84.9 %, 9.0 -> 10.9 s per clip), then measured once: validation 86.3 -> 86.0 % of unrefined, test
# 81.5 -> 83.0 % (mostly one clip): no better than fast within what 64 clips tell (docs/models.md).
# Then (2026-12-07, last) the point fit with the ARAP term (w_point_arap 10) and 300 iterations: on
# those 24 clips 84.9 -> 83.7 % (150 iterations 84.2 %, 600 83.7 %); measured once: validation 86.0 ->
# 84.8 % (better on 39 clips, worse on 16), novel views 28.96 -> 29.21 dB, test 83.0 -> 81.6 % (fast 81.5 %);
# refinement ~23 s per clip on one CPU thread (docs/models.md).
# Before, best was the latent track fit plus 100 image iterations with a residual deformation:
# 109.5 % of unrefined (16 validation clips), ~180 s per clip; fast's point fit followed by 40 image
# iterations (RGB + SSIM and silhouette, or silhouette alone) gave 89.1 % on those 24 training
# clips at 66 s per clip, so no preset renders frames (the image phase stays a RefineSettings option).
REFINE_PRESETS: dict[str, RefineSettings] = {
    "fast": _FAST,
    "best": replace(_FAST, rigid_iterations=600, rigid_cauchy=0.5, w_point_arap=10.0, point_fit_iterations=300),
}


def default_refine_mode(device: str) -> str:
    """What ``auto`` means on ``device``: ``fast`` on every device. On the CPU it costs ~6.5 s per
    24 frames on one thread, against ~5 s for generation; from the default 8-draw sample it takes
    the vertex error to 86.3 % of unrefined and renders the input view 2.2 dB closer to the video
    with less jitter (validation set, docs/models.md); on a GPU it is not yet measured but only
    cheaper."""
    del device  # one answer today; kept so the choice stays per device
    return "fast"


def refine_settings(mode: str, device: str = "cpu", **overrides) -> RefineSettings | None:
    """Settings of ``mode`` (off | fast | best | auto); None for off."""
    if mode == "auto":
        mode = default_refine_mode(device)
    if mode not in REFINE_MODES:
        raise ValueError(f"unknown refinement mode {mode!r}; choose one of {('auto', *REFINE_MODES)}")
    if mode == "off":
        return None
    settings = replace(REFINE_PRESETS[mode], **overrides)
    settings.check()
    return settings


@dataclass
class RefineTargets:
    """What refinement fits to: the object crop of every frame."""

    rgb: Tensor  # [T, S, S, 3] frames composited on white
    mask: Tensor  # [T, S, S, 1] object mask
    camera: Cameras  # [1] crop intrinsics + world_to_camera (model frame), for render_size pixels
    size: int  # side of the compared images
    render_size: int = 0  # side the Gaussians are rendered at before the same antialiased resize (0: size)


def refine_targets(frames: np.ndarray, K, world_to_camera: Tensor, resolution: int, masks: np.ndarray | None = None,
                   source: str = "video") -> RefineTargets:
    """The object crops refinement fits to.

    ``frames`` uint8 [T, H, W, 3|4]; ``K`` [3, 3] their intrinsics; ``world_to_camera``
    [4, 4] in the model frame. The object mask is ``masks`` [T, H, W] (0..1 or 0..255)
    when given, else the frames' alpha, else a plain background is keyed out. A missing
    mask (no alpha, no plain background) or a frame whose mask is empty is an error that
    names the frames.
    """
    frames = np.asarray(frames)
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != frames.shape[:3]:
            raise RefineInputError(f"{source}: masks must be [T, H, W] = {frames.shape[:3]}, got {masks.shape}")
        m = masks.astype(np.float32)
        m = m / 255.0 if m.max() > 1.0 else m
        frames = np.concatenate([frames[..., :3], (np.clip(m, 0, 1) * 255).round().astype(np.uint8)[..., None]], -1)
    try:
        video = prepare_video(frames, K, resolution, source=source)
    except VideoInputError as exc:
        raise RefineInputError(f"{exc}; refinement needs an object mask per frame (pass masks=, an RGBA video, "
                               "or a plain background)") from exc
    pixels = video.pixels.permute(0, 2, 3, 1)  # [T, S, S, 4]
    covered = (pixels[..., 3] > ALPHA_THRESHOLD).float().flatten(1).mean(1)
    empty = [int(i) for i in torch.nonzero(covered < MIN_MASK_FRACTION).flatten()]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" …" if len(empty) > 10 else "")
        raise RefineInputError(f"{source}: the object mask is empty in frame(s) {shown}; refinement fits every frame "
                               "to its mask, so the object must be visible in each (trim the clip or fix the masks)")
    # the frames were resized from the crop's own pixels with an antialiased filter; rendering at up
    # to twice the size and resizing with the same filter makes the two comparable at the edges
    side = video.crop[2]
    render_size = int(max(8, min(side, 2 * resolution)))
    K = crop_intrinsics(torch.as_tensor(np.asarray(K), dtype=torch.float32), *video.crop, render_size)
    camera = Cameras(K=K[None], world_to_camera=world_to_camera.float()[None])
    return RefineTargets(rgb=pixels[..., :3].contiguous(), mask=pixels[..., 3:].contiguous(), camera=camera,
                         size=video.size, render_size=render_size)


def render_crops(gaussians: Gaussians, targets: RefineTargets, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """(rgb [F, S, S, 3], alpha [F, S, S, 1]) of Gaussians [F, N] as the targets' crops show them."""
    R, S = targets.render_size or targets.size, targets.size
    out = rasterize(gaussians, targets.camera, R, R, background=1.0, backend=backend)
    rgb, alpha = out.rgb[:, 0], out.alpha[:, 0]
    if R != S:
        both = torch.cat([rgb, alpha], -1).permute(0, 3, 1, 2)
        both = F.interpolate(both, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
        rgb, alpha = both[:, :3].permute(0, 2, 3, 1), both[:, 3:].permute(0, 2, 3, 1)
    return rgb, alpha


@dataclass
class TrackTargets:
    """Where visible points of the asset go in the video (optical flow, video_tracks.py)."""

    index: Tensor  # [P] canonical Gaussians that are tracked
    position: Tensor  # [T, P, 2] their tracked position, crop units (0..1)
    weight: Tensor  # [T, P] trust: flow consistency (straight or chained), hidden points, on the object


def track_targets(canonical: Gaussians, targets: RefineTargets, points: int, hidden_weight: float = 1.0) -> TrackTargets:
    """Track ``points`` farthest-point-sampled canonical Gaussians through the targets' crops.

    Points hidden at frame 0 (depth test against 1024 surface samples) follow the flow of
    the surface in front of them, with ``hidden_weight`` (measured on 16 validation clips:
    their image-plane motion is read about as well as the visible points', 1.6 vs 1.3 px
    error against 4.3 px of motion); a point's weight in a frame falls off with the
    forward-backward error of its straight track, is CHAINED_TRACK_WEIGHT where that check
    failed and the chained track was used, and is 0 where the track leaves the object mask.
    """
    means = canonical.means.detach().cpu().float()
    index = tracked_gaussians(means, points)
    position, weight = point_tracks(means[index], means, targets, hidden_weight)
    return TrackTargets(index=index, position=position, weight=weight)


def tracked_gaussians(means: Tensor, points: int) -> Tensor:
    """Indices [P] (on the CPU) of the ``points`` farthest-point-sampled canonical Gaussians, of
    means [N, 3] (on the CPU), that refinement tracks (all of them when there are fewer)."""
    return anchor_indices(means, min(points, len(means))).cpu()


def point_tracks(points: Tensor, means: Tensor, targets: RefineTargets, hidden_weight: float = 1.0) -> tuple[Tensor, Tensor]:
    """(tracked positions [T, P, 2] in crop units, trust [T, P]) of rest ``points`` [P, 3] through
    the targets' crops; ``means`` [N, 3] (the canonical Gaussians) decide which points are hidden
    at frame 0 (see :func:`track_targets` for the weights)."""
    points = points.detach().cpu().float()
    K = targets.camera.K[0].cpu().float()
    w2c = targets.camera.world_to_camera[0].cpu().float()
    screen = project(points, K, w2c, targets.render_size or targets.size)
    visible = rest_visibility(points, means, targets)
    pixels = torch.cat([targets.rgb, targets.mask], -1).permute(0, 3, 1, 2).cpu()
    feats = anchor_tracks(pixels, screen, visible)
    return screen[None] + feats[..., :2] / DISPLACEMENT_SCALE, track_weights(feats, hidden_weight)


def rest_visibility(points: Tensor, means: Tensor, targets: RefineTargets) -> Tensor:
    """[P] (on the CPU) 1.0 where rest ``points`` [P, 3] are not behind the canonical Gaussians
    ``means`` [N, 3] in the targets' first frame (the depth test of :func:`point_tracks`), else 0.0."""
    camera = targets.camera
    return anchor_visibility(points.detach().cpu().float(), visibility_surface(means.detach().cpu().float()),
                             camera.K[0].cpu().float(), camera.world_to_camera[0].cpu().float(),
                             targets.render_size or targets.size)


@dataclass
class RefineOutcome:
    motion: Motion  # the refined motion, or the input one when cancelled
    cancelled: bool
    report: dict


@contextmanager
def _frozen(module: torch.nn.Module):
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def image_losses(rendered_rgb: Tensor, rendered_alpha: Tensor, rgb: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """RGB (0.8 L1 + 0.2 (1 − SSIM)) and silhouette (L1 of alpha vs mask) of images [..., S, S, C]."""
    l1 = (rendered_rgb - rgb).abs().mean()
    return {"rgb": 0.8 * l1 + 0.2 * (1 - ssim(rendered_rgb, rgb)),
            "silhouette": (rendered_alpha - mask).abs().mean()}


def track_error(points: Tensor, tracks: TrackTargets, frames: Tensor, crops: RefineTargets) -> Tensor:
    """[F, P] distance, in crop pixels, between the projections of the tracked Gaussians'
    positions ``points`` [F, P, 3] (model frame) in ``frames`` and their tracks (tensors on
    ``points``' device)."""
    camera = crops.camera
    return track_pixel_error(points, tracks.position[frames], camera.K[0], camera.world_to_camera[0],
                             crops.render_size or crops.size, crops.size)


def track_loss(points: Tensor, tracks: TrackTargets, frames: Tensor, crops: RefineTargets) -> Tensor:
    """Weighted smooth L1 of :func:`track_error`."""
    return weighted_track_loss(track_error(points, tracks, frames, crops), tracks.weight[frames])


def latent_terms(latent: Tensor, prior: Tensor) -> dict[str, Tensor]:
    """Prior (mean squared distance to the diffusion sample) and temporal (squared second
    difference over frames of the refinement's change) terms of a latent [T, L, C]."""
    change = latent - prior
    temporal = (change[2:] - 2 * change[1:-1] + change[:-2]).pow(2).mean() if len(latent) >= 3 else change.sum() * 0
    return {"prior": change.pow(2).mean(), "temporal": temporal}


def smooth_over_frames(deltas: Tensor, sigma: float) -> Tensor:
    """Deltas [T, N, 14] with their geometry (positions, rotations) filtered over frames by a
    Gaussian of ``sigma`` frames. The clip's ends are extended by point reflection, so a steady
    motion passes unchanged (replicating the end frames would pull them back by a third of a frame's
    motion). Refinement fits frames a few at a time to noisy flow; this takes out the frame-to-frame
    shake it leaves (measured on 16 validation clips, σ = 1: jitter 0.0089 → 0.0054 against 0.0050
    in the ground truth, vertex error 0.0411 → 0.0407)."""
    T = deltas.shape[0]
    radius = min(int(np.ceil(3 * sigma)), T - 1)
    if sigma <= 0 or radius < 1:
        return deltas
    taps = torch.arange(-radius, radius + 1, device=deltas.device, dtype=deltas.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    left = 2 * deltas[:1] - deltas[1:radius + 1].flip(0)
    right = 2 * deltas[-1:] - deltas[-radius - 1:-1].flip(0)
    padded = torch.cat([left, deltas, right])
    smooth = sum(kernel[k] * padded[k:k + T] for k in range(2 * radius + 1))
    out = deltas.clone()
    out[..., :3], out[..., 10:] = smooth[..., :3], smooth[..., 10:]
    return out


def restore_depth(deltas: Tensor, reference: Tensor, means: Tensor, world_to_camera: Tensor) -> Tensor:
    """``deltas`` [T, N, 14] with each Gaussian moved along its camera ray to the distance from the
    camera it has under ``reference`` [T, N, 14]; ``means`` [N, 3] the canonical positions,
    ``world_to_camera`` [4, 4] the video's camera (model frame).

    One view shows where a point is across the camera's rays well, how far along its ray poorly.
    Where the rigid transform starts the point fit but its fit leaves more than
    ``rigid_depth_residual`` of the tracked motion, its rays are kept and the diffusion sample's
    depth (``reference``) replaces its own: the transform reads depth from the growth of an object
    a few dozen pixels wide, and an asset that deforms as it shrinks can pass for one that moves
    away; the sample, which saw the lift and the video, was closer there (docs/models.md).
    """
    R, t = world_to_camera[:3, :3], world_to_camera[:3, 3]
    refined = (means + deltas[..., :3]) @ R.T + t
    distance = ((means + reference[..., :3]) @ R.T + t).norm(dim=-1, keepdim=True)
    moved = refined / refined.norm(dim=-1, keepdim=True).clamp(min=1e-12) * distance
    out = deltas.clone()
    out[..., :3] = (moved - t) @ R - means
    return out


def blend_motions(deltas: Tensor, other: Tensor, rotations: Tensor, weight: float) -> Tensor:
    """``deltas`` [T, N, 14] with their geometry moved ``weight`` of the way to ``other``'s: positions
    mixed linearly, rotations (``rotations`` [N, 4] the canonical quaternions the deltas add to) by a
    normalised linear mix of the sign-aligned quaternions; colour, opacity and scale as in ``deltas``.

    Where the rigid transform is fitted but leaves too much of the tracked motion to be used, the
    refined motion and that transform are two estimates with different errors: the point fit
    follows the tracks across the camera's rays but reads depth poorly, the transform reads the
    global depth from the whole shape's growth and turn but misses the deformation. Their mix is
    closer than either on most such clips (docs/models.md)."""
    q, r = rotations + deltas[..., 10:], rotations + other[..., 10:]
    r = torch.where((q * r).sum(-1, keepdim=True) < 0, -r, r)
    mixed = q + weight * (r - q)
    mixed = mixed / mixed.norm(dim=-1, keepdim=True).clamp(min=1e-12) * q.norm(dim=-1, keepdim=True)
    out = deltas.clone()
    out[..., :3] = deltas[..., :3] + weight * (other[..., :3] - deltas[..., :3])
    out[..., 10:] = mixed - rotations
    return out


def rigid_disagreement(deltas: Tensor, rigid: Tensor) -> float:
    """Mean distance between the positions of ``deltas`` and ``rigid`` [T, N, 14] over the mean
    distance ``deltas`` move the Gaussians from rest: how much further the rigid transform's motion
    is from the refined one than the refined one goes. Large where a rigid motion was read from a
    squash, a taper or a fast deformation (its depth travel is the object's change of size)."""
    moved = float(deltas[..., :3].norm(dim=-1).mean())
    return float((rigid[..., :3] - deltas[..., :3]).norm(dim=-1).mean()) / max(moved, 1e-12)


def fit_rigid(root: RootTransform, canonical: Gaussians, tracks: TrackTargets, crops: RefineTargets,
              iterations: int, smoothness: float = RIGID_SMOOTHNESS, hidden_weight: float = 1.0,
              cauchy: float = 0.0) -> dict:
    """Fit ``root`` (in place) so the tracked canonical points, moved only by it, follow their
    tracks (:func:`gvf_core.models.rigid_motion.fit_rigid_motion`, with a Cauchy loss of scale
    ``cauchy`` pixels when > 0); the tracks of points hidden at frame 0 count ``hidden_weight``
    times. Returns the residual and the tracked motion in crop pixels.

    A point behind the surface at frame 0 has the flow of the surface in front of it, which a
    rigid motion does not share: on a turn, the far side moves against the near one. Such
    tracks dragged the transform's depth (docs/models.md)."""
    camera = crops.camera
    points = canonical.means[tracks.index]
    weight = tracks.weight
    if hidden_weight != 1.0:
        shown = rest_visibility(points, canonical.means, crops).to(weight)
        weight = weight * (shown + hidden_weight * (1 - shown))[None]
    return fit_rigid_motion(root, points, tracks.position, weight, camera.K[0], camera.world_to_camera[0],
                            crops.render_size or crops.size, crops.size, iterations, smoothness, cauchy)


def _fit_tracks(vae, canonical: Gaussians, anchors: Tensor, latent: Tensor, prior: Tensor, tracks: TrackTargets,
                crops: RefineTargets, settings: RefineSettings, generator: torch.Generator,
                progress: Progress | None, cancel: Callable[[], bool] | None,
                root: RootTransform | None = None) -> list[dict]:
    """First phase: move ``latent`` (in place) so the tracked points follow their tracks.

    Only the P tracked Gaussians are decoded (the decoder treats every Gaussian on its
    own, so their deltas are exactly what a full decode gives them), ``track_frames``
    random frames per iteration (seeded), so an iteration costs a fraction of a rendered
    one. A rigidity term keeps the distances between neighbouring tracked points: a limb
    that turns toward the camera then moves in depth instead of shrinking on the screen.
    """
    device = latent.device
    index = tracks.index.to(device)
    subset = canonical.select(index)
    stacked = Gaussians.stack([subset])
    rest = subset.means
    edges = neighbours(rest, settings.rigidity_neighbours).to(device)
    d0 = neighbour_lengths(rest, edges)
    spacing = d0.mean().clamp(min=1e-6)
    optimizer = torch.optim.Adam([latent], lr=settings.lr)
    T = latent.shape[0]
    history = []
    for it in range(settings.track_iterations):
        if cancel is not None and cancel():
            break
        optimizer.param_groups[0]["lr"] = settings.lr * 0.5 * (1 + np.cos(np.pi * it / settings.track_iterations))
        if 0 < settings.track_frames < T - 1:
            frames = 1 + torch.randperm(T - 1, generator=generator)[:settings.track_frames].to(device)
        else:
            frames = torch.arange(1, T, device=device)
        deltas = vae.decode(latent[None, frames], anchors[None], stacked)[0]  # [F, P, 14]
        pos = rest + deltas[..., :3]
        d = neighbour_lengths(pos, edges)
        if root is not None:
            pos = root.apply(pos, frames)
        losses = {"track": track_loss(pos, tracks, frames, crops),
                  "track_rigidity": ((d - d0) / spacing).pow(2).mean(), **latent_terms(latent, prior)}
        total = (settings.w_track * losses["track"] + settings.w_track_rigidity * losses["track_rigidity"]
                 + settings.w_prior * losses["prior"] + settings.w_temporal * losses["temporal"])
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        with torch.no_grad():
            latent.grad[0] = 0
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()} | {"total": float(total.detach())})
        if progress is not None:
            progress("refine tracks", it + 1, settings.track_iterations)
    return history


def refine_motion(models: Models, bound: BoundGaussians, motion: Motion, targets: RefineTargets,
                  settings: RefineSettings, seed: int = 0, progress: Progress | None = None,
                  cancel: Callable[[], bool] | None = None, solver: VertexSolver | None = None,
                  rest_points: Tensor | None = None) -> RefineOutcome:
    """Fit ``motion`` (model frame, as :func:`generate_motion` returns it) to ``targets``.

    ``rest_points`` [P, 3]: the VAE's surface points at the rest state (default: the ones the
    motion was generated through, ``motion.rest_points``); the point fit (``point_fit``) needs them.
    """
    settings.check()
    rest_points = motion.rest_points if rest_points is None else rest_points
    if settings.point_fit and rest_points is None:
        raise ValueError("refinement with point_fit needs the VAE's rest points: pass rest_points= or a motion "
                         "from generate_motion (which records them)")
    T = motion.latent.shape[0]
    if targets.rgb.shape[0] != T:
        raise RefineInputError(f"the motion has {T} frames but the video crops {targets.rgb.shape[0]}")
    start = time.perf_counter()
    device = models.device
    vae = models.vae
    canonical = bound.canonical.to(device)
    anchors = model_anchors(models, canonical)
    stacked = Gaussians.stack([canonical])
    prior = motion.latent.to(device).float()
    # appearance (colour, opacity, scale) stays as the prior decoded it: only the geometry
    # (positions, rotations) may move, so the fit cannot repaint the asset to match a frame
    appearance = motion.deltas.to(device).float()
    latent = prior.clone().requires_grad_(True)
    params = [{"params": [latent], "lr": settings.lr}]
    offsets = None
    if settings.residual:
        offsets = torch.zeros(T, canonical.num, 3, device=device, requires_grad=True)
        params.append({"params": [offsets], "lr": settings.residual_lr})
        edges = neighbours(canonical.means, settings.rigidity_neighbours).to(device)
        spacing2 = (canonical.means[:, None] - canonical.means[edges]).pow(2).sum(-1).mean().clamp(min=1e-12)
    rgb, mask = targets.rgb.to(device), targets.mask.to(device)
    crops = replace(targets, camera=targets.camera.to(device))
    generator = torch.Generator().manual_seed(seed)
    movable = T - 1
    per_step = min(settings.frames_per_step, movable)
    history = []
    if movable < 1:
        return RefineOutcome(motion, False, {"iterations": 0, "seconds": 0.0, "note": "a single frame: nothing to fit"})
    tracks, point_track = _clip_tracks(canonical, targets, settings, rest_points)
    if tracks is not None:
        tracks = TrackTargets(*(x.to(device) for x in (tracks.index, tracks.position, tracks.weight)))
    root, rigid, blend_root = None, None, None
    if tracks is not None and settings.root != "off":
        candidate = RootTransform(T, canonical.means)
        with torch.enable_grad():
            rigid = fit_rigid(candidate, canonical, tracks, crops, settings.rigid_iterations, settings.w_rigid_smooth,
                              settings.rigid_hidden_weight, settings.rigid_cauchy)
        rigid["used"] = settings.root == "on" or explains(rigid, settings.rigid_residual)
        if rigid["used"]:
            root = candidate
            for p in root.parameters():
                p.requires_grad_(False)
            # the transform carries the whole rigid motion, so the latent starts from (and is held
            # near) the rest state: the sample's own guess of that motion would be applied twice
            prior = prior[:1].expand_as(prior).clone()
            with torch.no_grad():
                latent.copy_(prior)
        elif settings.rigid_blend > 0 and explains(rigid, settings.rigid_blend_residual):
            blend_root = candidate
            for p in blend_root.parameters():
                p.requires_grad_(False)
        rigid["blend"] = 0.0  # the weight, where transform() below mixes the transform in
    point_report = None
    sample_depth = False  # restore_depth to the sample's distances (rigid_depth_residual)
    if settings.point_fit:
        t0 = time.perf_counter()
        stage = None if progress is None else (lambda i, n: progress("refine tracks", i, n))
        try:
            fitted, kept = _fit_points(vae, canonical, anchors, rest_points.to(device).float(), point_track, motion,
                                       targets, settings, root, stage, cancel)
        except Cancelled:
            return RefineOutcome(motion, True, {"iterations": 0, "point_fit": "cancelled", "cancelled": True,
                                                "seconds": time.perf_counter() - start, "settings": asdict(settings)})
        # the fitted points carry the whole motion, the rigid transform included: the latent starts
        # from (and any image phase holds it near) their encoding
        prior = fitted
        sample_depth = root is not None and not explains(rigid, settings.rigid_depth_residual)
        root = None
        with torch.no_grad():
            latent.copy_(fitted)
        point_report = {"points": len(rest_points), "seconds": time.perf_counter() - t0, "sample_depth": sample_depth,
                        "track_weight_kept": kept}
    optimizer = torch.optim.Adam(params)
    with _frozen(vae), torch.enable_grad():
        track_history = []
        if tracks is not None and settings.track_iterations > 0:
            track_history = _fit_tracks(vae, canonical, anchors, latent, prior, tracks, crops, settings, generator,
                                        progress, cancel, root)
            if len(track_history) < settings.track_iterations:  # cancelled
                return RefineOutcome(motion, True, {"iterations": 0, "track_iterations": len(track_history),
                                                    "seconds": time.perf_counter() - start, "cancelled": True,
                                                    "settings": asdict(settings)})
        for it in range(settings.iterations):
            if cancel is not None and cancel():
                return RefineOutcome(motion, True, {"iterations": it, "track_iterations": len(track_history),
                                                    "seconds": time.perf_counter() - start, "cancelled": True,
                                                    "settings": asdict(settings)})
            frames = 1 + torch.randperm(movable, generator=generator)[:per_step].to(device)
            lr_scale = 0.5 * (1 + np.cos(np.pi * it / settings.iterations))  # cosine decay
            for group, base in zip(optimizer.param_groups, (settings.lr, settings.residual_lr)):
                group["lr"] = base * lr_scale
            deltas = vae.decode(latent[None, frames], anchors[None], stacked)[0]  # [F, N, 14]
            positions = deltas[..., :3] if offsets is None else deltas[..., :3] + offsets[frames]
            moved = torch.cat([positions, appearance[frames, :, 3:10], deltas[..., 10:]], -1)
            if root is not None:
                moved = root.move(canonical, moved, frames)
            rendered, alpha = render_crops(apply_deltas(canonical, moved), crops, settings.backend)
            losses = {**image_losses(rendered, alpha, rgb[frames], mask[frames]), **latent_terms(latent, prior)}
            total = (settings.w_rgb * losses["rgb"] + settings.w_silhouette * losses["silhouette"]
                     + settings.w_prior * losses["prior"] + settings.w_temporal * losses["temporal"])
            if tracks is not None:
                tracked = canonical.means[tracks.index] + moved[:, tracks.index, :3]
                losses["track"] = track_loss(tracked, tracks, frames, crops)
                total = total + settings.w_track * losses["track"]
            if offsets is not None:
                base = canonical.means + deltas[..., :3].detach()  # decoded positions, no residual
                pos = base + offsets[frames]
                d_new, d_old = neighbour_lengths(pos, edges), neighbour_lengths(base, edges)
                losses["rigidity"] = (d_new - d_old).pow(2).mean() / spacing2
                acc = offsets[2:] - 2 * offsets[1:-1] + offsets[:-2] if T >= 3 else offsets[:0]
                losses["smooth"] = acc.pow(2).sum(-1).mean() / spacing2 if T >= 3 else offsets.sum() * 0
                losses["residual"] = offsets.pow(2).sum(-1).mean() / spacing2
                total = total + (settings.w_rigidity * losses["rigidity"] + settings.w_smooth * losses["smooth"]
                                 + settings.w_residual * losses["residual"])
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            with torch.no_grad():
                latent.grad[0] = 0  # frame 0 stays the canonical state
            optimizer.step()
            history.append({k: float(v.detach()) for k, v in losses.items()} | {"total": float(total.detach())})
            if progress is not None:
                progress("refine", it + 1, settings.iterations)
    latent = latent.detach()
    latent[0] = prior[0]
    offsets = None if offsets is None else offsets.detach()

    def transform(d: Tensor) -> Tensor:
        if root is not None:
            d = root.move(canonical, d, torch.arange(T, device=d.device))
        if sample_depth:
            d = restore_depth(d, motion.deltas.to(d), canonical.means.to(d), crops.camera.world_to_camera[0].to(d))
        if blend_root is not None:
            frames = torch.arange(T, device=d.device)
            rigid_deltas = blend_root.move(canonical, torch.zeros_like(d), frames)
            rigid["disagreement"] = rigid_disagreement(d, rigid_deltas)
            if rigid["disagreement"] < settings.rigid_blend_disagreement:
                d = blend_motions(d, rigid_deltas, canonical.rotations.to(d), settings.rigid_blend)
                rigid["blend"] = settings.rigid_blend
        return smooth_over_frames(d, settings.smoothing)

    deltas, _, vertices = decode_motion(models, bound, latent, anchors, offsets=offsets, solver=solver,
                                        transform=transform)
    deltas[..., 3:10] = motion.deltas[..., 3:10]
    gaussians = apply_deltas(bound.canonical.to("cpu"), deltas)
    seconds = time.perf_counter() - start
    refined = Motion(latent.cpu(), deltas, gaussians, vertices, motion.magnitude, motion.predicted_magnitude,
                     {**motion.timings, "refine": motion.timings.get("refine", 0.0) + seconds}, motion.lift,
                     rest_points)
    report = {"iterations": settings.iterations, "track_iterations": len(track_history), "seconds": seconds,
              "cancelled": False, "settings": asdict(settings)}
    if history:
        head, tail = history[: max(1, len(history) // 10)], history[-max(1, len(history) // 10):]
        report["loss_first"] = {k: float(np.mean([h[k] for h in head])) for k in head[0]}
        report["loss_last"] = {k: float(np.mean([h[k] for h in tail])) for k in tail[0]}
    if track_history:
        report["track_loss_first"], report["track_loss_last"] = track_history[0], track_history[-1]
    if rigid is not None:
        report["rigid"] = rigid
    if point_report is not None:
        report["point_fit"] = point_report
    return RefineOutcome(refined, False, report)


def _clip_tracks(canonical: Gaussians, targets: RefineTargets, settings: RefineSettings,
                 rest_points: Tensor | None) -> tuple[TrackTargets | None, tuple[Tensor, Tensor] | None]:
    """The tracked Gaussians (``w_track`` > 0, :func:`track_targets`) and the rest points' (tracked
    positions, trust) (``point_fit``), both from one optical-flow pass over the crops (on the CPU)."""
    if settings.w_track <= 0 and not settings.point_fit:
        return None, None
    means = canonical.means.detach().cpu().float()
    tracked = settings.w_track > 0
    index = tracked_gaussians(means, settings.track_points) if tracked else torch.zeros(0, dtype=torch.long)
    extra = rest_points.detach().cpu().float() if settings.point_fit else means[:0]
    position, weight = point_tracks(torch.cat([means[index], extra]), means, targets, settings.w_track_hidden)
    n = len(index)
    # contiguous copies: the fits then reduce in the same order as on separately tracked sets
    gaussians = TrackTargets(index, position[:, :n].contiguous(), weight[:, :n].contiguous())
    points = (position[:, n:].contiguous(), weight[:, n:].contiguous())
    return (gaussians if tracked else None), (points if settings.point_fit else None)


def _fit_points(vae, canonical: Gaussians, anchors: Tensor, points: Tensor, tracked: tuple[Tensor, Tensor],
                motion: Motion, targets: RefineTargets, settings: RefineSettings, root: RootTransform | None,
                progress, cancel) -> tuple[Tensor, float]:
    """Point-fit phase: the latent [T, L, C] of the rest ``points`` [P, 3] fitted to their ``tracked``
    (positions [T, P, 2], trust [T, P]) (:func:`gvf_core.models.template_fit.fit_template`), starting
    from ``root`` (the rigid transform, when it explains the tracks) or else from the motion's own
    displacement of each point (that of its nearest canonical Gaussian); and the fraction of the
    tracks' weight kept (below 1 with ``frame_visibility``, :func:`start_visibility`)."""
    T = motion.latent.shape[0]
    with torch.no_grad():
        if root is not None:
            frames = torch.arange(T, device=points.device)
            start = root.apply(points[None].expand(T, -1, -1), frames) - points[None]
        else:
            nearest = torch.cdist(points.cpu(), canonical.means.detach().cpu().float()).argmin(1)
            start = motion.deltas[:, nearest, :3].float().to(points.device)
        start[0] = 0
    position, weight = tracked
    camera = targets.camera
    kept = 1.0
    if settings.frame_visibility:
        shown = start_visibility(canonical, motion, root, points + start, targets)
        total = float(weight.sum())
        weight = weight * shown.to(weight)
        kept = float(weight.sum()) / total if total > 0 else 1.0
    fit = TemplateFitSettings(iterations=settings.point_fit_iterations, w_edge=settings.w_point_edge,
                              w_prior=settings.w_point_prior, w_smooth=settings.w_point_smooth,
                              cauchy=settings.point_fit_cauchy, w_arap=settings.w_point_arap)
    displacement = fit_template(points, start, position.to(points.device), weight.to(points.device),
                                camera.K[0].to(points.device), camera.world_to_camera[0].to(points.device),
                                targets.render_size or targets.size, targets.size, fit, progress, cancel)
    with torch.no_grad():
        return encode_points(vae, points, anchors, displacement).float(), kept


def start_visibility(canonical: Gaussians, motion: Motion, root: RootTransform | None, points: Tensor,
                     targets: RefineTargets) -> Tensor:
    """[T, P] 1.0 where the point fit's start shows ``points`` [T, P, 3] (model frame, posed as the
    start poses them) in frame t: not behind the surface that start poses — the canonical
    Gaussians moved by ``root`` when the rigid transform starts the fit, else by the sample.

    Optical flow at a point that has gone behind another part is the flow of that part (a leg
    that passes behind the body moves with the body there), so ``frame_visibility`` counts a
    track only in the frames where its point is in front (measured in docs/models.md).
    """
    T = points.shape[0]
    rest = canonical.means.detach().cpu().float()
    index = anchor_indices(rest, min(SURFACE_POINTS, len(rest))).cpu()  # the surface point_tracks tests against
    with torch.no_grad():
        if root is not None:
            frames = torch.arange(T, device=canonical.means.device)
            surface = root.apply(canonical.means[index.to(canonical.means.device)][None].expand(T, -1, -1), frames)
        else:
            surface = rest[index][None] + motion.deltas[:, index, :3].float().cpu()
    camera = targets.camera
    return visibility_over_frames(points.detach().cpu().float(), surface.detach().cpu().float(),
                                  camera.K[0].cpu().float(), camera.world_to_camera[0].cpu().float(),
                                  targets.render_size or targets.size)


__all__ = ["REFINE_MODES", "REFINE_PRESETS", "ROOT_MODES", "RefineInputError", "RefineOutcome", "RefineSettings",
           "RefineTargets", "RootTransform", "TrackTargets", "blend_motions", "default_refine_mode", "fit_rigid",
           "image_losses", "latent_terms", "point_tracks", "refine_motion", "refine_settings", "refine_targets",
           "restore_depth", "rest_visibility", "rigid_disagreement", "smooth_over_frames", "start_visibility",
           "track_error", "track_loss", "track_targets", "tracked_gaussians"]
