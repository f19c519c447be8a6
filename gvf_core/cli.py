"""The ``gvf`` command line.

    gvf demo [--out DIR]                 canonical Gaussians of the bundled sample: PLY + turntable
    gvf canonical MESH --out DIR         the same for any .obj/.ply/.stl/.glb/.gltf
    gvf data make --out DIR --count N --seed S [--from-assets DIR]   training shards (+ the fixed val set)
    gvf data show DIR --index I          preview of sample I: driving video beside novel views
    gvf bench render [--json]            renderer speed (torch backend vs dense reference, gsplat on CUDA)
    gvf bench data [--json]              data-engine samples per minute, by stage

Every ``gvf bench`` / ``gvf eval`` command accepts ``--json`` and then prints exactly
one JSON object on stdout (logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _progress_bar(desc: str, enabled: bool = True):
    from tqdm import tqdm

    bar = {"bar": None}

    def update(done: int, total: int) -> None:
        if not enabled:
            return
        if bar["bar"] is None:
            bar["bar"] = tqdm(total=total, desc=desc, file=sys.stderr)
        bar["bar"].n = done
        bar["bar"].refresh()
        if done >= total:
            bar["bar"].close()

    return update


def _print_figures(figures: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures))
        return
    width = max(len(k) for k in figures)
    for key, value in figures.items():
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gvf", description="GVF Animate: animate a 3D asset from a driving video.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="canonical Gaussians of the bundled sample asset: PLY + turntable")
    _add_canonical_options(p)

    p = sub.add_parser("canonical", help="mesh -> canonical Gaussians: PLY + turntable")
    p.add_argument("mesh", help="mesh file (.obj, .ply, .stl, .glb, .gltf)")
    _add_canonical_options(p)

    data = sub.add_parser("data", help="the 4D data engine").add_subparsers(dest="data", required=True)
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
    p = data.add_parser("show", help="write a preview of one sample")
    p.add_argument("dir", help="data set folder")
    p.add_argument("--index", type=int, default=0, help="sample index within the split (default 0)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train")
    p.add_argument("--out", default=None, help="output .gif or .mp4 (default: DIR/preview/<split>_<index>.gif)")

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
    return parser


def _data_make(args) -> None:
    from gvf_core.data.make import load_asset_pool, make_dataset
    from gvf_core.data.sample import SampleConfig

    config = SampleConfig(frames=args.frames, image_size=args.image_size, num_gaussians=args.gaussians, num_points=args.points)
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
        if args.command in ("demo", "canonical"):
            from gvf_core.demo import SAMPLE_ASSET, canonical_turntable

            mesh = SAMPLE_ASSET if args.command == "demo" else args.mesh
            report = canonical_turntable(
                mesh, args.out, num_gaussians=args.gaussians, seed=args.seed, frames=args.frames, size=args.size,
                video_format=args.format, up=args.up, backend=args.backend, progress=_progress_bar("turntable"),
            )
            print(f"wrote {report['outputs']['ply']} ({report['num_gaussians']} Gaussians) and {report['outputs']['turntable']}")
        elif args.command == "data" and args.data == "make":
            _data_make(args)
        elif args.command == "data" and args.data == "show":
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
        elif args.command == "bench" and args.bench == "data":
            from gvf_core.bench.data import run

            _print_figures(run(args.samples, args.parallel_samples, args.workers), args.json)
        elif args.command == "bench" and args.bench == "render":
            from gvf_core.bench.render import run

            figures = run(args.gaussians, args.size, args.repeats, reference=not args.no_reference,
                          reference_repeats=args.reference_repeats)
            _print_figures(figures, args.json)
        return 0
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"gvf: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
