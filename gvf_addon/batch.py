"""Headless batch conversion of an asset library.

    python -m gvf_addon.batch --assets DIR --video FILE_OR_DIR --out DIR [--shard K/N] [options]
    blender --background --factory-startup --python gvf_addon/batch.py -- --assets DIR ...

For every mesh file in ``--assets`` (.obj .ply .stl .glb .gltf .fbx, sorted by name): a fresh
scene, the file imported, its meshes joined into one object (modifiers and transforms
applied), the documented front camera at the video's size, the job run in the worker, and
into ``OUT/<asset>/``:

- ``<asset>.blend`` with the animated result (``--mode``, default MESH_CACHE reading the PC2
  file beside it through a relative path);
- ``animation.pc2``, ``gaussians/frame_*.ply``, ``vertices.npy``, ``camera.json``;
- ``report.json``: status (ok / failed), timings, settings, and for a failure the error and
  its traceback.

``--video`` is one driving video for every asset, or a folder holding ``<asset>.mp4`` (or
.gif/.webm, or a ``<asset>/`` PNG folder) per asset. A failing asset is logged and skipped;
the batch goes on and exits 1 when any asset failed. ``--shard K/N`` (K = 0 … N−1) takes
every N-th asset starting at K, so N machines running the same command split the library.
An asset whose ``report.json`` says ok is not redone when the command runs again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script (blender --python batch.py): import the package by its folder
    import importlib

    _here = Path(__file__).resolve().parent
    sys.path.insert(0, str(_here.parent))
    __package__ = _here.name
    importlib.import_module(__package__)

from .jobs import JobSettings, OUTPUT_MODES, REFINE_CHOICES  # noqa: E402

ASSET_EXTENSIONS = (".obj", ".ply", ".stl", ".glb", ".gltf", ".fbx")
VIDEO_EXTENSIONS = (".mp4", ".gif", ".webm", ".mov", ".avi")
REPORT = "report.json"


class AssetError(RuntimeError):
    """An asset that cannot be imported or has no mesh."""


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like K/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs N >= 1 and 0 <= K < N, got {text!r}")
    return k, n


def list_assets(folder: Path, shard: tuple[int, int] = (0, 1)) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ASSET_EXTENSIONS)
    k, n = shard
    return files[k::n]


def video_for(asset: Path, video: Path) -> Path:
    """The driving video of ``asset``: ``video`` itself, or its per-asset entry when it is a folder of videos."""
    if video.is_file():
        return video
    if video.is_dir():
        for ext in VIDEO_EXTENSIONS:
            if (video / f"{asset.stem}{ext}").is_file():
                return video / f"{asset.stem}{ext}"
        if (video / asset.stem).is_dir():
            return video / asset.stem
        if any(video.glob("*.png")):  # a PNG-frame video used for every asset
            return video
        raise AssetError(f"{video}: no video for {asset.name} (looked for {asset.stem}.mp4/.gif/.webm or a "
                         f"{asset.stem}/ PNG folder)")
    raise AssetError(f"{video}: no such video file or folder")


def is_done(asset_dir: Path) -> bool:
    try:
        return json.loads((asset_dir / REPORT).read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def _write_report(asset_dir: Path, report: dict) -> None:
    from gvf_core.atomic_write import atomic_path  # bpy- and torch-free: imports in Blender's Python

    with atomic_path(asset_dir / REPORT) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str))


# ------------------------------------------------------------------------------- Blender side
def import_asset(path: Path):
    """Import ``path`` into an empty scene and return one mesh object holding all its meshes."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    ext = path.suffix.lower()
    importers = {".obj": lambda: bpy.ops.wm.obj_import(filepath=str(path)),
                 ".ply": lambda: bpy.ops.wm.ply_import(filepath=str(path)),
                 ".stl": lambda: bpy.ops.wm.stl_import(filepath=str(path)),
                 ".glb": lambda: bpy.ops.import_scene.gltf(filepath=str(path)),
                 ".gltf": lambda: bpy.ops.import_scene.gltf(filepath=str(path)),
                 ".fbx": lambda: bpy.ops.import_scene.fbx(filepath=str(path))}
    try:
        importers[ext]()
    except RuntimeError as exc:
        raise AssetError(f"{path.name}: Blender cannot import it: {' '.join(str(exc).split())[:300]}") from None
    scene = bpy.context.scene
    meshes = [o for o in scene.objects if o.type == "MESH"]
    if not meshes:
        raise AssetError(f"{path.name}: no mesh in the file")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    parts = []
    for obj in meshes:
        me = bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph))
        me.transform(obj.matrix_world)
        part = bpy.data.objects.new(obj.name, me)
        scene.collection.objects.link(part)
        parts.append(part)
    for obj in [o for o in scene.objects if o not in parts]:
        bpy.data.objects.remove(obj, do_unlink=True)
    if sum(len(p.data.polygons) for p in parts) == 0:
        raise AssetError(f"{path.name}: the meshes have no faces")
    target = parts[0]
    if len(parts) > 1:
        with bpy.context.temp_override(active_object=target, selected_editable_objects=parts, object=target):
            bpy.ops.object.join()
    target.name = path.stem
    target.data.name = path.stem
    return target


