"""``animate()`` and ``extend()``: a mesh and a driving video → an animation.

animate: read and check the inputs → normalise the mesh into the model frame → canonical
Gaussians bound to its faces → (per segment of at most ``segment_frames`` frames) DiT
sampling, VAE decoding, vertex solve → back to the input's frame and vertex order.

Long clips and :func:`extend` run segment by segment (autoregressive): a new segment
starts ``overlap`` frames before the end of the previous one, takes that frame's
generated state as its canonical (rest) state, and its first ``overlap`` frames are
blended with the previous segment's with a smoothstep weight (zero slope at both ends,
so positions and velocities stay continuous). Model memory depends on the segment
length only, not on the clip length.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from gvf_core.canonical import BoundGaussians, VertexSolver, mesh_to_gaussians, sample_surface, surface_points
from gvf_core.canonical.binding import Binding
from gvf_core.cameras import Cameras
from gvf_core.gaussians import Gaussians
from gvf_core.models.sampler import SamplerConfig
from gvf_core.models.sampler_config import DEFAULT_SAMPLER
from gvf_core.models.video_inputs import VideoInputError, has_alpha, prepare_video, with_alpha
from gvf_core.normalize import Normalization
from gvf_core.pipeline.core import (Models, Motion, Progress, decode_motion, generate_motion, load_models, model_anchors,
                                   resolve_device)
from gvf_core.pipeline.inputs import (InputError, camera_to_model, read_camera, read_driving_video, read_mesh,
                                     read_views)
from gvf_core.pipeline.refine import (RefineInputError, default_refine_mode, refine_motion, refine_settings,
                                     refine_targets)

SEGMENT_FRAMES = 24
OVERLAP = 6


@dataclass
class AnimateSettings:
    steps: int = DEFAULT_SAMPLER.steps
    method: str = DEFAULT_SAMPLER.method
    seed: int = 0
    strength: float = 1.0
    guidance_video: float = DEFAULT_SAMPLER.guidance_video
    guidance_canonical: float = DEFAULT_SAMPLER.guidance_canonical
    draws: int = DEFAULT_SAMPLER.draws  # samples averaged into the motion (1: a single sample)
    num_gaussians: int = 4096
    segment_frames: int = SEGMENT_FRAMES
    overlap: int = OVERLAP
    refine: str = "auto"  # test-time refinement: auto | off | fast | best (gvf_core.pipeline.refine)
    appearance_steps: int = 100  # optimiser steps fitting the canonical appearance to multiview renders

    def sampler(self) -> SamplerConfig:
        return SamplerConfig(steps=self.steps, method=self.method, guidance_video=self.guidance_video,
                             guidance_canonical=self.guidance_canonical, draws=self.draws)

    def check(self) -> None:
        if self.segment_frames < 2 or not 1 <= self.overlap < self.segment_frames:
            raise ValueError(f"need segment_frames >= 2 and 1 <= overlap < segment_frames, got {self.segment_frames}, {self.overlap}")
        self.sampler()  # validates steps and method
        if self.strength <= 0:
            raise ValueError(f"strength must be > 0 (1 = the motion the video shows), got {self.strength}")
        refine_settings(self.refine)  # validates the mode


@dataclass
class Animation:
    """An animated mesh and its Gaussians.

    ``vertices`` are in the input's own frame (the mesh file's axes and units) and vertex
    order; ``gaussians_at(t)`` gives frame t's Gaussians in that frame too. The model-frame
    state (``model_vertices``, ``model_gaussians``, ``bound``) is what :func:`extend` continues.
    """

    vertices: np.ndarray  # [T, V, 3] float32, input frame
    faces: np.ndarray  # [F, 3]
    fps: float
    model_vertices: torch.Tensor  # [T, V, 3] model frame
    model_gaussians: Gaussians  # [T, N] model frame
    bound: BoundGaussians  # rest pose, model frame
    points: tuple[np.ndarray, np.ndarray]  # surface samples (face index, barycentrics) for the VAE encoder
    normalization: Normalization  # input (file) frame → model frame
    world_normalization: Normalization  # world (+Z up) frame → model frame
    camera: Cameras  # [1] world frame
    width: int
    height: int
    video: np.ndarray  # [T, H, W, 3|4] uint8 frames the motion follows
    latents: list[torch.Tensor] = field(default_factory=list)  # per segment [T_k, L, C]
    segment_starts: list[int] = field(default_factory=list)  # first frame of each segment
    refinement: list[dict] = field(default_factory=list)  # one report per refinement pass
    magnitude: float = 0.0
    predicted_magnitude: float = 0.0
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    def gaussians_at(self, frame: int) -> Gaussians:
        """Frame ``frame``'s Gaussians in the input frame (file axes and units)."""
        return self.normalization.invert_gaussians(self.model_gaussians[frame])


