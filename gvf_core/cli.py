"""The ``gvf`` command line.

    gvf demo [--out DIR]                 animate the bundled sample asset from the bundled sample video
    gvf canonical MESH --out DIR         the same for any .obj/.ply/.stl/.glb/.gltf
    gvf data make --out DIR --count N --seed S [--from-assets DIR]   training shards (+ the fixed val set)
    gvf data show DIR --index I          preview of sample I: driving video beside novel views
    gvf data encode --data DIR --model PATH   each sample's VAE latent, for DiT training
    gvf train vae --preset tiny --data DIR --out DIR    train the VAE (torchrun for DDP)
    gvf train dit --preset tiny --data DIR --out DIR    train the diffusion transformer on encoded latents
    gvf animate MESH VIDEO --out DIR     animate a mesh from a driving video (vertices, PC2, PLYs, preview)
    gvf eval vae [--model PATH] [--data DIR] [--json]   VAE reconstruction on the validation set
    gvf eval animate [--model DIR] [--data DIR] [--refine fast|best] [--json]   generated motion on the validation set
    gvf bench animate [--json]           pipeline stage timings
    gvf bench blender [--json]           Blender write-back times per output mode
    gvf bench render [--json]            renderer speed (torch backend vs dense reference, gsplat on CUDA)
    gvf bench data [--json]              data-engine samples per minute, by stage

Every ``gvf bench`` / ``gvf eval`` command accepts ``--json`` and then prints exactly
one JSON object on stdout (logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from gvf_core.models.sampler_config import DEFAULT_SAMPLER


def _progress_bar(desc: str, enabled: bool = True):
    import time

    from tqdm import tqdm

    bar = {"bar": None}
    started = time.time()  # the bar appears at the first report; its clock starts with the job

    def update(done: int, total: int) -> None:
        if not enabled:
            return
        if bar["bar"] is None:
            bar["bar"] = tqdm(total=total, desc=desc, file=sys.stderr)
            bar["bar"].start_t = bar["bar"].last_print_t = started
        bar["bar"].n = done
        bar["bar"].refresh()
        if done >= total:
            bar["bar"].close()

    return update


def _stage_bar(desc: str):
    """progress(stage, done, total) for multi-stage jobs: one bar, re-labelled per stage."""
    from tqdm import tqdm

    state = {"bar": None, "stage": None}

    def update(stage: str, done: int, total: int) -> None:
        if state["stage"] != stage:
            if state["bar"] is not None:
                state["bar"].close()
            state["bar"] = tqdm(total=total, desc=f"{desc}: {stage}", file=sys.stderr, leave=False)
            state["stage"] = stage
        state["bar"].n = done
        state["bar"].refresh()

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    update.close = close
    return update


def _print_figures(figures: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures))
        return
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        if isinstance(value, list):  # rows (e.g. per clip): one line each
            print(key)
            for row in value:
                print(f"  {json.dumps(row)}")
            continue
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")


def _add_canonical_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--gaussians", type=int, default=8192, help="number of canonical Gaussians (default 8192)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--frames", type=int, default=36, help="turntable frames (default 36)")
    p.add_argument("--size", type=int, default=256, help="turntable image size in pixels (default 256)")
    p.add_argument("--format", choices=("gif", "mp4"), default="gif", help="turntable format (default gif)")
    p.add_argument("--up", choices=("auto", "y", "z"), default="auto", help="up axis of the file (auto: +Y, as glTF and most OBJ/PLY)")
    p.add_argument("--backend", choices=("auto", "torch", "gsplat"), default="auto", help="renderer backend (default auto)")


def _at_least(minimum: int):
    """argparse type: an integer no smaller than ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its "invalid integer value" message
    return parse


