"""The ``gvf`` command line.

    gvf demo [--out DIR]                 canonical Gaussians of the bundled sample: PLY + turntable
    gvf canonical MESH --out DIR         the same for any .obj/.ply/.stl/.glb/.gltf
    gvf bench render [--json]            renderer speed (torch backend vs dense reference, gsplat on CUDA)

Every ``gvf bench`` / ``gvf eval`` command accepts ``--json`` and then prints exactly
one JSON object on stdout (logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


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

    bench = sub.add_parser("bench", help="benchmarks that print figures").add_subparsers(dest="bench", required=True)
    p = bench.add_parser("render", help="renderer speed: torch backend vs dense reference (and gsplat on CUDA)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--gaussians", type=int, default=4096)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of the fast backends (median)")
    p.add_argument("--reference-repeats", type=int, default=1, help="timed repeats of the slow dense reference")
    p.add_argument("--no-reference", action="store_true", help="skip the dense reference (it takes minutes at 256²)")
    return parser


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
