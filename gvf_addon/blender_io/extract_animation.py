"""Animated glTF/GLB/FBX -> world-space vertex tracks of every action, resampled (needs bpy).

Usage (in a Python that has ``bpy``)::

    python -m gvf_addon.blender_io.extract_animation INPUT OUT.npz [--fps 24]

What it does, in order:

1. Resets Blender to an empty scene and imports the file (``import_scene.gltf`` for
   .glb/.gltf, ``import_scene.fbx`` for .fbx).
2. Collects the mesh objects that make up the asset: every MESH object except the bone-shape
   helpers the glTF importer puts in the ``glTF_not_exported`` collection and objects hidden
   from rendering. They are merged in name order into one vertex array.
3. Collects the clips. glTF: one clip per action (one action per glTF animation; Blender 5.0
   actions have one slot per animated ID, e.g. both wheels of a truck, or ``'KEY'`` slots for
   morph targets). FBX: one action per (take, ID) named ``"ID|Take"``; actions of one take form
   one clip. Each slot is assigned to its target ID with ``animation_data.action`` +
   ``animation_data.action_slot``.
4. Rest pose: every action detached, pose bones at identity (the bind pose), animated shape
   keys at 0 (the basis shape, even where the file stores other default weights); object
   transforms at the first clip's first frame (the importer overwrites the file's node
   transforms with an evaluated frame, so the file's own rest is not available for them).
   ``faces`` (Blender's loop triangulation of the evaluated rest mesh) and ``colors`` come
   from the rest pose too. Every clip starts from this state, so channels that an action does
   not animate are at rest rather than left over from the previous action.
5. **Resampling happens here, in Blender**: a clip whose action spans frames ``[s, e]`` at the
   scene's native rate ``r`` (``render.fps / fps_base``) lasts ``(e - s) / r`` seconds and is
   sampled at ``t_k = k / fps``, ``k = 0 .. floor(duration * fps)``, i.e. at scene time
   ``s + t_k * r`` through ``scene.frame_set(frame, subframe=...)``, so the animation curves
   themselves are evaluated between keys (no linear blending of vertex positions).
6. Vertices are the *evaluated* meshes (armature skinning, shape keys, every modifier) with
   ``matrix_world`` applied: world space, Blender axes (+Z up; the glTF importer already turns
   glTF's +Y up into +Z up). The vertex count must stay the same across frames.

Output npz (docs/conventions.md: frames first):

- ``faces`` [F, 3] int64, ``rest_vertices`` [V, 3] float32, ``colors`` [V, 3] float32
  (display/sRGB 0..1: material base colour, times the base-colour texture sampled at the
  vertex UVs when there is one; 0.8 grey without a material);
- ``fps`` (the sampling rate), ``native_fps``, ``source``, ``num_clips``;
- per clip i: ``clip_{i}_vertices`` [T_i, V, 3] float32, ``clip_{i}_name``,
  ``clip_{i}_frame_range`` [2] (in the scene's native frames).

Clips shorter than two samples (a single-key pose) are skipped with a warning on stderr.
Errors (missing file, unsupported extension, importer failure, no mesh, changing vertex count)
exit with code 2 and one line ``GVF_ERROR: <file>: <reason>`` on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from pathlib import Path

import numpy as np

from . import ERROR_PREFIX

SUFFIXES = (".glb", ".gltf", ".fbx")
HELPER_COLLECTION = "glTF_not_exported"
DEFAULT_GREY = 0.8


class ExtractError(Exception):
    """A failure with a message meant for the user (the file name is added by the caller)."""


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gvf_addon.blender_io.extract_animation", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="animated .glb, .gltf or .fbx file")
    parser.add_argument("output", help="npz file to write")
    parser.add_argument("--fps", type=float, default=24.0, help="sampling rate of the written clips (frames per second)")
    args = parser.parse_args(argv)
    path = Path(args.input)
    try:
        if not args.fps > 0:
            raise ExtractError(f"--fps must be positive, got {args.fps}")
        data = extract(path, fps=args.fps)
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **data)
    except ExtractError as exc:
        print(f"{ERROR_PREFIX}{path}: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # unexpected: keep the traceback, end with the one-line message
        traceback.print_exc()
        print(f"{ERROR_PREFIX}{path}: unexpected {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- extraction


def extract(path: Path, fps: float = 24.0) -> dict[str, np.ndarray]:
    """Import ``path`` into an empty scene and return the npz content (see the module docstring)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ExtractError(f"unsupported file type {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise ExtractError("file not found")

    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    _import(bpy, path.resolve(), suffix)
    scene = bpy.context.scene

    meshes = _mesh_objects(bpy)
    if not meshes:
        raise ExtractError("the file has no mesh object (only empties, armatures, cameras or lights)")

    clips = _collect_clips(bpy, fbx=suffix == ".fbx")
    _detach_all_animation(bpy)
    if clips:  # object transforms at rest = the first clip's first frame (see _RestState)
        _assign(clips[0][1])
        scene.frame_set(int(math.floor(_frame_range(clips[0][1])[0])))
        _detach(clips[0][1])
    state = _RestState(bpy, clips)
    state.restore()

    rest, faces, colors = _rest_geometry(bpy, meshes)
    native_fps = scene.render.fps / scene.render.fps_base

    data: dict[str, np.ndarray] = {
        "faces": faces,
        "rest_vertices": rest.astype(np.float32),
        "colors": colors.astype(np.float32),
        "fps": np.float64(fps),
        "native_fps": np.float64(native_fps),
        "source": np.str_(str(path)),
    }
    i = 0
    for name, targets in clips:
        start, end = _frame_range(targets)
        duration = (end - start) / native_fps
        count = int(math.floor(duration * fps + 1e-6)) + 1
        if count < 2:
            print(f"warning: {path}: clip {name!r} spans {duration:.3f} s, fewer than 2 frames at {fps} fps; skipped", file=sys.stderr)
            continue
        state.restore()
        _assign(targets)
        frames = np.empty((count, len(rest), 3), dtype=np.float32)
        for k in range(count):
            f = start + (k / fps) * native_fps
            whole = math.floor(f)
            scene.frame_set(int(whole), subframe=float(f - whole))
            verts = _world_vertices(bpy, meshes)
            if verts.shape != rest.shape:
                raise ExtractError(
                    f"clip {name!r} changes the vertex count ({len(rest)} at rest, {len(verts)} at frame {f:.2f}); "
                    "apply topology-changing modifiers (decimate, remesh, booleans) or remove them"
                )
            frames[k] = verts
        _detach(targets)
        if not np.isfinite(frames).all():
            raise ExtractError(f"clip {name!r} has NaN or infinite vertex positions")
        data[f"clip_{i}_vertices"] = frames
        data[f"clip_{i}_name"] = np.str_(name)
        data[f"clip_{i}_frame_range"] = np.array([start, end], dtype=np.float64)
        i += 1
    data["num_clips"] = np.int64(i)
    return data


def _import(bpy, path: Path, suffix: str) -> None:
    try:
        if suffix == ".fbx":
            result = bpy.ops.import_scene.fbx(filepath=str(path), use_anim=True)
        else:
            result = bpy.ops.import_scene.gltf(filepath=str(path))
    except Exception as exc:  # the operators raise RuntimeError carrying the importer's report
        report = _one_line(str(exc)).removeprefix("Error: ")
        kind = suffix[1:].upper()
        raise ExtractError(f"the {kind} importer failed, the file is corrupt or not a valid {kind} file ({report})") from None
    if "FINISHED" not in result:
        raise ExtractError(f"the {suffix[1:].upper()} importer did not finish ({sorted(result)}); the file is corrupt or unsupported")


def _mesh_objects(bpy) -> list:
    """The asset's mesh objects, sorted by name (the order of the merged vertex array)."""
    out = []
    for obj in bpy.context.scene.objects:
        if obj.type != "MESH" or obj.hide_render:
            continue
        if any(c.name.startswith(HELPER_COLLECTION) for c in obj.users_collection):
            continue  # bone shapes of the glTF importer
        out.append(obj)
    return sorted(out, key=lambda o: o.name)


# --------------------------------------------------------------------------- clips: actions and their targets

_ID_COLLECTIONS = {"OBJECT": "objects", "KEY": "shape_keys", "MESH": "meshes", "MATERIAL": "materials"}


def _slot_targets(bpy, action, slot, fbx: bool) -> list:
    """The IDs ``slot`` of ``action`` animates."""
    users = list(slot.users())
    if users:
        return users
    pool = getattr(bpy.data, _ID_COLLECTIONS.get(slot.target_id_type, ""), None)
    if pool is None:
        return []
    # glTF: the slot is named after its ID ("OBWheels" -> object "Wheels").
    if not fbx and slot.name_display in pool:
        return [pool[slot.name_display]]
    # FBX: actions are named "ID|Take[|Layer]" and every slot is called "Slot".
    if "|" in action.name and action.name.split("|", 1)[0] in pool:
        return [pool[action.name.split("|", 1)[0]]]
    return []


def _collect_clips(bpy, fbx: bool) -> list[tuple[str, list[tuple]]]:
    """[(clip name, [(ID, action, slot), ...]), ...] in bpy.data.actions order."""
    clips: dict[str, list[tuple]] = {}
    for action in bpy.data.actions:
        targets = [(id_, action, slot) for slot in action.slots for id_ in _slot_targets(bpy, action, slot, fbx)]
        if not targets:
            print(f"warning: action {action.name!r} animates nothing this script can find; skipped", file=sys.stderr)
            continue
        name = action.name.split("|", 1)[1] if fbx and "|" in action.name else action.name
        clips.setdefault(name, []).extend(targets)
    return list(clips.items())


def _detach_all_animation(bpy) -> None:
    """No active action and every NLA track muted, on every ID that has animation data."""
    for pool in ("objects", "shape_keys", "meshes", "materials", "armatures", "cameras", "lights", "worlds", "scenes"):
        for id_ in getattr(bpy.data, pool):
            ad = getattr(id_, "animation_data", None)
            if ad is None:
                continue
            ad.action = None
            for track in ad.nla_tracks:
                track.mute = True


def _assign(targets) -> None:
    for id_, action, slot in targets:
        ad = id_.animation_data or id_.animation_data_create()
        ad.action = action
        ad.action_slot = slot


def _detach(targets) -> None:
    for id_, _action, _slot in targets:
        id_.animation_data.action = None


def _frame_range(targets) -> tuple[float, float]:
    ranges = [tuple(action.frame_range) for _id, action, _slot in targets]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


class _RestState:
    """Snapshot of the values animation writes to: object transforms, pose bones, shape-key values.

    Pose bones are snapshot at identity (the bind pose) and the shape keys that any clip
    animates at 0 (the basis shape); object transforms as they are when it is made.
    """

    def __init__(self, bpy, clips) -> None:
        self.objects = []
        for obj in bpy.data.objects:
            self.objects.append(
                (obj, obj.location.copy(), obj.rotation_quaternion.copy(), obj.rotation_euler.copy(), tuple(obj.rotation_axis_angle), obj.scale.copy())
            )
        self.bones = [pb for obj in bpy.data.objects if obj.type == "ARMATURE" and obj.pose for pb in obj.pose.bones]
        animated_keys = {id_ for _name, targets in clips for id_, _a, _s in targets if id_.id_type == "KEY"}
        self.keys = []
        for key in bpy.data.shape_keys:
            values = [0.0 if key in animated_keys else kb.value for kb in key.key_blocks]
            self.keys.append((key, values))

    def restore(self) -> None:
        for obj, loc, quat, euler, axis_angle, scale in self.objects:
            obj.location, obj.rotation_quaternion, obj.rotation_euler = loc, quat, euler
            obj.rotation_axis_angle, obj.scale = axis_angle, scale
        for pb in self.bones:
            pb.location = (0.0, 0.0, 0.0)
            pb.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
            pb.rotation_euler = (0.0, 0.0, 0.0)
            pb.rotation_axis_angle = (0.0, 0.0, 1.0, 0.0)
            pb.scale = (1.0, 1.0, 1.0)
        for key, values in self.keys:
            for kb, value in zip(key.key_blocks, values):
                if kb != key.reference_key:
                    kb.value = value


# --------------------------------------------------------------------------- geometry


def _world_vertices(bpy, meshes) -> np.ndarray:
    """[V, 3] float64 evaluated, world-space vertices of ``meshes`` merged in order."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    parts = []
    for obj in meshes:
        ev = obj.evaluated_get(depsgraph)
        me = ev.to_mesh()
        try:
            co = np.empty(len(me.vertices) * 3, dtype=np.float32)
            me.vertices.foreach_get("co", co)
        finally:
            ev.to_mesh_clear()
        m = np.array(ev.matrix_world, dtype=np.float64)
        parts.append(co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3])
    return np.concatenate(parts)


def _rest_geometry(bpy, meshes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rest vertices [V, 3] float64, triangles [F, 3] int64 and colours [V, 3] (sRGB 0..1)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    verts, faces, colors = [], [], []
    offset = 0
    for obj in meshes:
        ev = obj.evaluated_get(depsgraph)
        me = ev.to_mesh()
        try:
            n = len(me.vertices)
            co = np.empty(n * 3, dtype=np.float32)
            me.vertices.foreach_get("co", co)
            me.calc_loop_triangles()
            tri = np.empty(len(me.loop_triangles) * 3, dtype=np.int64)
            me.loop_triangles.foreach_get("vertices", tri)
            colors.append(_vertex_colors(me, [s.material for s in ev.material_slots]))
        finally:
            ev.to_mesh_clear()
        m = np.array(ev.matrix_world, dtype=np.float64)
        verts.append(co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3])
        faces.append(tri.reshape(-1, 3) + offset)
        offset += n
    faces_all = np.concatenate(faces).astype(np.int64)
    if len(faces_all) == 0:
        raise ExtractError("the meshes have no faces (only loose vertices or edges)")
    return np.concatenate(verts), faces_all, np.concatenate(colors)


# --------------------------------------------------------------------------- colours


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)


def _vertex_colors(me, materials) -> np.ndarray:
    """[V, 3] display colours: per face corner from its material, averaged per vertex."""
    n_v, n_l, n_p = len(me.vertices), len(me.loops), len(me.polygons)
    if n_l == 0 or n_p == 0:
        return np.full((n_v, 3), DEFAULT_GREY)
    loop_vertex = np.empty(n_l, dtype=np.int64)
    me.loops.foreach_get("vertex_index", loop_vertex)
    totals = np.empty(n_p, dtype=np.int64)
    me.polygons.foreach_get("loop_total", totals)
    mat_index = np.empty(n_p, dtype=np.int64)
    me.polygons.foreach_get("material_index", mat_index)
    loop_mat = np.repeat(mat_index, totals)  # polygons' loops are contiguous and in order
    uv = None
    if me.uv_layers.active is not None:
        uv = np.empty(n_l * 2, dtype=np.float32)
        me.uv_layers.active.uv.foreach_get("vector", uv)
        uv = uv.reshape(-1, 2).astype(np.float64)

    loop_lin = np.full((n_l, 3), _srgb_to_linear(np.array(DEFAULT_GREY)))
    for i, mat in enumerate(materials):
        sel = loop_mat == i
        if mat is None or not sel.any():
            continue
        factor, image = _material_color(mat)
        col = np.broadcast_to(factor, (int(sel.sum()), 3)).copy()
        if image is not None and uv is not None:
            col *= _sample_image_linear(image, uv[sel])
        loop_lin[sel] = col
    acc = np.zeros((n_v, 3))
    np.add.at(acc, loop_vertex, loop_lin)
    count = np.bincount(loop_vertex, minlength=n_v)[:, None]
    lin = np.where(count > 0, acc / np.maximum(count, 1), _srgb_to_linear(np.array(DEFAULT_GREY)))
    return _linear_to_srgb(lin)


def _material_color(mat) -> tuple[np.ndarray, object | None]:
    """(linear RGB factor [3], image or None) of a material's base colour.

    Principled BSDF "Base Color": its value, or the first image texture feeding it (directly or
    through a multiply/mix node, whose unlinked colour input is taken as the factor, which is
    how the glTF importer writes ``baseColorFactor`` x ``baseColorTexture``). Without nodes,
    ``diffuse_color``.
    """
    fallback = np.array(mat.diffuse_color[:3], dtype=np.float64)
    tree = mat.node_tree
    if tree is None:
        return fallback, None
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None or "Base Color" not in bsdf.inputs:
        return fallback, None
    socket = bsdf.inputs["Base Color"]
    if not socket.is_linked:
        return np.array(socket.default_value[:3], dtype=np.float64), None
    node = socket.links[0].from_node
    if node.type == "TEX_IMAGE":
        return np.ones(3), node.image
    if node.type in ("MIX", "MIX_RGB"):
        factor, image = np.ones(3), None
        for inp in node.inputs:
            if inp.type != "RGBA":
                continue
            if inp.is_linked and inp.links[0].from_node.type == "TEX_IMAGE":
                image = inp.links[0].from_node.image
            elif not inp.is_linked:
                factor = np.array(inp.default_value[:3], dtype=np.float64)
        return factor, image
    return np.ones(3), None


def _sample_image_linear(image, uv: np.ndarray) -> np.ndarray:
    """[N, 3] linear RGB of ``image`` at UVs (nearest texel, repeat; UV (0, 0) = bottom-left)."""
    w, h = image.size
    if w == 0 or h == 0:
        return np.ones((len(uv), 3))
    px = np.empty(w * h * image.channels, dtype=np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, image.channels)  # row 0 at the bottom
    if image.channels < 3:
        px = np.repeat(px[..., :1], 3, axis=2)
    col = np.floor(np.mod(uv[:, 0], 1.0) * w).astype(np.int64).clip(0, w - 1)
    row = np.floor(np.mod(uv[:, 1], 1.0) * h).astype(np.int64).clip(0, h - 1)
    rgb = px[row, col, :3].astype(np.float64)
    # Byte images hold their encoded (sRGB) values; float images are already linear.
    return rgb if image.is_float else _srgb_to_linear(rgb)


if __name__ == "__main__":
    sys.exit(main())