def _add_timings(into: dict, timings: dict) -> None:
    for k, v in timings.items():
        into[k] = into.get(k, 0.0) + v


def smoothstep_weights(overlap: int) -> torch.Tensor:
    """Blend weights of the new segment over the ``overlap`` shared frames: 0 at the first,
    rising with zero slope at both ends (3u² − 2u³, u = j / overlap)."""
    u = torch.arange(overlap, dtype=torch.float64) / overlap
    return (3 * u ** 2 - 2 * u ** 3).float()


def blend(old: torch.Tensor, new: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """old/new [O, ...] over the same frames → (1 − w)·old + w·new."""
    w = weights.view(-1, *([1] * (old.dim() - 1))).to(old)
    return (1 - w) * old + w * new


def _blend_gaussians(old: Gaussians, new: Gaussians, weights: torch.Tensor) -> Gaussians:
    q_new = new.quats
    q_new = torch.where((q_new * old.quats).sum(-1, keepdim=True) < 0, -q_new, q_new)
    return Gaussians(
        means=blend(old.means, new.means, weights), quats=blend(old.quats, q_new, weights),
        log_scales=blend(old.log_scales, new.log_scales, weights),
        opacity_logits=blend(old.opacity_logits, new.opacity_logits, weights), sh0=blend(old.sh0, new.sh0, weights),
    )


def _posed_bound(bound: BoundGaussians, vertices: torch.Tensor, scale: float = 1.0) -> BoundGaussians:
    """The same Gaussians bound to the same faces, with ``vertices`` as the new rest pose; ``scale``:
    how much larger ``vertices``' frame is than ``bound``'s (the Gaussians' sizes and offsets follow)."""
    b = bound.binding
    return BoundGaussians(binding=Binding(b.face_idx, b.bary, b.offset * scale), local_angle=bound.local_angle,
                          local_log_scales=bound.local_log_scales + math.log(scale),
                          opacity_logits=bound.opacity_logits, sh0=bound.sh0, faces=bound.faces,
                          rest_vertices=vertices.to(bound.rest_vertices))


def _segment_frame(bound: BoundGaussians, pose: torch.Tensor) -> tuple[BoundGaussians, Normalization]:
    """``bound`` re-posed at ``pose`` (a generated frame, [V, 3] in the clip's model frame) and moved
    into that pose's own model frame — bounding box centred, longest side 1, as the rest pose of
    every training clip — with the normalization from the clip's frame to it. The VAE and the DiT
    embed absolute positions, so a later segment of a clip that travelled must not start off-centre
    (the shipped VAE decoded a turn 3.4× worse 0.6 diagonals off-centre)."""
    frame = Normalization.fit(pose)
    return _posed_bound(bound, frame.apply(pose.double()).float(), frame.scale), frame


def _to_clip_frame(motion: Motion, frame: Normalization) -> Motion:
    """``motion`` generated in a segment's own frame (:func:`_segment_frame`) in the clip's model frame."""
    deltas = motion.deltas.clone()
    deltas[..., :3] = frame.invert_vectors(deltas[..., :3])  # the other channels are scale-free
    rest_points = None if motion.rest_points is None else frame.invert(motion.rest_points.double()).float()
    return replace(motion, deltas=deltas, gaussians=frame.invert_gaussians(motion.gaussians),
                   vertices=frame.invert(motion.vertices.double()).float(), rest_points=rest_points)


def _rest_points(bound: BoundGaussians, points: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """[P, 3] the VAE's surface samples ``points`` (face index, barycentrics) on ``bound``'s rest mesh."""
    return torch.as_tensor(surface_points(bound.rest_vertices, bound.faces, torch.as_tensor(points[0]),
                                          torch.as_tensor(points[1]).float())).float()


class _Segments:
    """Runs the segments of one job and keeps its model-frame state."""

    def __init__(self, models: Models, settings: AnimateSettings, w2c_model: torch.Tensor, K: torch.Tensor,
                 progress: Progress | None, cancel: Callable[[], bool] | None, source: str):
        self.models, self.settings, self.w2c, self.K = models, settings, w2c_model, K
        self.progress, self.cancel, self.source = progress, cancel, source
        self.solver: VertexSolver | None = None
        self.timings: dict = {}

    def run(self, bound: BoundGaussians, points, frames: np.ndarray, label: str, seed: int,
            w2c: torch.Tensor | None = None) -> Motion:
        """One segment's motion, in ``bound``'s frame; ``w2c``: the camera in that frame (default: the clip's)."""
        w2c = self.w2c if w2c is None else w2c
        video = prepare_video(frames, self.K, self.models.dit.config.video_size, source=self.source)
        rest_points = _rest_points(bound, points)
        progress = None if self.progress is None else (lambda stage, i, n: self.progress(f"{label} {stage}", i, n))
        if self.solver is None:
            self.solver = VertexSolver.from_bound(bound)
        s = self.settings
        motion = generate_motion(self.models, bound, rest_points, video, w2c, s.sampler(),
                                 seed=seed, strength=s.strength, progress=progress, cancel=self.cancel, solver=self.solver)
        _add_timings(self.timings, motion.timings)
        return motion


def _segment_plan(done: int, total: int, segment: int, overlap: int) -> list[tuple[int, int]]:
    """(start, stop) frame ranges that continue a clip of ``done`` frames up to ``total``; each
    starts ``overlap`` frames back, or at frame 0 when the clip is shorter than that."""
    plan = []
    while done < total:
        start = max(0, done - overlap)
        stop = min(total, start + segment)
        plan.append((start, stop))
        done = stop
    return plan


def _join(vertices: torch.Tensor, gaussians: Gaussians, start: int, motion: Motion) -> tuple[torch.Tensor, Gaussians]:
    """The clip so far ([T0, ...]) continued by ``motion``, which starts at frame ``start``:
    the frames both cover are blended with the smoothstep weights."""
    O = vertices.shape[0] - start  # frames shared with what exists
    w = smoothstep_weights(O)
    v = torch.cat([vertices[:start], blend(vertices[start:], motion.vertices[:O], w), motion.vertices[O:]])
    g = Gaussians.cat_batch([gaussians[:start], _blend_gaussians(gaussians[start:], motion.gaussians[:O], w),
                             motion.gaussians[O:]])
    return v, g


def _continue(anim: Animation, runner: _Segments, frames: np.ndarray, total: int, settings: AnimateSettings) -> None:
    """Extend ``anim`` in place to ``total`` frames of ``frames`` (the whole clip's video)."""
    plan = _segment_plan(anim.model_vertices.shape[0], total, settings.segment_frames, settings.overlap)
    vertices, gaussians = anim.model_vertices, anim.model_gaussians
    for start, stop in plan:
        bound, frame = _segment_frame(anim.bound, vertices[start])
        motion = runner.run(bound, anim.points, frames[start:stop], f"segment {len(anim.latents) + 1}",
                            seed=settings.seed + len(anim.latents), w2c=camera_to_model(runner.w2c, frame))
        anim.latents.append(motion.latent)
        anim.segment_starts.append(start)
        vertices, gaussians = _join(vertices, gaussians, start, _to_clip_frame(motion, frame))
    anim.model_vertices, anim.model_gaussians = vertices, gaussians


def _joined_video(old: np.ndarray, new: np.ndarray, source: str) -> np.ndarray:
    """The animation's video followed by ``new`` frames, as one clip whose object masks are each
    part's own: where one part carries an alpha channel and the other is keyed from its plain
    background, the keyed part gets its mask as alpha (an opaque alpha would make its whole frame
    the object, since a clip with any alpha is read by its alpha)."""
    if has_alpha(old) != has_alpha(new):
        return np.concatenate([with_alpha(old, "the animation's video"), with_alpha(new, source)])
    if not has_alpha(old):
        old, new = old[..., :3], new[..., :3]
    return np.concatenate([old, new])


def _finish(anim: Animation) -> None:
    """Model-frame vertices → the input's frame."""
    anim.vertices = anim.normalization.invert(anim.model_vertices.double().numpy()).astype(np.float32)


def fit_appearance(bound: BoundGaussians, views, world_norm: Normalization, steps: int, seed: int = 0,
                   progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> BoundGaussians:
    """The canonical Gaussians' appearance fitted to multiview renders (:func:`refine_canonical`
    on white-composited RGBA images with their alpha as masks); the binding to the faces stays."""
    from gvf_core.canonical import RefineConfig, refine_canonical
    from gvf_core.models.sampler import Cancelled

    images, cams = read_views(views) if not isinstance(views, tuple) else views
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 4:
        raise InputError(f"views must be RGBA images [V, H, W, 4], got shape {images.shape}")
    rgba = torch.from_numpy(images).float() / 255.0
    alpha = rgba[..., 3]
    rgb = rgba[..., :3] * alpha[..., None] + (1.0 - alpha[..., None])  # over white, as rendered
    w2c = torch.stack([camera_to_model(cams.world_to_camera[i], world_norm) for i in range(len(cams))])
    model_cams = Cameras(K=cams.K.float(), world_to_camera=w2c.float())

    def step(i, n, loss):
        if progress is not None:
            progress("appearance", i, n)
        if cancel is not None and cancel():
            raise Cancelled("cancelled while fitting the appearance")

    return refine_canonical(bound, rgb, model_cams, masks=alpha, config=RefineConfig(steps=steps, seed=seed),
                            progress=step).gaussians


def refine_animation(anim: Animation, models: Models, settings: AnimateSettings, device: str,
                     progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                     first_segment: int = 0, before: Animation | None = None) -> Animation:
    """Test-time refinement of segments ``first_segment``… of ``anim`` (see
    :mod:`gvf_core.pipeline.refine`); returns a new Animation, or ``anim`` itself when the
    mode is off or refinement was cancelled (the unrefined result, intact).

    Segments are refined in order; each one's rest state is the refined clip at its first
    frame, and the segments are blended over their overlaps as when they were generated.
    ``before``: the animation the first refined segment continues (extend), else segment 0
    starts the clip.
    """
    mode = default_refine_mode(device) if settings.refine == "auto" else settings.refine
    config = refine_settings(mode, device)
    if config is None or first_segment >= len(anim.latents):
        return anim
    w2c = camera_to_model(anim.camera.world_to_camera[0], anim.world_normalization)
    solver = VertexSolver.from_bound(anim.bound)
    if before is None:
        vertices, gaussians = None, None
    else:
        vertices, gaussians = before.model_vertices, before.model_gaussians
    latents, reports = list(anim.latents), []
    t0 = time.perf_counter()
    for k in range(first_segment, len(anim.latents)):
        start, latent = anim.segment_starts[k], anim.latents[k]
        frames = anim.video[start:start + latent.shape[0]]
        bound, frame, camera = anim.bound, None, w2c
        if vertices is not None:  # a later segment: in its own frame, as it was generated
            bound, frame = _segment_frame(anim.bound, vertices[start])
            camera = camera_to_model(w2c, frame)
        label = f"segment {k + 1} refine"
        decoded = decode_motion(models, bound, latent, model_anchors(models, bound.canonical.to(models.device)),
                                solver=solver)
        motion = Motion(latent, *decoded, anim.magnitude, anim.predicted_magnitude,
                        rest_points=_rest_points(bound, anim.points))
        try:
            targets = refine_targets(frames, anim.camera.K[0].numpy(), camera, config.resolution,
                                     source=anim.settings.get("video", "video"))
        except RefineInputError as exc:
            if settings.refine == "auto":  # not asked for explicitly: keep the unrefined result
                return replace(anim, refinement=[*anim.refinement, {"mode": mode, "segment": k, "skipped": str(exc)}])
            raise InputError(str(exc)) from exc
        # "segment K refine tracks" (phase 1), then "segment K refine" (phase 2)
        step = None if progress is None else (
            lambda stage, i, n, label=label: progress(label + stage[len("refine"):], i, n))
        outcome = refine_motion(models, bound, motion, targets, config, seed=settings.seed + k, progress=step,
                                cancel=cancel, solver=solver)
        if outcome.cancelled:
            return replace(anim, refinement=[*anim.refinement, {"mode": mode, "segment": k, **outcome.report}])
        latents[k] = outcome.motion.latent
        reports.append({"mode": mode, "segment": k, **outcome.report})
        if vertices is None:
            vertices, gaussians = outcome.motion.vertices, outcome.motion.gaussians
        else:
            vertices, gaussians = _join(vertices, gaussians, start, _to_clip_frame(outcome.motion, frame))
    refined = replace(anim, model_vertices=vertices, model_gaussians=gaussians, latents=latents,
                      refinement=[*anim.refinement, *reports], timings=dict(anim.timings))
    refined.timings["refine"] = refined.timings.get("refine", 0.0) + time.perf_counter() - t0
    return refined


def animate(
    mesh,
    video,
    camera=None,
    frames: int | None = None,
    steps: int = DEFAULT_SAMPLER.steps,
    seed: int = 0,
    strength: float = 1.0,
    device: str = "auto",
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    model=None,
    views=None,
    **options,
) -> Animation:
    """Animate ``mesh`` (path or MeshData) from ``video`` (path, VideoClip or uint8 frames).

    ``camera``: None (the documented default front camera), a camera JSON path or dict, or
    :class:`Cameras` (world frame, OpenCV). ``frames``: how many video frames to use (all
    by default). ``strength`` scales the motion magnitude read from the video. ``model``:
    a model folder or loaded :class:`Models` (default: the shipped tiny model).
    ``views``: multiview renders of the asset, a folder (:func:`read_views`) or (uint8
    [V, H, W, 4] RGBA, :class:`Cameras` [V] world frame); the canonical Gaussians'
    appearance is fitted to them (``appearance_steps``) before the motion is generated.
    ``options``: further :class:`AnimateSettings` fields (method, guidance_video, ...).
    ``progress(stage, done, total)``; ``cancel()`` returning True stops the job with
    :class:`gvf_core.models.sampler.Cancelled` and nothing is returned — except during
    refinement, where it stops the refinement and the unrefined animation is returned.
    """
    settings = AnimateSettings(steps=steps, seed=seed, strength=strength, **options)
    settings.check()
    t_start = time.perf_counter()
    timings: dict = {}
    mesh_data = read_mesh(mesh)
    if frames is not None and frames < 2:
        raise InputError(f"frames must be at least 2, got {frames}")
    clip = read_driving_video(video, max_frames=frames)
    if frames is not None and len(clip.frames) < frames:
        raise InputError(f"{clip.source}: {frames} frames asked for but the video has only {len(clip.frames)}")
    H, W = clip.frames.shape[1:3]
    cam, cam_where = read_camera(camera, mesh_data.vertices, W, H)
    timings["read_inputs"] = time.perf_counter() - t_start

    device = resolve_device(device)
    t0 = time.perf_counter()
    models = model if isinstance(model, Models) else load_models(model, device)
    timings["load_models"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    world_norm = Normalization.fit(mesh_data.vertices)
    file_vertices = mesh_data.to_file_frame(mesh_data.vertices)
    norm = Normalization.fit(file_vertices, rotation=mesh_data.to_world_from_file)
    model_mesh = mesh_data.with_vertices(world_norm.apply(mesh_data.vertices))
    bound = mesh_to_gaussians(model_mesh, n=settings.num_gaussians, seed=seed)
    if views is not None:
        bound = fit_appearance(bound, views, world_norm, settings.appearance_steps, seed, progress, cancel)
    points = sample_surface(model_mesh, models.vae.config.num_points, seed=seed + 1, method="area")
    w2c_model = camera_to_model(cam.world_to_camera[0], world_norm)
    timings["canonical"] = time.perf_counter() - t0

    runner = _Segments(models, settings, w2c_model, cam.K[0], progress, cancel, clip.source)
    total = len(clip.frames)
    first = min(total, settings.segment_frames)
    try:
        motion = runner.run(bound, points, clip.frames[:first], "segment 1", seed=seed)
    except VideoInputError as exc:
        raise InputError(str(exc)) from exc
    anim = Animation(
        vertices=np.empty(0), faces=mesh_data.faces, fps=clip.fps, model_vertices=motion.vertices,
        model_gaussians=motion.gaussians, bound=bound, points=points, normalization=norm, world_normalization=world_norm,
        camera=cam, width=W, height=H, video=clip.frames, latents=[motion.latent], segment_starts=[0],
        magnitude=motion.magnitude,
        predicted_magnitude=motion.predicted_magnitude,
        settings={**settings.__dict__, "device": device, "model": models.source, "camera": cam_where, "video": clip.source},
    )
    if total > first:
        try:
            _continue(anim, runner, clip.frames, total, settings)
        except VideoInputError as exc:  # a later segment: e.g. the object leaves the frame
            raise InputError(str(exc)) from exc
    anim = refine_animation(anim, models, settings, device, progress=progress, cancel=cancel)
    _finish(anim)
    _add_timings(timings, runner.timings)
    _add_timings(timings, anim.timings)  # refinement
    timings["total"] = time.perf_counter() - t_start
    anim.timings = timings
    return anim


def extend(
    animation: Animation,
    more_video,
    steps: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    model=None,
    refine: str | None = None,
) -> Animation:
    """Continue ``animation`` with the frames of ``more_video`` (same camera); returns a new
    Animation with the old frames (blended over the overlap) followed by the new ones.
    The input animation is not modified. ``refine``: refinement of the new segments
    (default: the animation's own setting)."""
    t_start = time.perf_counter()
    if isinstance(more_video, np.ndarray):  # frames: even a single extra frame continues the clip
        frames_new, source = np.asarray(more_video, dtype=np.uint8), "<frames>"
        if frames_new.ndim != 4 or len(frames_new) == 0 or frames_new.shape[-1] not in (3, 4):
            raise InputError(f"more_video frames must be uint8 [T >= 1, H, W, 3 or 4], got shape {frames_new.shape}")
    else:
        clip = read_driving_video(more_video)
        frames_new, source = clip.frames, clip.source
    if frames_new.shape[1:3] != animation.video.shape[1:3]:
        raise InputError(f"{source}: frames are {frames_new.shape[2]}×{frames_new.shape[1]} but the animation's video is "
                         f"{animation.video.shape[2]}×{animation.video.shape[1]}; extend with the same camera and size")
    try:
        frames = _joined_video(animation.video, frames_new, source)
    except VideoInputError as exc:
        raise InputError(str(exc)) from exc
    s = dict(animation.settings)
    settings = AnimateSettings(**{k: s[k] for k in AnimateSettings.__dataclass_fields__ if k in s})
    if steps is not None:
        settings.steps = steps
    if seed is not None:
        settings.seed = seed
    if refine is not None:
        settings.refine = refine
    settings.check()
    device = resolve_device(device)
    models = model if isinstance(model, Models) else load_models(model or s.get("model"), device)
    w2c_model = camera_to_model(animation.camera.world_to_camera[0], animation.world_normalization)
    runner = _Segments(models, settings, w2c_model, animation.camera.K[0], progress, cancel, source)
    extension = {"video": source, "frames": len(frames_new), "steps": settings.steps, "seed": settings.seed,
                 "refine": settings.refine, "device": device, "model": models.source}
    anim = Animation(**{**animation.__dict__, "latents": list(animation.latents), "video": frames,
                        "segment_starts": list(animation.segment_starts), "refinement": list(animation.refinement),
                        "timings": dict(animation.timings),
                        "settings": {**animation.settings,  # the first run's; each extension's own are listed
                                     "extensions": [*animation.settings.get("extensions", []), extension]}})
    try:
        _continue(anim, runner, frames, len(frames), settings)
    except VideoInputError as exc:
        raise InputError(str(exc)) from exc
    anim = refine_animation(anim, models, settings, device, progress=progress, cancel=cancel,
                            first_segment=len(animation.latents), before=animation)
    _finish(anim)
    _add_timings(anim.timings, runner.timings)
    anim.timings["extend_total"] = anim.timings.get("extend_total", 0.0) + time.perf_counter() - t_start
    return anim
