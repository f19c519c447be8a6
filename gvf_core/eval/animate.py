"""``gvf eval animate``: generated motion on the fixed validation set (or the held-out test set).

Per validation clip, the pipeline core (:func:`gvf_core.pipeline.core.generate_motion`)
runs on the sample's own canonical Gaussians, driving video and camera, and its result
is compared with the ground-truth animation beside three references:

- static: the rest pose held still (what "no motion model" scores);
- lift: the lifted point tracks alone (:mod:`gvf_core.models.track_lift`, decoded by the VAE
  without the DiT: what the optical flow shows, at the rest depth);
- VAE ceiling: the VAE decoding the clip's own encoded latent (the best the DiT can do
  through this VAE).

Figures: vertex error / bbox diagonal (mean over frames and vertices), PSNR and SSIM of
renders against the ground-truth Gaussians from the input view and from four novel
views (every ``render_every``-th frame), temporal jitter (mean norm of the vertices'
second difference / bbox diagonal; the ground truth's own figure is given too).

``sweep=True`` measures the sampler instead: vertex error and distance to a 64-step
Heun solution (same noise) against the number of steps, for Euler and Heun.

``flow_loss_val``: the DiT's flow-matching loss on the evaluated clips at fixed times
t ∈ {0.1, 0.3, 0.5, 0.7, 0.9} and fixed noise (deterministic; used to compare training runs).

The ceiling and the flow loss need the split's encoded latents (``gvf data encode``); without
them both are left out and ``missing`` says how to add them.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from gvf_core.cameras import Cameras
from gvf_core.data.sample import bound_from_sample
from gvf_core.metrics import psnr, ssim
from gvf_core.models.sampler import SamplerConfig
from gvf_core.models.sampler_config import DEFAULT_SAMPLER
from gvf_core.models.vae_inputs import rest_points_of
from gvf_core.models.video_inputs import prepare_video
from gvf_core.pipeline.core import Models, decode_latent, generate_motion, load_models, video_lift
from gvf_core.pipeline.refine import refine_motion, refine_settings, refine_targets
from gvf_core.render import rasterize

NOVEL_AZIMUTHS = (-75.0, 15.0, 105.0, 195.0)
"""The novel views, in degrees of azimuth from the input camera's: the protocol of the design brief
(as in Consistent4D). Until 2026-12-03 they were +72°, +144°, +216°, +288° (docs/models.md)."""


def _samples(data_dir, split: str, limit: int | None, skip: int = 0):
    """(arrays, meta, stored latent mean) of each validation sample, in order, from the
    ``skip``-th on, at most ``limit`` of them."""
    from safetensors.torch import load_file

    from gvf_core.data.shards import Manifest, ShardReader

    data_dir = Path(data_dir)
    count = 0
    for info in Manifest.load(data_dir).shards_of(split):
        latent_path = data_dir / "latents" / info.file
        latents = load_file(str(latent_path)) if latent_path.exists() else {}
        with ShardReader(data_dir / info.file) as reader:
            for i in range(len(reader)):
                if count < skip:
                    count += 1
                    continue
                if limit is not None and count >= skip + limit:
                    return
                arrays, meta = reader[i]
                yield arrays, meta, latents.get(f"{i:04d}/mean")
                count += 1


def _latents_encoded(data_dir, split: str) -> bool:
    """Whether every shard of ``split`` has its encoded latents (``gvf data encode``)."""
    from gvf_core.data.shards import Manifest

    data_dir = Path(data_dir)
    return all((data_dir / "latents" / info.file).exists() for info in Manifest.load(data_dir).shards_of(split))


def _clip_inputs(arrays: dict, meta: dict, models: Models):
    """(bound Gaussians, rest vertices, the VAE's rest points, video inputs, camera) of a stored clip,
    prepared exactly as in training (the first P of the clip's surface points)."""
    rest = torch.as_tensor(arrays["rest_vertices"]).float()
    rest_points = rest_points_of(arrays, models.vae.config.num_points)
    video = prepare_video(arrays["video"], arrays["camera_K"], models.dit.config.video_size, source=f"clip {meta['seed']}")
    return bound_from_sample(arrays), rest, rest_points, video, torch.as_tensor(arrays["camera_w2c"]).float()


def _views(arrays: dict, meta: dict) -> Cameras:
    """The input camera and four novel orbit views at its elevation, distance and fov."""
    size = arrays["video"].shape[1]
    cam = meta["camera"]
    novel = Cameras.orbit([cam["azimuth_deg"] + a for a in NOVEL_AZIMUTHS], elevation_deg=cam["elevation_deg"],
                          distance=cam["distance"], fov_deg=cam["fov_deg"], width=size, height=size)
    first = Cameras(K=torch.as_tensor(arrays["camera_K"])[None].float(), world_to_camera=torch.as_tensor(arrays["camera_w2c"])[None].float())
    return Cameras.cat([first, novel])


def _jitter(vertices: torch.Tensor, diag: float) -> float:
    if vertices.shape[0] < 3:
        return 0.0
    acc = vertices[2:] - 2 * vertices[1:-1] + vertices[:-2]
    return float(acc.norm(dim=-1).mean() / diag)


@torch.no_grad()
def _image_scores(pred, truth, cams: Cameras, size: int, frames) -> tuple[list, list, list, list]:
    """PSNR/SSIM per (frame, view) for the input view and the novel views."""
    p_in, s_in, p_nv, s_nv = [], [], [], []
    for t in frames:
        a = rasterize(pred[t], cams, size, size, background=1.0, backend="auto").rgb
        b = rasterize(truth[t], cams, size, size, background=1.0, backend="auto").rgb
        for v in range(len(cams)):
            ps, ss = float(psnr(a[v], b[v])), float(ssim(a[v], b[v]))
            (p_in if v == 0 else p_nv).append(ps)
            (s_in if v == 0 else s_nv).append(ss)
    return p_in, s_in, p_nv, s_nv


@torch.no_grad()
def flow_validation_loss(dit, data_dir, split: str = "val", limit: int | None = None,
                         times=(0.1, 0.3, 0.5, 0.7, 0.9), skip: int = 0, vae=None) -> float:
    """Mean flow-matching MSE (frames 1..T−1) over clips × ``times``, noise seeded per clip
    (``vae``: the one the latents were encoded with, for a DiT with ``base="lift"``)."""
    from gvf_core.models.sampler import add_noise
    from gvf_core.training.dit import add_lift, add_tracks, build_cache, conditions_from_cache

    cache = build_cache(data_dir, split, dit.config.video_size)
    if dit.config.tracks:
        cache = add_tracks(data_dir, split, cache)
    if dit.config.base == "lift":
        if vae is None:
            raise ValueError("a DiT with base='lift' needs the VAE for its flow loss (vae=)")
        cache = add_lift(data_dir, split, cache, vae)
    n = len(cache["seed"]) if limit is None else min(skip + limit, len(cache["seed"]))
    device = next(dit.parameters()).device
    losses = []
    for i in range(skip, n):
        cond, latent = conditions_from_cache(cache, torch.tensor([i]), cache["latent"].shape[1], dit.config.canonical_tokens)
        cond, latent = cond.to(device), latent.to(device)
        x0 = dit.to_residual(latent, dit.base_of(cond))
        x0[:, 0] = 0
        ctx = dit.encode_conditions(cond)
        gen = torch.Generator().manual_seed(int(cache["seed"][i]))
        for t in times:
            noise = torch.randn(x0.shape, generator=gen).to(device)
            tt = torch.full((1,), t, device=device)
            xt = add_noise(x0, noise, tt)
            xt[:, 0] = 0
            v = dit(xt, tt, ctx)
            losses.append(float((v[:, 1:] - (noise - x0)[:, 1:]).pow(2).mean()))
    return float(np.mean(losses))


def evaluate_animate(data_dir, model=None, limit: int | None = None, steps: int = DEFAULT_SAMPLER.steps,
                     method: str = DEFAULT_SAMPLER.method, guidance: float = DEFAULT_SAMPLER.guidance_video,
                     sweep: bool = False, device: str = "cpu", render_every: int = 4,
                     progress=None, split: str = "val", refine: str = "off", skip: int = 0,
                     per_clip: bool = False, draws: int = DEFAULT_SAMPLER.draws) -> dict:
    """Figures on ``split`` (see the module docstring); ``render_every`` 0 skips the renders;
    ``skip`` leaves out the first samples (to split a long run across processes);
    ``per_clip`` adds ``per_clip``: each clip's seed, motion family and vertex error per row (and,
    refined, whether the rigid transform was used and the weight it was mixed in with), to find the clips a change helps or hurts; and
    ``per_family`` (:func:`per_family`).

    ``refine`` fast | best adds the refined motion (:mod:`gvf_core.pipeline.refine`, fitted to
    the clip's own video) as a row beside the unrefined one, with its time per clip.
    """
    if sweep and (refine != "off" or per_clip):
        raise ValueError("--sweep-steps measures the sampler alone: leave out --refine and --per-clip")
    models = model if isinstance(model, Models) else load_models(model, device)
    if sweep:
        return sweep_steps(data_dir, models, limit if limit is not None else 8, guidance, split, progress, skip=skip)
    sampler = SamplerConfig(steps=steps, method=method, guidance_video=guidance, draws=draws)
    refine_config = refine_settings(refine, device)
    size_in = None
    rows = {k: [] for k in ("model", "static", "lift", "ceiling", *(("refined",) if refine_config else ()))}
    images = {k: {"psnr_input": [], "ssim_input": [], "psnr_novel": [], "ssim_novel": []} for k in rows}
    jitter = {k: [] for k in (*rows, "ground_truth")}
    seconds, refine_seconds, clips = [], [], []
    total = limit if limit is not None else None
    for n, (arrays, meta, stored) in enumerate(_samples(data_dir, split, limit, skip)):
        bound, rest, rest_points, video, w2c = _clip_inputs(arrays, meta, models)
        t0 = time.perf_counter()
        motion = generate_motion(models, bound, rest_points, video, w2c, sampler, seed=int(meta["seed"]))
        seconds.append(time.perf_counter() - t0)
        truth_v = torch.as_tensor(arrays["vertices"]).float()
        T = truth_v.shape[0]
        diag = float((rest.max(0).values - rest.min(0).values).norm())
        lift = motion.lift if motion.lift is not None else video_lift(models, bound.canonical, rest_points, video, w2c)
        results = {"model": motion, "static": None,
                   "lift": decode_latent(models, bound, lift)}
        if refine_config is not None:
            t0 = time.perf_counter()
            targets = refine_targets(arrays["video"], arrays["camera_K"], w2c, refine_config.resolution)
            outcome = refine_motion(models, bound, motion, targets, refine_config, seed=int(meta["seed"]))
            results["refined"] = outcome.motion
            refine_seconds.append(time.perf_counter() - t0)
        if stored is not None:
            results["ceiling"] = decode_latent(models, bound, stored)
        truth_g = bound.gaussians_at(truth_v)
        cams = _views(arrays, meta)
        size_in = arrays["video"].shape[1]
        frames = list(range(render_every, T, render_every)) if render_every > 0 else []
        for name, m in results.items():
            verts = rest.expand(T, -1, -1) if m is None else m.vertices
            rows[name].append(float((verts - truth_v).norm(dim=-1).mean() / diag))
            jitter[name].append(_jitter(verts, diag))
            gs = bound.gaussians_at(verts) if m is None else m.gaussians
            for key, vals in zip(("psnr_input", "ssim_input", "psnr_novel", "ssim_novel"),
                                 _image_scores(gs, truth_g, cams, size_in, frames)):
                images[name][key].extend(vals)
        jitter["ground_truth"].append(_jitter(truth_v, diag))
        clip = {"seed": int(meta["seed"]), "family": meta.get("family"), **{name: rows[name][-1] for name in results}}
        if "refined" in results and "rigid" in outcome.report:
            clip["rigid_used"] = bool(outcome.report["rigid"]["used"])
            clip["rigid_blend"] = float(outcome.report["rigid"].get("blend", 0.0))
        clips.append(clip)
        if progress is not None:
            progress(n + 1, total or n + 1)
    count = len(rows["model"])
    if count == 0:
        raise ValueError(f"{data_dir}: no {split} samples to evaluate")
    out = {"split": split, "samples": count, "skipped": skip, "steps": steps, "method": method, "guidance_video": guidance, "draws": draws,
           "model_source": models.source, "seconds_per_clip": float(np.mean(seconds)), "render_frames_every": render_every, "image_size": size_in}
    for name in rows:
        if not rows[name]:
            continue
        out[name] = {
            "vertex_error": float(np.mean(rows[name])),
            **{k: float(np.mean(v)) for k, v in images[name].items() if v},
            "jitter": float(np.mean(jitter[name])),
        }
    out["ground_truth_jitter"] = float(np.mean(jitter["ground_truth"]))
    out["vertex_error_vs_static"] = out["model"]["vertex_error"] / max(out["static"]["vertex_error"], 1e-12)
    if refine_config is not None:
        out["refine"] = {"mode": refine, "settings": asdict(refine_config), "device": device,
                         "seconds_per_clip": float(np.mean(refine_seconds)),
                         "vertex_error_vs_static": out["refined"]["vertex_error"] / max(out["static"]["vertex_error"], 1e-12),
                         "vertex_error_vs_unrefined": out["refined"]["vertex_error"] / max(out["model"]["vertex_error"], 1e-12)}
    if per_clip:
        out["per_clip"] = clips
        out["per_family"] = per_family(clips)
    if _latents_encoded(data_dir, split):
        out["flow_loss_val"] = flow_validation_loss(models.dit, data_dir, split, limit, skip=skip, vae=models.vae)
    else:
        out["missing"] = (f"the {split} split has no encoded latents, so no VAE ceiling and no flow loss: "
                          f"run `gvf data encode --data {data_dir} --splits {split}` to add them")
    return out


CLIP_LABELS = ("seed", "family", "rigid_used", "rigid_blend")
"""Entries of a ``per_clip`` row that say what the clip is or what refinement did, not a row's error."""


def per_family(clips: list[dict]) -> dict:
    """{motion family: {"clips": n, row: mean vertex error}} over ``per_clip`` rows: which kinds of
    motion hold the error (clips whose family is not recorded count as "unknown")."""
    families: dict[str, list[dict]] = {}
    for clip in clips:
        families.setdefault(clip.get("family") or "unknown", []).append(clip)
    return {name: {"clips": len(group),
                   **{row: float(np.mean([c[row] for c in group])) for row in group[0]
                      if row not in CLIP_LABELS}}
            for name, group in sorted(families.items())}


SWEEP = tuple([("euler", s) for s in (2, 4, 8, 16, 32)] + [("heun", s) for s in (2, 4, 8, 16)])


def sweep_steps(data_dir, models: Models, limit: int, guidance: float, split: str = "val", progress=None,
                settings=SWEEP, reference_steps: int = 64, skip: int = 0) -> dict:
    """Vertex error and distance to a ``reference_steps`` Heun solution (same noise) against
    steps, for Euler and Heun."""
    errors = {f"{m}-{s}": [] for m, s in settings}
    to_ref = {f"{m}-{s}": [] for m, s in settings}
    samples = list(_samples(data_dir, split, limit, skip))
    for n, (arrays, meta, _) in enumerate(samples):
        bound, rest, rest_points, video, w2c = _clip_inputs(arrays, meta, models)
        truth = torch.as_tensor(arrays["vertices"]).float()
        diag = float((rest.max(0).values - rest.min(0).values).norm())
        seed = int(meta["seed"])
        ref = generate_motion(models, bound, rest_points, video, w2c, SamplerConfig(steps=reference_steps, method="heun", guidance_video=guidance, draws=1), seed=seed)
        for m, s in settings:
            mo = generate_motion(models, bound, rest_points, video, w2c, SamplerConfig(steps=s, method=m, guidance_video=guidance, draws=1), seed=seed)
            errors[f"{m}-{s}"].append(float((mo.vertices - truth).norm(dim=-1).mean() / diag))
            to_ref[f"{m}-{s}"].append(float((mo.vertices - ref.vertices).norm(dim=-1).mean() / diag))
        if progress is not None:
            progress(n + 1, len(samples))
    return {
        "samples": len(samples), "guidance_video": guidance, "reference": f"heun-{reference_steps}",
        "settings": {k: {"model_calls": SamplerConfig(steps=int(k.split("-")[1]), method=k.split("-")[0]).model_calls,
                         "vertex_error": float(np.mean(errors[k])), "distance_to_reference": float(np.mean(to_ref[k]))}
                     for k in errors},
    }
