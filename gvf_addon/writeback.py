"""Write a generated vertex animation back into Blender: shape keys, Mesh Cache (PC2) or point cloud.

Needs ``bpy``; everything here is a plain function that runs headless (no operator, no window).
docs/blender.md, section "Write-back", is the user-facing description; in short:

- :func:`write_animation` takes the pipeline's vertices ``[T, V, 3]`` (the source object's
  *local* coordinates, in the vertex order of its *evaluated* mesh, i.e. with its modifiers
  applied) and builds a **separate result object** ``"<source>.gvf"``: a copy of the source's
  evaluated mesh, not parented, with the source's ``matrix_world``, linked to the source's
  collections. The source's mesh data is never modified (by default the source object is
  hidden in the viewport and in renders; :func:`remove_result` shows it again).
- Scene frame ``frame_start + k`` shows frame ``k`` of the array exactly, in every mode; between
  two frames (subframes: motion blur, time remapping) the positions are interpolated linearly,
  in every mode; before the first and after the last frame the end frames are held.
- Running it again for the same source replaces the previous result: its object, mesh, shape-key
  action, node group and (when this module chose its path) PC2 file are removed.
- Undo: :func:`write_animation` is one function that touches only Blender data (plus one PC2
  file), so an operator with ``bl_options = {"REGISTER", "UNDO"}`` that calls it once makes the
  whole write-back one undo step. Undo restores Blender data, not files: an undone MESH_CACHE
  write leaves its PC2 file on disk. (``bpy.ops.ed.undo`` cannot run headless: its poll needs a
  window, so the tests cannot check this.)

Blender API notes (measured on 5.0.1; the manifest allows 4.2+):

- Actions are *layered* since 4.4: an action has slots, layers and channelbags, and
  ``Action.fcurves`` is gone in 5.0. ``action.fcurve_ensure_for_datablock(key, data_path)``
  creates the slot for the shape-key datablock, assigns it to ``key.animation_data`` and returns
  the F-curve; it needs ``key.animation_data.action = action`` first. Older versions (4.2, 4.3)
  take ``action.fcurves.new(data_path)`` instead; both paths are here.
- Shape-key coordinates go through ``ShapeKey.points.foreach_set("co", ...)`` (Blender 4.1+), a
  raw-array path: 0.1 ms for 100k vertices against 10 ms through ``ShapeKey.data``.
- Keyframes are written in bulk: ``keyframe_points.add(n)`` then ``foreach_set("co", ...)`` and
  ``foreach_set("interpolation", ...)`` (enum values as int32), then ``fcurve.update()``.
- Mesh Cache in ``time_mode='FRAME'`` plays sample ``frame_scale * scene_frame - frame_start``
  (modifier properties), clamped at the ends and linearly interpolated in between
  (``interpolation='NONE'`` rounds to the *nearest* sample). The PC2 header's start frame and
  sample rate are ignored in that mode. ``forward_axis='POS_Y'``, ``up_axis='POS_Z'`` with no
  flips is the identity.
- Hidden objects (``hide_set``) are still evaluated by the depsgraph; objects disabled in
  viewports (``hide_viewport``) are not, and ``evaluated_get`` then returns the original.
- A mesh with only vertices shows nothing in object mode or in renders, so POINT_CLOUD results
  carry a Geometry Nodes modifier (Mesh to Points, radius exposed on the modifier); the
  evaluated object is then a point cloud (``evaluated_geometry().pointcloud``). The animation
  itself is shape keys on the vertex-only mesh: ``PointCloud`` attributes cannot be keyframed,
  and animating them from a frame-change handler would not survive saving the .blend without
  the add-on.
- ``foreach_set`` takes numpy arrays; a torch tensor crashes Blender, so every array is turned
  into a contiguous float32 numpy array first.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import bpy
import numpy as np

__all__ = [
    "MODES",
    "RESULT_SUFFIX",
    "WriteBackError",
    "write_animation",
    "remove_result",
    "find_results",
    "read_back",
    "set_scene_timing",
]

MODES = ("SHAPE_KEYS", "MESH_CACHE", "POINT_CLOUD")
RESULT_SUFFIX = ".gvf"
CACHE_DIR = "gvf_cache"
"""Folder beside the saved .blend that default PC2 files go to (``//gvf_cache/<name>.pc2``)."""
POINTS_MODIFIER = "GVF Points"
MESH_CACHE_MODIFIER = "GVF Mesh Cache"

# Custom properties. On the result object:
_P_SOURCE = "gvf_source"  # source object name
_P_MODE = "gvf_mode"  # one of MODES
_P_FRAME_START = "gvf_frame_start"
_P_FRAMES = "gvf_frames"  # T
_P_FPS = "gvf_fps"
_P_PC2_OWNED = "gvf_pc2_owned"  # the PC2 path was chosen here, so removing the result deletes the file
# On the source object:
_P_RESULT = "gvf_result"  # result object name
_P_SOURCE_HIDDEN = "gvf_source_was_hidden"  # [hidden in the view layer, hide_render] before the first write

_session_cache_dir: Path | None = None


class WriteBackError(ValueError):
    """Inputs that cannot be written back; the message says what is wrong and how to fix it."""


# --------------------------------------------------------------------------- public API


def write_animation(
    context_or_scene,
    source_obj,
    vertices,
    mode: str,
    fps: float,
    frame_start: int = 1,
    pc2_path: str | os.PathLike | None = None,
    points=None,
    name: str | None = None,
    *,
    hide_source: bool = True,
    point_radius: float | None = None,
):
    """Write an animation of ``source_obj`` as a new result object and return that object.

    Args:
        context_or_scene: a ``bpy.types.Context`` (its scene and view layer) or a ``Scene``
            (its first view layer, or the context's view layer when it is the context's scene).
        source_obj: the object the animation was generated from. Never modified, except that
            it is hidden (``hide_source``) and gets the custom property ``gvf_result``.
        vertices: ``[T, V, 3]`` positions in the source's local coordinates, in the vertex order
            of its evaluated mesh (modifiers applied). numpy or torch, any float type.
        mode: ``"SHAPE_KEYS"``, ``"MESH_CACHE"`` or ``"POINT_CLOUD"``.
        fps: frames per second of the animation; the scene's frame rate is set from it.
        frame_start: scene frame of ``vertices[0]``; the scene range becomes
            ``frame_start .. frame_start + T - 1``.
        pc2_path: MESH_CACHE only: where to write the PC2 file (``//`` = relative to the .blend).
            Default ``//gvf_cache/<name>.pc2`` when the .blend is saved, else a temporary folder
            of this session (then the path stays absolute: save the .blend first to keep it
            relative). The modifier stores the path relative to the .blend whenever the .blend
            is saved.
        points: POINT_CLOUD only: ``[T, N, 3]`` point positions in local coordinates; default
            ``vertices``.
        name: name of the result object; default ``"<source name>.gvf"``.
        hide_source: hide the source object in the view layer and in renders (restored by
            :func:`remove_result`), so that only the animated copy shows.
        point_radius: POINT_CLOUD only: radius of the displayed points (local units); default
            0.5 % of the bounding-box diagonal of the first frame.

    Returns:
        The result ``bpy.types.Object``. Its custom properties ``gvf_source``, ``gvf_mode``,
        ``gvf_frame_start``, ``gvf_frames`` and ``gvf_fps`` describe it.

    Raises:
        WriteBackError: a wrong mode, shape, vertex count, non-finite value, fps or frame.
            Nothing in the scene is changed then.
    """
    scene, view_layer = _resolve(context_or_scene)
    if mode not in MODES:
        raise WriteBackError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise WriteBackError(f"fps must be a positive number; got {fps}")
    if int(frame_start) != frame_start or not 0 <= frame_start:
        raise WriteBackError(f"frame_start must be a whole number >= 0 (Blender's scene range); got {frame_start}")
    frame_start = int(frame_start)
    vertices = _as_frames(vertices, "vertices")  # [T, V, 3]
    T = vertices.shape[0]
    if frame_start + T - 1 > 1_048_574:
        raise WriteBackError(f"frames {frame_start}..{frame_start + T - 1} go past Blender's last frame 1048574")
    if mode == "POINT_CLOUD":
        points = vertices if points is None else _as_frames(points, "points")  # [T, N, 3]
        if points.shape[0] != T:
            raise WriteBackError(f"points has {points.shape[0]} frames but vertices has {T}; they must match")
    elif points is not None:
        raise WriteBackError(f"points is only used in POINT_CLOUD mode, not {mode}")
    if pc2_path is not None and mode != "MESH_CACHE":
        raise WriteBackError(f"pc2_path is only used in MESH_CACHE mode, not {mode}")
    final_name = name or f"{source_obj.name}{RESULT_SUFFIX}"
    temp_name = f"{final_name}.new"

    # Build the new result under a temporary name first: a failure leaves the previous result.
    created: list = []
    try:
        if mode == "POINT_CLOUD":
            mesh = bpy.data.meshes.new(temp_name)
            created.append(mesh)
            mesh.vertices.add(points.shape[1])
            mesh.vertices.foreach_set("co", points[0].ravel())
            mesh.update()
        else:
            mesh = _evaluated_mesh_copy(scene, view_layer, source_obj, temp_name)
            created.append(mesh)
            if len(mesh.vertices) != vertices.shape[1]:
                raise WriteBackError(
                    f"vertices has {vertices.shape[1]} vertices per frame but the evaluated mesh of "
                    f"{source_obj.name!r} has {len(mesh.vertices)}; the animation must be generated from the "
                    "same object with the same modifiers"
                )
        result = bpy.data.objects.new(temp_name, mesh)
        created.append(result)
        if mode != "POINT_CLOUD":
            _copy_material_slots(source_obj, result)
        collections = list(source_obj.users_collection) or [scene.collection]
        for collection in collections:
            collection.objects.link(result)
        result.matrix_world = source_obj.matrix_world.copy()

        pc2_abs = action = group = None
        if mode == "SHAPE_KEYS":
            action = _add_frame_shape_keys(result, vertices, frame_start, temp_name)
            created.append(action)
        elif mode == "POINT_CLOUD":
            action = _add_frame_shape_keys(result, points, frame_start, temp_name)
            created.append(action)
            if point_radius is None:
                diagonal = float(np.linalg.norm(points[0].max(axis=0) - points[0].min(axis=0)))
                point_radius = 0.005 * diagonal if diagonal > 0 else 0.01
            group = _add_points_modifier(result, f"{temp_name}.points", float(point_radius))
            created.append(group)
        old = find_results(source_obj)
        if mode == "MESH_CACHE":
            pc2_abs, stored, owned = _pc2_location(pc2_path, final_name)
            from gvf_core.pc2 import write_pc2  # pure numpy; written last so a failure above leaves the old file

            write_pc2(pc2_abs, vertices, start_frame=float(frame_start), sample_rate=1.0)
            _add_mesh_cache_modifier(result, stored, frame_start)
            result[_P_PC2_OWNED] = owned
    except BaseException:
        for datablock in reversed(created):
            _remove_id(datablock)
        raise

    # Replace the previous result, then take its names.
    _remove(source_obj, old, view_layer, keep_files={pc2_abs} if pc2_abs else set())
    mesh.name = final_name
    result.name = final_name
    if action is not None:
        action.name = final_name
    if group is not None:
        group.name = f"{final_name}.points"
    result[_P_SOURCE] = source_obj.name
    result[_P_MODE] = mode
    result[_P_FRAME_START] = frame_start
    result[_P_FRAMES] = T
    result[_P_FPS] = fps
    source_obj[_P_RESULT] = result.name
    if hide_source:
        source_obj[_P_SOURCE_HIDDEN] = [bool(source_obj.hide_get(view_layer=view_layer)), bool(source_obj.hide_render)]
        source_obj.hide_set(True, view_layer=view_layer)
        source_obj.hide_render = True

    set_scene_timing(scene, fps, frame_start, T)
    scene.frame_set(frame_start)
    return result


def remove_result(source_obj, context_or_scene=None, delete_files: bool = True) -> bool:
    """Remove the write-back result of ``source_obj``; return whether there was one.

    Removes the result object, its mesh (with its shape keys), the shape-key action and the
    points node group when nothing else uses them, and, when ``delete_files`` and the PC2 path
    was chosen by :func:`write_animation` (not given by the caller), the PC2 file unless another
    Mesh Cache modifier still reads it. Shows the source again as it was before the first write.
    """
    _scene, view_layer = _resolve(context_or_scene if context_or_scene is not None else bpy.context)
    results = find_results(source_obj)
    _remove(source_obj, results, view_layer, keep_files=set(), delete_files=delete_files)
    return bool(results)


def find_results(source_obj) -> list:
    """The result of ``source_obj`` as a list (empty or one object).

    The link is the source's ``gvf_result`` (the result's name) and the result's ``gvf_source``
    (the source's name). It survives renaming the source; a copy of the source (its custom
    properties are copied too) does not take over the original's result, and a renamed or
    duplicated result is the user's: a re-run leaves it alone.
    """
    name = source_obj.get(_P_RESULT)
    result = bpy.data.objects.get(name) if isinstance(name, str) else None
    if result is None or result == source_obj or not isinstance(result.get(_P_SOURCE), str):
        return []
    owner = bpy.data.objects.get(result[_P_SOURCE])
    return [result] if owner is None or owner == source_obj else []


def read_back(depsgraph_or_scene, result, frame: float) -> np.ndarray:
    """Evaluated positions ``[V, 3]`` float32 of ``result`` at scene ``frame`` (local coordinates).

    Sets the scene frame (a fractional ``frame`` sets the subframe), evaluates the depsgraph and
    reads the evaluated mesh's vertices, or the evaluated point cloud's positions when the
    object evaluates to a point cloud (POINT_CLOUD results).
    """
    if isinstance(depsgraph_or_scene, bpy.types.Depsgraph):
        scene, view_layer = depsgraph_or_scene.scene, depsgraph_or_scene.view_layer
    else:
        scene, view_layer = _resolve(depsgraph_or_scene)
    whole = math.floor(frame)
    scene.frame_set(int(whole), subframe=float(frame - whole))
    depsgraph = _depsgraph(scene, view_layer)
    evaluated = result.evaluated_get(depsgraph)
    mesh = evaluated.data
    if len(mesh.vertices) == 0 and hasattr(evaluated, "evaluated_geometry"):
        geometry = evaluated.evaluated_geometry()  # keep a reference: the point cloud lives in it
        cloud = geometry.pointcloud
        if cloud is not None:
            out = np.empty(len(cloud.points) * 3, dtype=np.float32)
            cloud.attributes["position"].data.foreach_get("vector", out)
            return out.reshape(-1, 3)
    out = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", out)
    return out.reshape(-1, 3)


def set_scene_timing(scene, fps: float, frame_start: int, frames: int) -> None:
    """Scene range ``frame_start .. frame_start + frames - 1`` and frame rate ``fps``.

    Blender stores the rate as an integer ``render.fps`` divided by ``render.fps_base``:
    ``fps = round(fps)``, ``fps_base = round(fps) / fps``, snapped to 1.001 for the NTSC rates
    (23.976, 29.97, 59.94: fps 24/30/60, base 1.001).
    """
    rate = max(1, round(fps))
    base = rate / fps
    if abs(base - 1.001) < 5e-5:
        base = 1.001
    elif abs(base - 1.0) < 1e-9:
        base = 1.0
    scene.render.fps = rate
    scene.render.fps_base = base
    scene.frame_start = frame_start  # may push frame_end up; frame_end is set next
    scene.frame_end = frame_start + frames - 1


# --------------------------------------------------------------------------- building blocks


def _resolve(context_or_scene):
    """(scene, view layer) of a Context or a Scene."""
    if isinstance(context_or_scene, bpy.types.Scene):
        scene = context_or_scene
        if bpy.context.scene == scene and bpy.context.view_layer is not None:
            return scene, bpy.context.view_layer
        return scene, scene.view_layers[0]
    return context_or_scene.scene, context_or_scene.view_layer


def _depsgraph(scene, view_layer):
    """The evaluated depsgraph of ``scene``/``view_layer`` (built if needed, also for other scenes)."""
    with bpy.context.temp_override(scene=scene, view_layer=view_layer):
        return bpy.context.evaluated_depsgraph_get()


def _as_frames(array, what: str) -> np.ndarray:
    """``[T, N, 3]`` contiguous float32 numpy (torch tensors are copied to numpy first)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise WriteBackError(f"{what} must have shape [T, N, 3] with T, N >= 1; got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise WriteBackError(f"{what} must be real numbers; got dtype {array.dtype}")
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(array).all(axis=(1, 2))
    if bad.any():
        raise WriteBackError(f"{what}: {int(bad.sum())} frames have NaN or infinite positions (first: frame {int(np.argmax(bad))})")
    return array


def _evaluated_mesh_copy(scene, view_layer, source_obj, name: str):
    """A new mesh datablock: the source's evaluated mesh (modifiers applied, no shape keys)."""
    depsgraph = _depsgraph(scene, view_layer)
    evaluated = source_obj.evaluated_get(depsgraph)
    if not evaluated.is_evaluated:
        raise WriteBackError(
            f"{source_obj.name!r} is not evaluated in view layer {view_layer.name!r} (disabled in viewports, or "
            "not in this scene); enable it so that its modifiers apply"
        )
    try:
        mesh = bpy.data.meshes.new_from_object(evaluated)
    except RuntimeError as exc:
        raise WriteBackError(f"{source_obj.name!r} ({source_obj.type}) has no mesh geometry: {exc}") from None
    mesh.name = name
    return mesh


def _copy_material_slots(source_obj, result) -> None:
    """Object-linked materials too (the mesh copy carries only the mesh's own materials)."""
    for i, slot in enumerate(source_obj.material_slots):
        if i >= len(result.material_slots):
            break
        result.material_slots[i].link = slot.link
        result.material_slots[i].material = slot.material


def _frame_keys(k: int, T: int, frame: int) -> np.ndarray:
    """Keyframes ``[(frame, value), ...]`` of the shape key of array frame ``k`` shown at ``frame``.

    Value 1 at its own frame and 0 at the neighbouring frames (linear in between: the blend of
    two neighbouring keys is the linear interpolation of their positions). The first key has
    no key before it and the last none after, so constant extrapolation holds the end frames.
    """
    keys = []
    if k > 0:
        keys.append((frame - 1, 0.0))
    keys.append((frame, 1.0))
    if k < T - 1:
        keys.append((frame + 1, 0.0))
    return np.asarray(keys, dtype=np.float32)


def _add_frame_shape_keys(obj, frames: np.ndarray, frame_start: int, action_name: str):
    """Basis (the mesh as it is) + one relative shape key per frame, keyed; returns the action."""
    T = frames.shape[0]
    obj.shape_key_add(name="Basis", from_mix=False)
    key = obj.data.shape_keys
    key.use_relative = True
    blocks = []
    for k in range(T):
        block = obj.shape_key_add(name=f"frame_{frame_start + k:04d}", from_mix=False)
        # ``points`` (4.1+) is the fast path: ``data.foreach_set`` goes item by item (~100x slower).
        getattr(block, "points", block.data).foreach_set("co", frames[k].ravel())  # [V * 3] float32
        block.value = 0.0
        blocks.append(block)

    animation = key.animation_data_create()
    action = bpy.data.actions.new(action_name)
    animation.action = action
    linear = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value
    for k, block in enumerate(blocks):
        data_path = f'key_blocks["{_escape(block.name)}"].value'
        if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+: layered action, slot for `key`
            fcurve = action.fcurve_ensure_for_datablock(key, data_path)
        else:  # 4.2, 4.3: legacy action
            fcurve = action.fcurves.new(data_path)
        points = _frame_keys(k, T, frame_start + k)  # [n, 2]
        fcurve.keyframe_points.add(len(points))
        fcurve.keyframe_points.foreach_set("co", points.ravel())
        fcurve.keyframe_points.foreach_set("interpolation", np.full(len(points), linear, dtype=np.int32))
        fcurve.extrapolation = "CONSTANT"
        fcurve.update()
    key.update_tag()
    return action


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _add_points_modifier(obj, group_name: str, radius: float):
    """Geometry Nodes modifier "GVF Points": Mesh to Points with the radius exposed; returns the group."""
    group = bpy.data.node_groups.new(group_name, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    radius_socket = group.interface.new_socket("Radius", in_out="INPUT", socket_type="NodeSocketFloat")
    radius_socket.min_value = 0.0
    radius_socket.default_value = radius
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes = group.nodes
    group_in = nodes.new("NodeGroupInput")
    group_out = nodes.new("NodeGroupOutput")
    to_points = nodes.new("GeometryNodeMeshToPoints")
    to_points.mode = "VERTICES"
    group_in.location, to_points.location, group_out.location = (-300, 0), (0, 0), (300, 0)
    group.links.new(group_in.outputs["Geometry"], to_points.inputs["Mesh"])
    group.links.new(group_in.outputs["Radius"], to_points.inputs["Radius"])
    group.links.new(to_points.outputs["Points"], group_out.inputs["Geometry"])
    group["gvf_points"] = True
    modifier = obj.modifiers.new(POINTS_MODIFIER, "NODES")
    modifier.node_group = group
    modifier[radius_socket.identifier] = radius
    return group


def _pc2_location(pc2_path, name: str) -> tuple[Path, str, bool]:
    """(absolute path to write, path to store in the modifier, whether this module chose it)."""
    saved = bool(bpy.data.filepath)
    if pc2_path is None:
        owned = True
        file_name = f"{bpy.path.clean_name(name)}.pc2"
        if saved:
            absolute = Path(bpy.path.abspath(f"//{CACHE_DIR}/{file_name}"))
        else:
            absolute = _session_dir() / file_name
    else:
        owned = False
        absolute = Path(bpy.path.abspath(os.fspath(pc2_path))).absolute()
    absolute = Path(os.path.normpath(absolute))
    stored = bpy.path.relpath(str(absolute)) if saved else str(absolute)
    return absolute, stored, owned


def _session_dir() -> Path:
    """A temporary folder for the PC2 files of an unsaved .blend, one per Python session.

    Not ``bpy.app.tempdir``: Blender deletes that one when it quits, and the PC2 must outlive
    the session if the user saves the .blend afterwards.
    """
    global _session_cache_dir
    if _session_cache_dir is None or not _session_cache_dir.is_dir():
        _session_cache_dir = Path(tempfile.mkdtemp(prefix="gvf_cache_"))
    return _session_cache_dir


def _add_mesh_cache_modifier(obj, filepath: str, frame_start: int):
    """Mesh Cache modifier reading ``filepath`` so that scene frame ``frame_start + k`` shows sample k."""
    modifier = obj.modifiers.new(MESH_CACHE_MODIFIER, "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = filepath
    modifier.time_mode = "FRAME"
    modifier.play_mode = "SCENE"
    modifier.frame_scale = 1.0
    modifier.frame_start = float(frame_start)  # sample = frame_scale * scene_frame - frame_start
    modifier.interpolation = "LINEAR"
    modifier.deform_mode = "OVERWRITE"
    modifier.forward_axis = "POS_Y"  # with up +Z and no flips: no axis conversion
    modifier.up_axis = "POS_Z"
    modifier.flip_axis = (False, False, False)
    modifier.factor = 1.0
    return modifier


def _remove(source_obj, results, view_layer, keep_files: set, delete_files: bool = True) -> None:
    """Remove ``results`` and what only they used; restore the source's visibility."""
    for result in results:
        mesh = result.data
        key = getattr(mesh, "shape_keys", None)
        action = key.animation_data.action if key is not None and key.animation_data else None
        groups = [m.node_group for m in result.modifiers if m.type == "NODES" and m.node_group and m.node_group.get("gvf_points")]
        files = []
        if delete_files and result.get(_P_PC2_OWNED):
            files = [Path(bpy.path.abspath(m.filepath)) for m in result.modifiers if m.type == "MESH_CACHE" and m.filepath]
        bpy.data.objects.remove(result, do_unlink=True)
        if mesh is not None and mesh.users == 0:
            bpy.data.meshes.remove(mesh)  # frees its shape-key datablock too
        if action is not None and action.users == 0:
            bpy.data.actions.remove(action)
        for group in groups:
            if group.users == 0:
                bpy.data.node_groups.remove(group)
        for path in files:
            path = Path(os.path.normpath(path))
            if path in {Path(os.path.normpath(p)) for p in keep_files} or _pc2_in_use(path):
                continue
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # only when empty: the gvf_cache folder this module made
            except OSError:
                pass
    if _P_RESULT in source_obj:
        del source_obj[_P_RESULT]
    if _P_SOURCE_HIDDEN in source_obj:
        hidden, hide_render = source_obj[_P_SOURCE_HIDDEN]
        source_obj.hide_set(bool(hidden), view_layer=view_layer)
        source_obj.hide_render = bool(hide_render)
        del source_obj[_P_SOURCE_HIDDEN]


def _pc2_in_use(path: Path) -> bool:
    for obj in bpy.data.objects:
        for modifier in obj.modifiers:
            if modifier.type == "MESH_CACHE" and modifier.filepath:
                if Path(os.path.normpath(bpy.path.abspath(modifier.filepath))) == path:
                    return True
    return False


def _remove_id(datablock) -> None:
    """Remove a datablock this module created (cleanup after a failure)."""
    try:
        if isinstance(datablock, bpy.types.Object):
            bpy.data.objects.remove(datablock, do_unlink=True)
        elif isinstance(datablock, bpy.types.Mesh):
            bpy.data.meshes.remove(datablock)
        elif isinstance(datablock, bpy.types.Action):
            bpy.data.actions.remove(datablock)
        elif isinstance(datablock, bpy.types.NodeTree):
            bpy.data.node_groups.remove(datablock)
    except ReferenceError:  # already freed with its owner
        pass
