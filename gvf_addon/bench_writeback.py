"""Write-back benchmark: seconds to write ``frames`` x ``vertices`` in each output mode (needs bpy).

This is the write-back half of ``gvf bench blender [--json]`` (issue "Blender extension"); the
``gvf`` command will call :func:`run` through a Python that has ``bpy`` (the CLI lives in the
bpy-free ``gvf_core``, so it cannot import this module itself). Until then::

    python -m gvf_addon.bench_writeback [--frames 32] [--vertices 100000] [--json]

It works in a scene of its own and removes everything it made (scene, objects, meshes, actions,
PC2 files), so running it inside a Blender session leaves the open file as it was. Figures per
mode: ``seconds`` (best of ``repeats`` calls of :func:`gvf_addon.writeback.write_animation`,
each replacing the previous result, so the removal of the old result is included),
``seconds_per_frame`` (that divided by ``frames``) and ``playback_seconds_per_frame`` (setting a
scene frame and reading the evaluated positions back, averaged over all frames: the cost of
playing the result).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

from .writeback import MODES, read_back, remove_result, write_animation

__all__ = ["run", "main"]


def run(frames: int = 32, vertices: int = 100_000, repeats: int = 3) -> dict:
    """Time :func:`write_animation` in each mode on a grid of about ``vertices`` vertices.

    Returns ``{"frames", "vertices", "faces", "blender", "modes": {MODE: {"seconds",
    "seconds_per_frame", "playback_seconds_per_frame", "repeats"}}, "pc2_bytes"}``.
    """
    if frames < 1 or vertices < 4 or repeats < 1:
        raise ValueError(f"need frames >= 1, vertices >= 4, repeats >= 1; got {frames}, {vertices}, {repeats}")
    scene = bpy.data.scenes.new("gvf_bench_writeback")
    folder = Path(tempfile.mkdtemp(prefix="gvf_bench_writeback_"))
    source = None
    try:
        mesh = _grid_mesh("gvf_bench_grid", math.ceil(math.sqrt(vertices)))
        source = bpy.data.objects.new("gvf_bench_grid", mesh)
        scene.collection.objects.link(source)
        rest = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", rest)
        animation = _wave(rest.reshape(-1, 3), frames)  # [T, V, 3]

        modes = {}
        for mode in MODES:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                result = write_animation(scene, source, animation, mode, fps=24.0, frame_start=1,
                                         pc2_path=folder / "bench.pc2" if mode == "MESH_CACHE" else None)
                times.append(time.perf_counter() - start)
            start = time.perf_counter()
            for k in range(frames):
                read_back(scene, result, 1 + k)
            playback = (time.perf_counter() - start) / frames
            best = min(times)
            modes[mode] = {
                "seconds": best,
                "seconds_per_frame": best / frames,
                "playback_seconds_per_frame": playback,
                "repeats": times,
            }
        return {
            "frames": frames,
            "vertices": len(mesh.vertices),
            "faces": len(mesh.polygons),
            "blender": bpy.app.version_string,
            "modes": modes,
            "pc2_bytes": (folder / "bench.pc2").stat().st_size,
        }
    finally:
        if source is not None:
            remove_result(source, scene)
            grid = source.data
            bpy.data.objects.remove(source, do_unlink=True)
            bpy.data.meshes.remove(grid)
        bpy.data.scenes.remove(scene)
        shutil.rmtree(folder, ignore_errors=True)


def _grid_mesh(name: str, n: int):
    """An n x n vertex grid of quads over [-1, 1]^2, built with foreach_set."""
    xs = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    co = np.stack([x, y, np.zeros_like(x)], axis=-1).reshape(-1, 3)  # [n*n, 3]
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a = (i * n + j).ravel()
    quads = np.stack([a, a + n, a + n + 1, a + 1], axis=-1).astype(np.int32)  # [F, 4]
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(co))
    mesh.vertices.foreach_set("co", co.ravel())
    mesh.loops.add(quads.size)
    mesh.loops.foreach_set("vertex_index", quads.ravel())
    mesh.polygons.add(len(quads))
    mesh.polygons.foreach_set("loop_start", np.arange(0, quads.size, 4, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.validate()
    return mesh


def _wave(rest: np.ndarray, frames: int) -> np.ndarray:
    t = np.arange(frames, dtype=np.float32)[:, None]  # [T, 1]
    out = np.repeat(rest[None], frames, axis=0)  # [T, V, 3]
    out[..., 2] = 0.1 * np.sin(4.0 * rest[None, :, 0] + 0.3 * t) * np.cos(3.0 * rest[None, :, 1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gvf_addon.bench_writeback", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--vertices", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    figures = run(args.frames, args.vertices, args.repeats)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"write-back, {figures['frames']} frames x {figures['vertices']} vertices (Blender {figures['blender']})")
    for mode, row in figures["modes"].items():
        print(f"  {mode:<12} {row['seconds']:7.3f} s  {1e3 * row['seconds_per_frame']:7.2f} ms/frame  "
              f"playback {1e3 * row['playback_seconds_per_frame']:7.2f} ms/frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