def _add_draws_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--draws", type=int, default=DEFAULT_SAMPLER.draws,
                   help=f"samples averaged into the motion (default {DEFAULT_SAMPLER.draws}: the posterior mean; 1: one sample)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gvf", description="GVF Animate: animate a 3D asset from a driving video.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="animate the bundled sample asset from the bundled sample video with the shipped model")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--steps", type=int, default=DEFAULT_SAMPLER.steps, help=f"sampler steps (default {DEFAULT_SAMPLER.steps})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--refine", choices=("auto", "off", "fast", "best"), default="fast",
                   help="test-time refinement (default fast: the demo shows the motion fitted to the video)")
    p.add_argument("--no-blend", action="store_true", help="skip animated.blend (written when the bpy module is installed)")

    p = sub.add_parser("canonical", help="mesh -> canonical Gaussians: PLY + turntable")
    p.add_argument("mesh", help="mesh file (.obj, .ply, .stl, .glb, .gltf)")
    _add_canonical_options(p)

    data = sub.add_parser("data", help="the 4D data engine").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("make", help="generate training shards (resumable, parallel)")
    p.add_argument("--out", required=True, help="data set folder (created; re-running resumes)")
    p.add_argument("--count", type=int, default=2000, help="samples of the chosen split (default 2000; val/test: all of their fixed seeds)")
    p.add_argument("--seed", type=int, default=0, help="first training seed (default 0)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train")
    p.add_argument("--no-val", action="store_true", help="do not also make the fixed validation set")
    p.add_argument("--from-assets", metavar="DIR", help="also use these assets: animated .glb/.gltf/.fbx (via bpy) and static .obj/.ply/.stl")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    p.add_argument("--shard-size", type=int, default=16, help="samples per shard (default 16)")
    p.add_argument("--frames", type=int, default=24, help="frames per sample (default 24)")
    p.add_argument("--image-size", type=int, default=128, help="driving-video size in pixels (default 128)")
    p.add_argument("--gaussians", type=int, default=4096, help="canonical Gaussians per sample (default 4096)")
    p.add_argument("--points", type=int, default=8192, help="VAE point samples per frame (default 8192)")
    p.add_argument("--renderer", choices=("splat", "workbench", "cycles"), default="splat",
                   help="driving-video renderer (default splat; workbench/cycles use Blender's bpy module)")
    p = data.add_parser("show", help="write a preview of one sample")
    p.add_argument("dir", help="data set folder")
    p.add_argument("--index", type=int, default=0, help="sample index within the split (default 0)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train")
    p.add_argument("--out", default=None, help="output .gif or .mp4 (default: DIR/preview/<split>_<index>.gif)")

    p = data.add_parser("encode", help="write each sample's VAE latent (mean, std) for DiT training")
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--model", default=None, help="VAE file or folder (default: the shipped tiny VAE)")
    p.add_argument("--splits", default="train,val", help="comma-separated splits (default train,val)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    train = sub.add_parser("train", help="train a model").add_subparsers(dest="train", required=True)
    p = train.add_parser("vae", help="train the Gaussian Variation Field VAE (single process or torchrun/DDP)")
    p.add_argument("--preset", default="tiny", help="model preset: tiny or paper (default tiny)")
    p.add_argument("--data", required=True, help="data set folder (from gvf data make)")
    p.add_argument("--out", required=True, help="output folder: vae.safetensors, training state, loss_log.jsonl")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=4, help="samples per step per process")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--frames", type=int, default=8, help="random frames per sample per step")
    p.add_argument("--gaussians", type=int, default=1024, help="random Gaussians decoded per sample per step")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this much wall time; re-run to resume")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out has a checkpoint")

    p = train.add_parser("dit", help="train the GVF diffusion transformer on `gvf data encode` latents (single process or torchrun/DDP)")
    p.add_argument("--preset", default="tiny", help="model preset: tiny, tiny-tracks (reads optical-flow anchor tracks), "
                   "tiny-lift (also denoises from the lifted point tracks) or paper (default tiny)")
    p.add_argument("--data", required=True, help="data set folder, encoded with `gvf data encode`")
    p.add_argument("--out", required=True, help="output folder: dit.safetensors, training state, loss_log.jsonl")
    p.add_argument("--init", default=None, help="start a fresh run from this DiT file (e.g. tiny weights for tiny-tracks)")
    p.add_argument("--vae", default=None, help="the VAE file the latents were encoded with, for the lifted latents of "
                   "tiny-lift (default: the shipped tiny VAE)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=4, help="clips per step per process")
    p.add_argument("--frames", default="16,24", help="comma-separated clip lengths drawn per step (each >= 16; default 16,24)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--no-geometry-forcing", action="store_true", help="train without the Geometry-Forcing head and loss")
    p.add_argument("--high-noise-fraction", type=float, default=0.5, help="share of flow times drawn from U(0.8, 1) (default 0.5)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this much wall time; re-run to resume")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out has a checkpoint")

    p = sub.add_parser("animate", help="animate a mesh from a driving video")
    p.add_argument("mesh", help=".obj, .ply, .glb, .gltf or .stl (.obj/.ply keep their vertex order in every output)")
    p.add_argument("video", help=".mp4, .gif, .webm, or a folder of PNG frames (RGBA, or RGB on a plain background)")
    p.add_argument("--out", required=True, help="output folder (vertices.npy, animation.pc2, gaussians/, preview.mp4, report.json)")
    p.add_argument("--camera", default=None, help="camera JSON (width, height, fx, fy, cx, cy, world_to_camera; OpenCV); default: the front camera of docs/pipeline.md")
    p.add_argument("--frames", type=int, default=None, help="use the first N video frames (default: all)")
    p.add_argument("--steps", type=int, default=DEFAULT_SAMPLER.steps, help=f"sampler steps (default {DEFAULT_SAMPLER.steps})")
    p.add_argument("--method", choices=("heun", "euler"), default=DEFAULT_SAMPLER.method, help=f"sampler (default {DEFAULT_SAMPLER.method})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strength", type=float, default=1.0, help="scales the motion magnitude read from the video (default 1)")
    p.add_argument("--guidance", type=float, default=DEFAULT_SAMPLER.guidance_video,
                   help=f"video guidance scale (default {DEFAULT_SAMPLER.guidance_video:g}: the posterior mean; > 1 sharper samples)")
    _add_draws_option(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--model", default=None, help="model folder with vae.safetensors and dit.safetensors (default: shipped tiny)")
    p.add_argument("--refine", choices=("auto", "off", "fast", "best"), default="auto",
                   help="test-time refinement of the motion against the video (auto: fast, on a GPU and on the CPU)")
    p.add_argument("--no-preview", action="store_true", help="skip preview.mp4")

    ev = sub.add_parser("eval", help="evaluations that print figures").add_subparsers(dest="eval", required=True)
    p = ev.add_parser("vae", help="VAE reconstruction on the fixed validation set, beside the static baseline")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model", default=None, help="VAE file or folder (default: the shipped tiny VAE)")
    p.add_argument("--data", default="data/gvf", help="data set folder; its val split is made there first if missing (default data/gvf)")
    p.add_argument("--limit", type=_at_least(1), default=None, help="evaluate only the first N validation samples")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    p = ev.add_parser("animate", help="generated motion on the fixed validation (or test) set, beside the static baseline and the VAE ceiling")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model", default=None, help="model folder (default: the shipped tiny model)")
    p.add_argument("--data", default="data/gvf", help="data set folder; the split is made there first if missing (default data/gvf)")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="fixed seed set to evaluate (default val; test: the held-out set, 256 clips, for figures nothing was tuned on)")
    p.add_argument("--limit", type=_at_least(1), default=None, help="evaluate only the first N samples of the split")
    p.add_argument("--skip", type=_at_least(0), default=0,
                   help="leave out the first N samples of the split (split a long run: --limit 32 and --skip 32 --limit 32)")
    p.add_argument("--steps", type=int, default=DEFAULT_SAMPLER.steps)
    p.add_argument("--method", choices=("heun", "euler"), default=DEFAULT_SAMPLER.method)
    p.add_argument("--guidance", type=float, default=DEFAULT_SAMPLER.guidance_video)
    _add_draws_option(p)
    p.add_argument("--sweep-steps", action="store_true",
                   help="instead: vertex error against step count for euler and heun (one draw each; --steps, --method and --draws do not apply)")
    p.add_argument("--no-images", action="store_true", help="skip the PSNR/SSIM renders (vertex error, jitter and flow loss only)")
    p.add_argument("--per-clip", action="store_true", help="also list each clip's seed, motion family and vertex errors (to find the clips a change hurts), and the mean errors per family")
    p.add_argument("--refine", choices=("off", "fast", "best"), default="off",
                   help="also refine each motion against its video and report it beside the unrefined one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    bench = sub.add_parser("bench", help="benchmarks that print figures").add_subparsers(dest="bench", required=True)
    p = bench.add_parser("render", help="renderer speed: torch backend vs dense reference (and gsplat on CUDA)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--gaussians", type=int, default=4096)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of the fast backends (median)")
    p.add_argument("--reference-repeats", type=int, default=1, help="timed repeats of the slow dense reference")
    p.add_argument("--no-reference", action="store_true", help="skip the dense reference (it takes minutes at 256²)")
    p = bench.add_parser("data", help="data-engine samples per minute, with a breakdown by stage")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--samples", type=int, default=6, help="samples for the per-stage breakdown (one process)")
    p.add_argument("--parallel-samples", type=int, default=32, help="samples for the parallel throughput figure")
    p.add_argument("--workers", type=int, default=None, help="processes for the parallel figure (default: one per core)")
    p = bench.add_parser("blender", help="Blender write-back times per output mode (runs bpy in a subprocess)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--vertices", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p = bench.add_parser("animate", help="pipeline stage timings (24 frames, shipped tiny model; paper preset too on CUDA)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--steps", type=int, default=DEFAULT_SAMPLER.steps)
    _add_draws_option(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return parser


SHIPPED = Path(__file__).resolve().parent / "weights"


def _shipped(kind: str) -> Path:
    """The shipped default model file of ``kind`` (e.g. "vae")."""
    return SHIPPED / "tiny" / f"{kind}.safetensors"


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    return name


def _ensure_split(data_dir, split: str) -> None:
    """Make ``split`` (a fixed seed set) in ``data_dir`` when it is not there yet."""
    from gvf_core.data.make import make_dataset
    from gvf_core.data.sample import SampleConfig
    from gvf_core.data.shards import Manifest

    path = Path(data_dir)
    if (path / "manifest.json").exists() and Manifest.load(path).shards_of(split):
        return
    print(f"{data_dir} has no {split} split yet: making it (deterministic seeds; val: about a minute, test: a few)", file=sys.stderr)
    make_dataset(path, split=split, config=SampleConfig(), progress=_progress_bar(f"{split} samples"))


def _run_training(train_fn, device: str) -> None:
    """Run ``train_fn(device)`` in one process or as a torchrun rank (gloo on CPU, nccl on CUDA)."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        path = train_fn(device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(f"wrote {path}")


def _train_vae(args) -> None:
    from gvf_core.training.vae import VAETrainConfig, train_vae

    train = VAETrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, frames_per_sample=args.frames,
                           gaussians_per_sample=args.gaussians, seed=args.seed)
    _run_training(lambda device: train_vae(args.data, args.out, preset=args.preset, train=train, device=device,
                                           resume=not args.no_resume, max_minutes=args.max_minutes), _device(args.device))


def _train_dit(args) -> None:
    from gvf_core.training.dit import DiTTrainConfig, train_dit

    frames = tuple(int(f) for f in args.frames.split(","))
    if min(frames) < 16:
        raise ValueError(f"--frames: clips of at least 16 frames, got {args.frames}")
    train = DiTTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, frames=frames, seed=args.seed,
                           high_noise_fraction=args.high_noise_fraction)
    overrides = {"geometry_forcing": False} if args.no_geometry_forcing else None
    _run_training(lambda device: train_dit(args.data, args.out, preset=args.preset, train=train, device=device,
                                           resume=not args.no_resume, max_minutes=args.max_minutes, overrides=overrides,
                                           init=args.init, vae=args.vae),
                  _device(args.device))


def _animate(args) -> None:
    from gvf_core.pipeline import animate
    from gvf_core.pipeline.outputs import write_outputs

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (it is created, and earlier outputs in it are replaced)")
    parent = out.absolute().parent  # the outputs are written beside the folder first, then moved in
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise ValueError(f"--out {out}: {existing} is not writable; choose a folder you can write to")
    bar = _stage_bar("animate")
    try:
        anim = animate(args.mesh, args.video, camera=args.camera, frames=args.frames, steps=args.steps, seed=args.seed,
                       strength=args.strength, device=args.device, progress=bar, model=args.model, method=args.method,
                       guidance_video=args.guidance, draws=args.draws, refine=args.refine)
        out = write_outputs(anim, args.out, preview=not args.no_preview, progress=bar)
    finally:
        bar.close()
    print(f"wrote {anim.num_frames} frames × {anim.vertices.shape[1]} vertices to {out}")


def _demo_blend(args) -> None:
    """animated.blend beside the demo's outputs, built by the add-on's write-back in a child
    Python with bpy (gvf_core itself never imports bpy)."""
    import subprocess

    from gvf_core.data.imported import bpy_available

    if not bpy_available():
        print("no animated.blend: the bpy module is not installed (pip install -e \".[blender]\")")
        return
    cmd = [sys.executable, "-m", "gvf_addon.demo_blend", str(args.out), str(args.mesh), str(args.video)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"writing animated.blend failed:\n{done.stderr[-2000:]}")
    print(f"wrote {Path(args.out) / 'animated.blend'} (open it in Blender and press play)")


def _bench_blender(args) -> dict:
    """gvf_core never imports bpy: the write-back benchmark runs in a child Python that has it."""
    import subprocess

    from gvf_core.data.imported import bpy_available

    if not bpy_available():
        raise RuntimeError("gvf bench blender needs the bpy module in this Python: pip install -e \".[blender]\"")
    cmd = [sys.executable, "-m", "gvf_addon.bench_writeback", "--json", "--frames", str(args.frames),
           "--vertices", str(args.vertices), "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"the write-back benchmark failed:\n{done.stderr[-2000:]}")
    out = done.stdout
    start = 0 if out.startswith("{") else out.find("\n{") + 1  # bpy may log lines before the JSON
    return json.loads(out[start:])


def _data_make(args) -> None:
    from gvf_core.data.make import load_asset_pool, make_dataset
    from gvf_core.data.sample import SampleConfig

    config = SampleConfig(frames=args.frames, image_size=args.image_size, num_gaussians=args.gaussians, num_points=args.points, renderer=args.renderer)
    assets = None
    if args.from_assets:
        assets = load_asset_pool(args.from_assets, fps=config.fps, progress=_progress_bar("importing assets"))
        print(f"assets: {len(assets.clips)} animation clips, {len(assets.meshes)} static meshes", file=sys.stderr)
    jobs = [(args.split, args.count if args.split == "train" else None, args.seed if args.split == "train" else None)]
    if args.split == "train" and not args.no_val:
        jobs.insert(0, ("val", None, None))  # the small fixed set first: it can be previewed early
    for split, count, start in jobs:
        manifest = make_dataset(args.out, split=split, count=count, start=start, config=config, assets=assets,
                                workers=args.workers, shard_size=args.shard_size, progress=_progress_bar(f"{split} samples"))
        print(f"{split}: {len(manifest.seeds_of(split))} samples in {args.out}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            from gvf_core.demo import SAMPLE_ASSET, SAMPLE_VIDEO

            args.mesh, args.video, args.camera, args.frames, args.strength = SAMPLE_ASSET, SAMPLE_VIDEO, None, None, 1.0
            args.method, args.guidance, args.draws = DEFAULT_SAMPLER.method, DEFAULT_SAMPLER.guidance_video, DEFAULT_SAMPLER.draws
            args.model, args.no_preview = None, False
            _animate(args)
            if not args.no_blend:
                _demo_blend(args)
        elif args.command == "canonical":
            from gvf_core.demo import canonical_turntable

            report = canonical_turntable(
                args.mesh, args.out, num_gaussians=args.gaussians, seed=args.seed, frames=args.frames, size=args.size,
                video_format=args.format, up=args.up, backend=args.backend, progress=_progress_bar("turntable"),
            )
            print(f"wrote {report['outputs']['ply']} ({report['num_gaussians']} Gaussians) and {report['outputs']['turntable']}")
        elif args.command == "data" and args.data_command == "make":
            _data_make(args)
        elif args.command == "data" and args.data_command == "show":
            from gvf_core.data.dataset import GVFMapDataset
            from gvf_core.data.preview import write_preview

            ds = GVFMapDataset(args.dir, split=args.split)
            if not 0 <= args.index < len(ds):
                raise ValueError(f"--index {args.index} is out of range: {args.dir} has {len(ds)} {args.split} samples")
            info, i = ds.locate(args.index)
            from gvf_core.data.shards import ShardReader

            with ShardReader(Path(args.dir) / info.file) as reader:
                arrays, meta = reader[i]
            out = Path(args.out) if args.out else Path(args.dir) / "preview" / f"{args.split}_{args.index}.gif"
            paths = write_preview(arrays, meta, out)
            print("wrote " + " and ".join(str(p) for p in paths))
        elif args.command == "data" and args.data_command == "encode":
            from gvf_core.data.encode import encode_dataset
            from gvf_core.models.vae import load_vae

            device = _device(args.device)
            paths = encode_dataset(load_vae(args.model or _shipped("vae"), device), args.data,
                                   splits=tuple(args.splits.split(",")), device=device, progress=_progress_bar("encode"))
            print(f"wrote {len(paths)} latent files in {Path(args.data) / 'latents'}")
        elif args.command == "train" and args.train == "vae":
            _train_vae(args)
        elif args.command == "train" and args.train == "dit":
            _train_dit(args)
        elif args.command == "animate":
            _animate(args)
        elif args.command == "eval" and args.eval == "animate":
            from gvf_core.eval.animate import evaluate_animate

            _ensure_split(args.data, args.split)
            figures = evaluate_animate(args.data, model=args.model, limit=args.limit, steps=args.steps, method=args.method,
                                       guidance=args.guidance, sweep=args.sweep_steps, device=_device(args.device),
                                       render_every=0 if args.no_images else 4, refine=args.refine, skip=args.skip, split=args.split,
                                       per_clip=args.per_clip, draws=args.draws,
                                       progress=_progress_bar("eval animate"))  # on stderr: --json output stays clean
            _print_figures(figures, args.json)
        elif args.command == "bench" and args.bench == "blender":
            _print_figures(_bench_blender(args), args.json)
        elif args.command == "bench" and args.bench == "animate":
            from gvf_core.bench.animate import run

            _print_figures(run(frames=args.frames, steps=args.steps, device=_device(args.device), draws=args.draws), args.json)
        elif args.command == "eval" and args.eval == "vae":
            from gvf_core.eval.vae import evaluate_vae
            from gvf_core.models.vae import load_vae

            device = _device(args.device)
            model = load_vae(args.model or _shipped("vae"), device)
            _ensure_split(args.data, "val")
            figures = evaluate_vae(model, args.data, "val", limit=args.limit, device=device,
                                   progress=_progress_bar("eval vae"))
            _print_figures(figures, args.json)
        elif args.command == "bench" and args.bench == "data":
            from gvf_core.bench.data import run

            _print_figures(run(args.samples, args.parallel_samples, args.workers), args.json)
        elif args.command == "bench" and args.bench == "render":
            from gvf_core.bench.render import run

            figures = run(args.gaussians, args.size, args.repeats, reference=not args.no_reference,
                          reference_repeats=args.reference_repeats)
            _print_figures(figures, args.json)
        else:
            raise RuntimeError(f"command not handled: {argv}")  # a parser/dispatch mismatch is a bug
        return 0
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"gvf: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
