"""``gvf data make``: generate a data set in parallel, resumably, shard by shard.

Each sample is a pure function of (seed, SampleConfig, asset pool), so a shard can be
regenerated at any time: the parent process records finished shards in the manifest
after each one, and a restart skips every shard the manifest lists whose file is
intact. Workers are separate processes (spawned, one torch thread each).
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gvf_core.data.sample import Animation, SampleConfig, build_sample
from gvf_core.data.shards import Manifest, shard_info, write_shard
from gvf_core.data.splits import shard_file_name, shard_plan, split_seeds

STATIC_SUFFIXES = (".obj", ".ply", ".stl")
ANIMATED_SUFFIXES = (".glb", ".gltf", ".fbx")


# ----------------------------------------------------------------------------- assets
@dataclass
class AssetPool:
    """User assets: imported animation clips and static meshes (world units, +Z up)."""

    clips: list = field(default_factory=list)  # ImportedClip
    meshes: list = field(default_factory=list)  # MeshData
    sources: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.clips or self.meshes)

    def fingerprint(self) -> str:
        """Identifies the pool in the manifest config (resuming with other assets is refused)."""
        return hashlib.sha256("\n".join(sorted(self.sources)).encode()).hexdigest()[:16]


def load_asset_pool(directory, fps: float, progress=None) -> AssetPool:
    """Every animated (.glb/.gltf/.fbx, through Blender) and static (.obj/.ply/.stl) asset in ``directory``.

    A .glb/.gltf without animation counts as a static mesh. A broken asset raises a
    ValueError naming the file.
    """
    from gvf_core.data.imported import bpy_available, import_animations
    from gvf_core.mesh import load_mesh

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"--from-assets {directory}: not a folder")
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in STATIC_SUFFIXES + ANIMATED_SUFFIXES)
    if not paths:
        raise ValueError(f"--from-assets {directory}: no .glb/.gltf/.fbx/.obj/.ply/.stl files found")
    pool = AssetPool()
    for k, path in enumerate(paths):
        if path.suffix.lower() in ANIMATED_SUFFIXES:
            if not bpy_available():
                raise ValueError(
                    f"{path}: importing animated assets needs Blender's Python module; install it with "
                    f"`pip install bpy==5.0.1` (Python 3.11), or pass only .obj/.ply/.stl files"
                )
            clips = import_animations(path, fps=fps)
            if clips:
                pool.clips.extend(clips)
            elif path.suffix.lower() != ".fbx":
                pool.meshes.append(load_mesh(path))
        else:
            pool.meshes.append(load_mesh(path))
        pool.sources.append(str(path.relative_to(directory)))
        if progress is not None:
            progress(k + 1, len(paths))
    return pool


def _clip_window(clip, rng: np.random.Generator, frames: int) -> tuple[np.ndarray, dict]:
    """A random window of ``frames`` frames at a random speed, linearly interpolated."""
    L = clip.vertices.shape[0]
    speed = float(rng.uniform(0.6, 1.6))
    speed = min(speed, (L - 1) / (frames - 1))  # short clips play slower
    start = float(rng.uniform(0.0, (L - 1) - speed * (frames - 1)))
    pos = start + speed * np.arange(frames)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, L - 1)
    hi = np.clip(lo + 1, 0, L - 1)
    w = (pos - lo)[:, None, None]
    verts = (1 - w) * clip.vertices[lo] + w * clip.vertices[hi]
    return verts, {"clip_start_frame": start, "clip_speed": speed}


def animation_for_seed(seed: int, config: SampleConfig, assets: AssetPool | None = None) -> Animation:
    """The mesh animation of sample ``seed``: procedural, an imported clip, or a user mesh."""
    from gvf_core.data.motions import random_motion
    from gvf_core.data.shapes import asset_from_mesh, random_asset

    rng = np.random.default_rng([seed, 0])
    times = np.arange(config.frames) / config.fps
    if assets and rng.uniform() < config.asset_prob:
        k = int(rng.integers(len(assets.clips) + len(assets.meshes)))
        if k < len(assets.clips):
            clip = assets.clips[k]
            verts, info = _clip_window(clip, rng, config.frames)
            from gvf_core.mesh import mesh_from_arrays

            mesh = mesh_from_arrays(clip.rest_vertices, clip.faces, vertex_colors=getattr(clip, "colors", None))
            info.update({"source": "imported", "asset": str(clip.source), "action": clip.action})
            return Animation(mesh, verts, info)
        asset = asset_from_mesh(assets.meshes[k - len(assets.clips)], rng)
        verts, info = random_motion(asset, rng, times)
        info.update({"source": "user_mesh", "asset": asset.mesh.source})
        return Animation(asset.mesh, verts, info)
    asset = random_asset(rng, max_vertices=config.max_vertices)
    verts, info = random_motion(asset, rng, times)
    info.update({"source": "procedural", "kind": asset.kind})
    return Animation(asset.mesh, verts, info)


def make_sample(seed: int, config: SampleConfig, assets: AssetPool | None = None, timings: dict | None = None) -> tuple[dict, dict]:
    """Sample ``seed``: arrays and meta (deterministic). ``timings`` receives seconds per stage."""
    start = time.perf_counter()
    animation = animation_for_seed(seed, config, assets)
    if timings is not None:
        timings["shape_and_motion"] = timings.get("shape_and_motion", 0.0) + time.perf_counter() - start
    return build_sample(animation, seed, config, timings)


# ----------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(config_dict: dict, assets: AssetPool | None) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER["config"] = SampleConfig.from_dict(config_dict)
    _WORKER["assets"] = assets


def _make_shard(job: tuple[str, str, list[int]]):
    path, split, seeds = job
    start = time.perf_counter()
    samples = [make_sample(s, _WORKER["config"], _WORKER["assets"]) for s in seeds]
    write_shard(path, samples)
    return shard_info(path, split, seeds, seconds=time.perf_counter() - start)


def make_dataset(
    out,
    split: str = "train",
    count: int | None = None,
    start: int | None = None,
    config: SampleConfig = SampleConfig(),
    assets: AssetPool | None = None,
    workers: int | None = None,
    shard_size: int = 16,
    progress=None,
) -> Manifest:
    """Generate (or finish) ``split`` in ``out``; returns the manifest.

    ``progress(done_samples, total_samples)`` is called as shards finish.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.safetensors.tmp*"):  # left by a run that was killed mid-write
        stale.unlink()
    run_config = {"sample": config.to_dict(), "assets": assets.fingerprint() if assets else None}
    manifest = Manifest.open(out, run_config)
    seeds = split_seeds(split, count=count, start=start)
    plan = shard_plan(seeds, shard_size)
    jobs, done = [], 0
    for first, shard_seeds in plan:
        name = shard_file_name(split, first)
        info = manifest.get(name)
        if info is not None and list(info.seeds) == list(shard_seeds) and manifest.is_done(out, name):
            done += len(shard_seeds)
        else:
            jobs.append((str(out / name), split, list(shard_seeds)))
    total = len(seeds)
    if progress is not None:
        progress(done, total)
    if not jobs:
        manifest.save(out)
        return manifest

    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        _init_worker(config.to_dict(), assets)
        results = map(_make_shard, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(config.to_dict(), assets))
        results = pool.imap_unordered(_make_shard, jobs)
    try:
        for info in results:
            manifest = manifest.add_shard(info)
            manifest.save(out)
            done += info.count
            if progress is not None:
                progress(done, total)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return manifest