def convert_asset(asset: Path, video: Path, asset_dir: Path, settings: JobSettings, worker, progress=None) -> dict:
    """One asset: import → front camera → animate in the worker → .blend + outputs; returns the report."""
    import bpy

    from . import jobs
    from .camera import add_front_camera, video_size
    from .scene_io import mesh_arrays

    t0 = time.perf_counter()
    obj = import_asset(asset)
    size = video_size(str(video))
    if size is None:
        raise AssetError(f"{video}: Blender cannot read the video's size; give an .mp4/.gif/.webm or a PNG folder")
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = size[0], size[1], 100
    add_front_camera(bpy.context, mesh_arrays(bpy.context.evaluated_depsgraph_get(), obj)["vertices"])
    asset_dir.mkdir(parents=True, exist_ok=True)
    bpy.context.preferences.filepaths.save_version = 0  # no .blend1 backups in the output
    blend = asset_dir / f"{asset.stem}.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))  # saved first, so the PC2 path is relative to it
    job = jobs.prepare_animate(bpy.context, obj, JobSettings(**{**settings.__dict__, "video_path": str(video)}),
                               job_dir=asset_dir / ".job")
    job.request.out_dir = str(asset_dir)
    job.request.write_outputs = True
    job.request.save_state = False
    result, event = jobs.run_sync(job, worker, progress=progress)
    jobs.apply_result(bpy.context, job, result, pc2_path="//animation.pc2")
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    shutil.rmtree(asset_dir / ".job", ignore_errors=True)
    return {"status": "ok", "asset": str(asset), "video": str(video), "blend": str(blend), "mode": settings.mode,
            "frames": int(result.vertices.shape[0]), "vertices": int(result.vertices.shape[1]),
            "seconds": time.perf_counter() - t0, "job": event.report}


