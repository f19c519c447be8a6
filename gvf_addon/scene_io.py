"""Blender scene → the arrays the worker reads (needs bpy objects, never imports torch).

:func:`export_mesh` writes the **evaluated** mesh of an object (modifiers applied) in world
coordinates (+Z up, the object transform applied) as the ``.npz`` mesh the worker reads:
``vertices`` [V, 3], ``faces`` [F, 3] (triangulated), ``vertex_colors`` [V, 3] (sRGB 0..1)
and ``matrix_world`` [4, 4]. The vertex order is the evaluated mesh's, which is the order
:func:`gvf_addon.writeback.write_animation` expects back (after :func:`to_local`).

Colours are sampled per face corner from each face's own material, so an asset with several
materials keeps each one's look: the image texture feeding the Principled BSDF's Base Color
(sampled at the corner's UV, nearest texel, repeat), else that input's colour, else the
material's viewport colour; faces without a material are light grey; a mesh without
materials uses its active colour attribute when it has one. Corner colours are averaged per
vertex.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_GREY = 0.8


class SceneError(ValueError):
    """An object the pipeline cannot take (not a mesh, no faces)."""


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def _image_pixels(image) -> np.ndarray | None:
    """[H, W, 3] display (sRGB) colours of a Blender image, row 0 at the bottom; None when empty."""
    w, h = image.size
    if w == 0 or h == 0:
        return None
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, 4)[..., :3]
    # byte images hold display values already; float images are scene-linear
    if image.is_float or image.colorspace_settings.name in ("Linear Rec.709", "Linear", "Non-Color"):
        px = linear_to_srgb(px)
    return px


def _base_color_source(material):
    """(texture [H, W, 3] or None, constant sRGB colour [3]) of a material's base colour."""
    if material is None:
        return None, np.full(3, DEFAULT_GREY)
    tree = getattr(material, "node_tree", None)
    if tree is not None:
        for node in tree.nodes:
            if node.type != "BSDF_PRINCIPLED":
                continue
            base = node.inputs.get("Base Color")
            if base is None:
                continue
            if base.is_linked:
                src = base.links[0].from_node
                if src.type == "TEX_IMAGE" and src.image is not None:
                    pixels = _image_pixels(src.image)
                    if pixels is not None:
                        return pixels, np.full(3, DEFAULT_GREY)
            return None, linear_to_srgb(np.array(base.default_value[:3], np.float64))
    return None, linear_to_srgb(np.array(material.diffuse_color[:3], np.float64))


def _wrap(t: np.ndarray) -> np.ndarray:
    """Repeat into [0, 1], keeping a coordinate of exactly 1 (a UV island's border) at 1, not 0."""
    w = np.mod(t, 1.0)
    return np.where((w == 0) & (t > 0), 1.0, w)


def _sample(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    h, w = texture.shape[:2]
    x = np.floor(_wrap(uv[:, 0]) * w).astype(np.int64).clip(0, w - 1)
    y = np.floor(_wrap(uv[:, 1]) * h).astype(np.int64).clip(0, h - 1)
    return texture[y, x]


def mesh_arrays(depsgraph, obj) -> dict:
    """World-space arrays of ``obj``'s evaluated mesh (see the module docstring)."""
    if obj is None or obj.type != "MESH":
        raise SceneError(f"{getattr(obj, 'name', None)!r} is not a mesh object; select a mesh to animate")
    evaluated = obj.evaluated_get(depsgraph)
    me = evaluated.to_mesh()
    try:
        me.calc_loop_triangles()
        V, F, L = len(me.vertices), len(me.loop_triangles), len(me.loops)
        if F == 0:
            raise SceneError(f"{obj.name!r} has no faces after its modifiers; the pipeline needs a surface mesh")
        co = np.empty(V * 3, np.float32)
        me.vertices.foreach_get("co", co)
        tris = np.empty(F * 3, np.int32)
        me.loop_triangles.foreach_get("vertices", tris)
        tri_loops = np.empty(F * 3, np.int32)
        me.loop_triangles.foreach_get("loops", tri_loops)
        tri_mat = np.empty(F, np.int32)
        me.loop_triangles.foreach_get("material_index", tri_mat)
        loop_vertex = np.empty(L, np.int32)
        me.loops.foreach_get("vertex_index", loop_vertex)
        uv = None
        if me.uv_layers.active is not None:
            uv = np.empty(L * 2, np.float32)
            me.uv_layers.active.data.foreach_get("uv", uv)
            uv = uv.reshape(L, 2)
        corner_rgb = _corner_colours(obj, me, tri_loops.reshape(F, 3), tri_mat, uv)
        colours = np.zeros((V, 3))
        counts = np.zeros(V)
        corners = tri_loops.reshape(-1)
        np.add.at(colours, loop_vertex[corners], corner_rgb.reshape(-1, 3))
        np.add.at(counts, loop_vertex[corners], 1)
        colours = np.where(counts[:, None] > 0, colours / np.maximum(counts, 1)[:, None], DEFAULT_GREY)
    finally:
        evaluated.to_mesh_clear()
    M = np.array(obj.matrix_world, dtype=np.float64)
    local = co.reshape(V, 3).astype(np.float64)
    world = local @ M[:3, :3].T + M[:3, 3]
    return {"vertices": world, "faces": tris.reshape(F, 3).astype(np.int64), "vertex_colors": np.clip(colours, 0, 1),
            "matrix_world": M}


def _corner_colours(obj, me, tri_loops: np.ndarray, tri_mat: np.ndarray, uv) -> np.ndarray:
    """[F, 3, 3] sRGB colour of every triangle corner."""
    F = len(tri_loops)
    out = np.full((F, 3, 3), DEFAULT_GREY)
    slots = [s.material for s in obj.material_slots]
    if not any(slots):
        attr = me.color_attributes.active_color if hasattr(me.color_attributes, "active_color") else None
        if attr is not None:
            data = np.empty(len(attr.data) * 4, np.float32)
            attr.data.foreach_get("color_srgb" if hasattr(attr.data[0], "color_srgb") else "color", data)
            data = data.reshape(-1, 4)[:, :3]
            if attr.domain == "CORNER":
                return data[tri_loops]
            if attr.domain == "POINT":
                loop_vertex = np.empty(len(me.loops), np.int32)
                me.loops.foreach_get("vertex_index", loop_vertex)
                return data[loop_vertex[tri_loops]]
        return out
    for index, material in enumerate(slots):
        faces = np.nonzero(tri_mat == index)[0]
        if len(faces) == 0:
            continue
        texture, constant = _base_color_source(material)
        if texture is not None and uv is not None:
            loops = tri_loops[faces].reshape(-1)
            out[faces] = _sample(texture, uv[loops]).reshape(len(faces), 3, 3)
        else:
            out[faces] = constant
    return out


def export_mesh(depsgraph, obj, path) -> dict:
    """Write :func:`mesh_arrays` of ``obj`` to ``path`` (.npz); returns the arrays."""
    arrays = mesh_arrays(depsgraph, obj)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def to_local(world_vertices: np.ndarray, matrix_world) -> np.ndarray:
    """World positions [..., 3] → the object's local coordinates."""
    inv = np.linalg.inv(np.asarray(matrix_world, dtype=np.float64))
    w = np.asarray(world_vertices, dtype=np.float64)
    return (w @ inv[:3, :3].T + inv[:3, 3]).astype(np.float32)


__all__ = ["SceneError", "export_mesh", "linear_to_srgb", "mesh_arrays", "to_local"]
