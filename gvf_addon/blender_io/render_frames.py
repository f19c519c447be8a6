"""Render vertex tracks with Blender (Workbench or Cycles) from an OpenCV camera (needs bpy).

Usage (in a Python that has ``bpy``)::

    python -m gvf_addon.blender_io.render_frames IN.npz OUT_DIR --camera CAM.json
        [--engine workbench|cycles] [--size 128] [--clip 0] [--samples 16]

``IN.npz`` holds ``faces`` [F, 3], optional ``colors`` [V, 3] (sRGB 0..1) and the vertex
tracks, either ``vertices`` [T, V, 3] or the ``clip_{i}_vertices`` written by
:mod:`.extract_animation` (``--clip`` picks one). Positions are world space, +Z up.

``CAM.json`` is an OpenCV pinhole camera (docs/conventions.md)::

    {"width": W, "height": H, "fx": .., "fy": .., "cx": .., "cy": .., "world_to_camera": 4x4}

``--size`` rescales it so that the longer image side has that many pixels. Writes
``OUT_DIR/frame_0000.png``, ... as RGBA PNGs on a transparent background (display colours,
"Standard" view transform). Workbench: studio lighting, vertex colours, ~0.1 s a frame.
Cycles: CPU, a few samples, a sun plus grey ambient light, vertex colours as base colour.

The OpenCV -> Blender camera conversion is :mod:`gvf_addon.camera`.

Errors exit with code 2 and one line ``GVF_ERROR: <file>: <reason>`` on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import numpy as np

from ..camera import apply_opencv_camera, matrix_world_from_world_to_camera
from . import ERROR_PREFIX


class RenderError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gvf_addon.blender_io.render_frames", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="npz with faces, vertices [T, V, 3] (or clip_{i}_vertices), optional colors")
    parser.add_argument("out_dir", help="folder for frame_0000.png, ...")
    parser.add_argument("--camera", required=True, help="OpenCV camera JSON")
    parser.add_argument("--engine", choices=("workbench", "cycles"), default="workbench")
    parser.add_argument("--size", type=int, default=None, help="longer image side in pixels (default: the camera's)")
    parser.add_argument("--clip", type=int, default=0, help="which clip_{i}_vertices to render")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    args = parser.parse_args(argv)
    where = args.input
    try:
        data = np.load(args.input)
        where = args.camera
        camera = _read_camera(Path(args.camera), args.size)
        where = args.input
        vertices, faces, colors = _read_tracks(data, args.clip)
        render(vertices, faces, colors, camera, Path(args.out_dir), engine=args.engine, samples=args.samples)
    except (RenderError, OSError, ValueError, KeyError) as exc:
        print(f"{ERROR_PREFIX}{where}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except Exception as exc:
        traceback.print_exc()
        print(f"{ERROR_PREFIX}{where}: unexpected {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


def _read_camera(path: Path, size: int | None) -> dict:
    cam = json.loads(path.read_text())
    missing = {"width", "height", "fx", "fy", "cx", "cy", "world_to_camera"} - set(cam)
    if missing:
        raise RenderError(f"camera JSON lacks {sorted(missing)}")
    w2c = np.asarray(cam["world_to_camera"], dtype=np.float64)
    if w2c.shape != (4, 4):
        raise RenderError(f"world_to_camera must be 4x4, got {w2c.shape}")
    cam = {k: float(cam[k]) for k in ("width", "height", "fx", "fy", "cx", "cy")} | {"world_to_camera": w2c}
    if abs(cam["fx"] - cam["fy"]) > 1e-3 * cam["fx"]:
        raise RenderError(f"non-square pixels (fx={cam['fx']}, fy={cam['fy']}) are not supported")
    if size is not None:
        s = size / max(cam["width"], cam["height"])
        for k in ("width", "height", "fx", "fy", "cx", "cy"):
            cam[k] *= s
    cam["width"], cam["height"] = int(round(cam["width"])), int(round(cam["height"]))
    return cam


def _read_tracks(data, clip: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    key = "vertices" if "vertices" in data else f"clip_{clip}_vertices"
    if key not in data:
        raise RenderError(f"no 'vertices' or {key!r} array")
    vertices = np.asarray(data[key], dtype=np.float64)
    faces = np.asarray(data["faces"], dtype=np.int64)
    if vertices.ndim == 2:
        vertices = vertices[None]
    if vertices.ndim != 3 or vertices.shape[2] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise RenderError(f"expected vertices [T, V, 3] and faces [F, 3], got {vertices.shape} and {faces.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= vertices.shape[1]):
        raise RenderError("face indices out of range")
    colors = np.asarray(data["colors"], dtype=np.float64) if "colors" in data else None
    if colors is not None and colors.shape != (vertices.shape[1], 3):
        raise RenderError(f"colors must be [V, 3], got {colors.shape}")
    return vertices, faces, colors


def render(vertices, faces, colors, camera: dict, out_dir: Path, engine: str = "workbench", samples: int = 16) -> list[Path]:
    """Render every frame of ``vertices`` [T, V, 3]; returns the PNG paths."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    T, V, _ = vertices.shape

    me = bpy.data.meshes.new("gvf_mesh")
    me.vertices.add(V)
    me.loops.add(3 * len(faces))
    me.polygons.add(len(faces))
    me.vertices.foreach_set("co", vertices[0].astype(np.float32).ravel())
    me.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * len(faces), 3, dtype=np.int32))
    me.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
    me.update()
    rgb = np.full((V, 3), 0.8) if colors is None else np.clip(colors, 0.0, 1.0)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)  # FLOAT_COLOR is linear
    attr = me.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", np.concatenate([lin, np.ones((V, 1))], axis=1).astype(np.float32).ravel())
    obj = bpy.data.objects.new("gvf_mesh", me)
    scene.collection.objects.link(obj)

    cam_data = bpy.data.cameras.new("gvf_camera")
    W, H = camera["width"], camera["height"]
    apply_opencv_camera(cam_data, camera)
    w2c = camera["world_to_camera"]
    depth = (vertices.reshape(-1, 3) @ w2c[2, :3]) + w2c[2, 3]
    cam_data.clip_start = float(max(1e-4, 0.5 * depth.min())) if depth.min() > 0 else 1e-3
    cam_data.clip_end = float(max(2.0 * depth.max(), cam_data.clip_start * 10.0))
    cam_obj = bpy.data.objects.new("gvf_camera", cam_data)
    cam_obj.matrix_world = matrix_world_from_world_to_camera(w2c).T.tolist()  # mathutils takes rows
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj

    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = W, H, 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.film_transparent = True
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    scene.view_settings.view_transform = "Standard"
    if engine == "workbench":
        r.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "VERTEX"
    elif engine == "cycles":
        _setup_cycles(bpy, scene, me, samples)
    else:
        raise RenderError(f"unknown engine {engine!r}")

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in range(T):
        if t:
            me.vertices.foreach_set("co", vertices[t].astype(np.float32).ravel())
            me.update()
        r.filepath = str(out_dir / f"frame_{t:04d}.png")
        bpy.ops.render.render(write_still=True)
        paths.append(Path(r.filepath))
    return paths


def _setup_cycles(bpy, scene, me, samples: int) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = max(1, samples)
    scene.cycles.use_denoising = False
    mat = bpy.data.materials.new("gvf_material")
    tree = mat.node_tree  # materials use nodes by default in 5.0
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    attr = tree.nodes.new("ShaderNodeVertexColor")
    attr.layer_name = "Col"
    tree.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.8
    me.materials.append(mat)
    world = bpy.data.worlds.new("gvf_world")
    world.color = (0.4, 0.4, 0.4)  # without nodes: a uniform ambient light
    scene.world = world
    sun = bpy.data.lights.new("gvf_sun", "SUN")
    sun.energy = 3.0
    sun_obj = bpy.data.objects.new("gvf_sun", sun)
    sun_obj.rotation_euler = (0.6, 0.2, 0.8)
    scene.collection.objects.link(sun_obj)


if __name__ == "__main__":
    sys.exit(main())