def run_batch(assets_dir: Path, video: Path, out: Path, settings: JobSettings, shard=(0, 1), worker=None,
              show_progress: bool = True, worker_kwargs: dict | None = None) -> dict:
    """Convert every asset of the shard; returns the batch summary (also written to OUT/batch_report.json).

    ``worker``: a started WorkerClient to use; else one is started with ``worker_kwargs`` (and
    restarted if an asset kills it)."""
    from .worker.client import WorkerClient

    assets = list_assets(assets_dir, shard)
    out.mkdir(parents=True, exist_ok=True)
    own_worker = worker is None
    summary = {"assets": len(assets), "shard": f"{shard[0]}/{shard[1]}", "ok": [], "failed": [], "skipped": []}
    bar = _bar(len(assets), show_progress)
    try:
        for asset in assets:
            asset_dir = out / asset.stem
            if is_done(asset_dir):
                summary["skipped"].append(asset.name)
                bar.update(1)
                continue
            bar.set_description(asset.name)
            try:
                if worker is None or (own_worker and not worker.running):
                    worker = WorkerClient(**(worker_kwargs or {}))
                    worker.start()
                report = convert_asset(asset, video_for(asset, video), asset_dir, settings, worker)
                _write_report(asset_dir, report)
                summary["ok"].append(asset.name)
            except Exception as exc:  # noqa: BLE001 - one broken asset must not stop the batch
                tb = getattr(exc, "traceback", "") or traceback.format_exc()
                _write_report(asset_dir, {"status": "failed", "asset": str(asset), "error": str(exc),
                                          "error_type": type(exc).__name__, "traceback": tb})
                summary["failed"].append({"asset": asset.name, "error": str(exc).splitlines()[0] if str(exc) else ""})
                print(f"GVF batch: {asset.name} failed: {exc}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
        if own_worker and worker is not None:
            worker.stop()
    (out / "batch_report.json").write_text(json.dumps(summary, indent=2))
    return summary


class _PlainBar:
    def __init__(self, total: int):
        self.total, self.n = total, 0

    def update(self, k: int) -> None:
        self.n += k
        print(f"GVF batch: {self.n}/{self.total}", file=sys.stderr, flush=True)

    def set_description(self, text: str) -> None:
        print(f"GVF batch: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _bar(total: int, show: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # Blender's own Python has no tqdm
        return _PlainBar(total)
    return tqdm(total=total, desc="gvf batch", unit="asset", disable=not show, dynamic_ncols=True)


def parse(argv: list[str]) -> tuple[argparse.Namespace, JobSettings]:
    """The command line's arguments and the job settings they give every asset."""
    p = argparse.ArgumentParser(prog="python -m gvf_addon.batch", description=__doc__.split("\n")[0])
    p.add_argument("--assets", required=True, type=Path, help="folder of mesh files")
    p.add_argument("--video", required=True, type=Path, help="one driving video, or a folder with <asset>.mp4 per asset")
    p.add_argument("--out", required=True, type=Path, help="output folder (one subfolder per asset)")
    p.add_argument("--shard", type=parse_shard, default=(0, 1), help="K/N: this machine's share (K = 0..N-1)")
    p.add_argument("--mode", choices=OUTPUT_MODES, default="MESH_CACHE")
    p.add_argument("--frames", type=int, default=0, help="video frames to use (0 = all)")
    p.add_argument("--first-frame", type=int, default=0)
    p.add_argument("--steps", type=int, default=JobSettings.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strength", type=float, default=1.0)
    p.add_argument("--refine", choices=REFINE_CHOICES, default="auto")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--model", default="", help="model folder (default: the shipped model)")
    p.add_argument("--num-gaussians", type=int, default=None, help="canonical Gaussians per asset (default 4096)")
    p.add_argument("--appearance-views", type=int, default=0,
                   help="render each asset from this many views in Blender and fit the Gaussians' colours to them (default 0: off)")
    p.add_argument("--worker-python", default=None, help="Python with torch that runs the model (default: this one)")
    p.add_argument("--site-dir", action="append", default=[],
                   help="folder put first on the worker's sys.path (the add-on's private dependency folder); repeatable")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not args.assets.is_dir():
        p.error(f"--assets {args.assets}: no such folder")
    if not args.video.exists():
        p.error(f"--video {args.video}: no such file or folder")
    options = {} if args.num_gaussians is None else {"num_gaussians": args.num_gaussians}
    settings = JobSettings(video_path=str(args.video), first_frame=args.first_frame, frames=args.frames,
                           steps=args.steps, seed=args.seed, strength=args.strength, refine=args.refine,
                           mode=args.mode, device=args.device, model_dir=args.model, options=options,
                           appearance_views=args.appearance_views)
    return args, settings


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    args, settings = parse(argv)
    worker_kwargs = {"python_executable": args.worker_python, "site_dirs": args.site_dir}
    summary = run_batch(args.assets, args.video, args.out, settings, args.shard, show_progress=not args.no_progress,
                        worker_kwargs=worker_kwargs)
    print(f"GVF batch: {len(summary['ok'])} ok, {len(summary['failed'])} failed, {len(summary['skipped'])} already done "
          f"(of {summary['assets']}); reports in {args.out}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
