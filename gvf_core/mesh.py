"""Triangle meshes: loading, the ``MeshData`` container and surface colour lookup.

Conventions (docs/conventions.md):
- ``MeshData.vertices`` are in the *world* frame: right-handed, +Z up, as in Blender.
  Files written +Y up (glTF by specification, most OBJ/PLY exporters by habit) are
  converted the way Blender's importers do it, ``(x, y, z) -> (x, -z, y)``. The matrix
  used is kept as ``MeshData.to_world_from_file`` so the exact inverse is always possible:
  ``file = world @ to_world_from_file`` (it is orthonormal: its inverse is its transpose).
- Vertex order of ``.obj`` and ``.ply`` files is kept (trimesh is called with
  ``process=False``; OBJ with ``maintain_order=True``), so per-vertex animation data
  written for the file lines up with ``MeshData.vertices``. STL files store no shared
  vertices; their duplicated corners are merged.
- UVs follow the OBJ/OpenGL convention that trimesh uses for every format (it flips
  glTF's V on import): ``(0, 0)`` is the *bottom*-left of the texture image, so image
  row ``= (1 - v) * height``. Textures repeat outside ``[0, 1]``.
- Colours are display (sRGB-encoded) values in ``0..1``, i.e. what a texture image holds
  and what a camera sees; glTF ``baseColorFactor`` and OBJ ``Kd`` are linear factors and
  are converted (Blender treats both as linear as well).

trimesh is imported lazily, inside :func:`load_mesh`.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Up = Literal["auto", "y", "z"]

Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""[3, 3] rotation taking +Y-up file coordinates to +Z-up world: (x, y, z) -> (x, -z, y)."""

DEFAULT_GREY = 0.8
"""Colour of a mesh with no colour information at all."""

SUPPORTED_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf")


@dataclass(frozen=True, eq=False)
class MeshData:
    """A triangle mesh with optional colour information (numpy arrays, world frame).

    Colour sources, in order of precedence in :func:`sample_colors`: ``texture`` through
    ``uvs``, else ``vertex_colors``, else ``base_color``, else light grey.
    """

    vertices: np.ndarray
    """[V, 3] float64 positions, world frame (+Z up)."""
    faces: np.ndarray
    """[F, 3] int64 vertex indices, counter-clockwise seen from outside."""
    uvs: np.ndarray | None = None
    """[V, 2] float64 texture coordinates, (0, 0) = bottom-left of the image."""
    texture: np.ndarray | None = None
    """[H, W, 3] RGB image, uint8 (0..255) or float (0..1), row 0 at the top."""
    vertex_colors: np.ndarray | None = None
    """[V, 3] float64 RGB in 0..1."""
    base_color: np.ndarray | None = None
    """[3] float64 RGB in 0..1, used when there is neither texture nor vertex colours."""
    to_world_from_file: np.ndarray = field(default_factory=lambda: np.eye(3))
    """[3, 3] rotation applied on load: ``world = file @ to_world_from_file.T``."""
    source: str = "<arrays>"
    """Where the mesh came from (a path), for error messages."""

    def __post_init__(self) -> None:
        where = f"mesh {self.source!r}"
        v = np.asarray(self.vertices, dtype=np.float64)
        f = np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"{where}: vertices must be [V, 3], got shape {v.shape}")
        if len(v) == 0:
            raise ValueError(f"{where} has no vertices; export the object as a triangle mesh, not an empty or point-only file")
        if not np.isfinite(v).all():
            bad = int((~np.isfinite(v).any(axis=1)).sum())
            raise ValueError(f"{where}: {bad} vertices are NaN or infinite; fix or delete them in the source file before loading")
        if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise ValueError(
                f"{where} has no triangle faces (faces shape {f.shape}); export it as a triangulated surface mesh "
                "(point clouds and curves cannot be animated)"
            )
        if not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"{where}: faces must be integer vertex indices, got dtype {f.dtype}")
        f = f.astype(np.int64)
        if f.min() < 0 or f.max() >= len(v):
            raise ValueError(f"{where}: face indices must lie in [0, {len(v)}), found {f.min()}..{f.max()}; the file is corrupt")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)

        if self.uvs is not None:
            uv = np.asarray(self.uvs, dtype=np.float64)
            if uv.shape != (len(v), 2):
                raise ValueError(f"{where}: uvs must be [V, 2] = {(len(v), 2)}, got {uv.shape}")
            object.__setattr__(self, "uvs", uv)
        if self.texture is not None:
            tex = _as_rgb_image(np.asarray(self.texture))
            object.__setattr__(self, "texture", tex)
        if self.texture is not None and self.uvs is None:
            raise ValueError(f"{where}: a texture needs uvs; pass uvs=[V, 2] or drop the texture")
        if self.vertex_colors is not None:
            vc = np.asarray(self.vertex_colors, dtype=np.float64)
            if vc.shape != (len(v), 3):
                raise ValueError(f"{where}: vertex_colors must be [V, 3] in 0..1, got {vc.shape}")
            object.__setattr__(self, "vertex_colors", vc)
        if self.base_color is not None:
            bc = np.asarray(self.base_color, dtype=np.float64).reshape(-1)
            if bc.shape != (3,):
                raise ValueError(f"{where}: base_color must be 3 RGB values in 0..1, got shape {bc.shape}")
            object.__setattr__(self, "base_color", bc)
        R = np.asarray(self.to_world_from_file, dtype=np.float64)
        if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-9):
            raise ValueError(f"{where}: to_world_from_file must be a 3x3 orthonormal matrix, got {R}")
        object.__setattr__(self, "to_world_from_file", R)

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    @property
    def bbox_diagonal(self) -> float:
        return float(np.linalg.norm(self.vertices.max(0) - self.vertices.min(0)))

    def with_vertices(self, vertices: np.ndarray) -> "MeshData":
        """The same mesh (faces, colours) at other vertex positions, e.g. normalized ones."""
        return MeshData(
            vertices=vertices,
            faces=self.faces,
            uvs=self.uvs,
            texture=self.texture,
            vertex_colors=self.vertex_colors,
            base_color=self.base_color,
            to_world_from_file=self.to_world_from_file,
            source=self.source,
        )

    def to_file_frame(self, points: np.ndarray) -> np.ndarray:
        """[..., 3] world points -> the file's axes (exact inverse of the load conversion)."""
        return np.asarray(points) @ self.to_world_from_file


def mesh_from_arrays(
    vertices,
    faces,
    uvs=None,
    texture=None,
    vertex_colors=None,
    base_color=None,
) -> MeshData:
    """Build a :class:`MeshData` from arrays already in the world frame (+Z up)."""
    return MeshData(
        vertices=np.asarray(vertices, dtype=np.float64),
        faces=np.asarray(faces),
        uvs=uvs,
        texture=texture,
        vertex_colors=vertex_colors,
        base_color=base_color,
    )


# --------------------------------------------------------------------------- loading
def up_axis_matrix(path: str | Path, up: Up = "auto") -> np.ndarray:
    """[3, 3] rotation from the file's axes to the +Z-up world for ``up``.

    ``"auto"``: +Y up for glTF/GLB (the specification), OBJ and PLY (most exporters);
    +Z up for STL (CAD and 3D-printing tools, and Blender's STL importer).
    """
    if up not in ("auto", "y", "z"):
        raise ValueError(f"up must be 'auto', 'y' or 'z', got {up!r}")
    if up == "auto":
        up = "z" if Path(path).suffix.lower() == ".stl" else "y"
    return Y_UP_TO_Z_UP.copy() if up == "y" else np.eye(3)


def load_mesh(path: str | Path, up: Up = "auto") -> MeshData:
    """Load ``.obj/.ply/.stl/.glb/.gltf`` into one :class:`MeshData` in the +Z-up world.

    Scenes are flattened: every mesh instance is transformed by its node transform and
    concatenated in scene-graph order. Textures of several materials are packed into one
    atlas (UVs remapped); see :func:`_combine_colors`.

    Args:
        path: the file.
        up: which axis is up in the file: ``"y"``, ``"z"``, or ``"auto"`` (see
            :func:`up_axis_matrix`).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"mesh file {str(path)!r} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"mesh file {str(path)!r}: unsupported format {suffix!r}; export it as one of {', '.join(SUPPORTED_SUFFIXES)}")
    R = up_axis_matrix(path, up)

    import trimesh  # lazy: heavy import

    kwargs = {"process": False}
    if suffix == ".obj":
        kwargs.update(maintain_order=True, group_material=False)
    try:
        scene = trimesh.load_scene(str(path), **kwargs)
    except Exception as exc:  # trimesh raises many kinds of errors on bad files
        raise ValueError(f"mesh file {str(path)!r} could not be read ({type(exc).__name__}: {exc}); re-export it from your DCC tool") from exc

    parts = []
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry.get(geom_name)
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = np.asarray(geom.vertices, dtype=np.float64)
        v = v @ transform[:3, :3].T + transform[:3, 3]
        f = np.asarray(geom.faces, dtype=np.int64)
        if np.linalg.det(transform[:3, :3]) < 0:  # mirrored instance: keep faces outward
            f = f[:, ::-1].copy()
        parts.append(_Part(v, f, *_part_colors(geom)))
    if not parts:
        raise ValueError(
            f"mesh file {str(path)!r} contains no triangle faces (only points, curves or nothing); "
            "export it as a triangulated surface mesh"
        )
    if suffix == ".stl":
        parts = [_merge_stl_corners(p) for p in parts]

    vertices = np.concatenate([p.vertices for p in parts])
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    faces = np.concatenate([p.faces + o for p, o in zip(parts, offsets)])
    uvs, texture, vertex_colors, base_color = _combine_colors(parts)
    try:
        return MeshData(
            vertices=vertices @ R.T,
            faces=faces,
            uvs=uvs,
            texture=texture,
            vertex_colors=vertex_colors,
            base_color=base_color,
            to_world_from_file=R,
            source=str(path),
        )
    except ValueError as exc:
        raise ValueError(f"mesh file {str(path)!r} is not usable: {exc}") from exc


@dataclass
class _Part:
    """One mesh instance of a scene, with its colour source."""

    vertices: np.ndarray  # [v, 3]
    faces: np.ndarray  # [f, 3]
    uvs: np.ndarray | None = None  # [v, 2] when textured
    image: np.ndarray | None = None  # [h, w, 3] uint8, factor already applied
    vertex_colors: np.ndarray | None = None  # [v, 3] 0..1
    color: np.ndarray | None = None  # [3] 0..1 constant colour


def _part_colors(geom) -> tuple:
    """(uvs, image, vertex_colors, color) of one trimesh geometry; unknown -> all None."""
    import trimesh

    visual = geom.visual
    if isinstance(visual, trimesh.visual.texture.TextureVisuals):
        mat = visual.material
        image, factor = None, None
        if isinstance(mat, trimesh.visual.material.PBRMaterial):
            image = mat.baseColorTexture
            factor = mat.baseColorFactor
        elif isinstance(mat, trimesh.visual.material.SimpleMaterial):
            image = mat.image
            # OBJ: a map_Kd texture replaces Kd (as in Blender's importer); Kd alone is a colour
            factor = mat.diffuse if image is None else None
        factor_lin = None if factor is None else np.asarray(factor, dtype=np.float64)[:3] / 255.0
        uv = None if visual.uv is None else np.asarray(visual.uv, dtype=np.float64)
        if image is not None and uv is not None and len(uv) == len(geom.vertices):
            img = _as_rgb_image(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image))
            if factor_lin is not None and not np.allclose(factor_lin, 1.0):
                lin = srgb_to_linear(img.astype(np.float64) / 255.0) * factor_lin
                img = np.round(linear_to_srgb(lin) * 255.0).clip(0, 255).astype(np.uint8)
            return uv, img, None, None
        if factor_lin is not None:
            return None, None, None, linear_to_srgb(factor_lin)
        return None, None, None, None
    if isinstance(visual, trimesh.visual.color.ColorVisuals):
        if visual.kind == "vertex":
            return None, None, np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0, None
        if visual.kind == "face":
            # MeshData has no per-face colours: average the faces around each vertex
            # (splitting vertices would break the file's vertex order).
            fc = np.asarray(visual.face_colors, dtype=np.float64)[:, :3] / 255.0
            acc = np.zeros((len(geom.vertices), 3))
            cnt = np.zeros(len(geom.vertices))
            for k in range(3):
                np.add.at(acc, geom.faces[:, k], fc)
                np.add.at(cnt, geom.faces[:, k], 1.0)
            return None, None, acc / np.maximum(cnt, 1.0)[:, None], None
    return None, None, None, None


def _merge_stl_corners(part: _Part) -> _Part:
    """STL stores three private corners per triangle: merge equal positions."""
    uniq, inverse = np.unique(part.vertices, axis=0, return_inverse=True)
    return _Part(uniq, inverse.reshape(-1)[part.faces], color=part.color)


def _combine_colors(parts: list[_Part]):
    """Merge per-part colour sources into one: (uvs, texture, vertex_colors, base_color).

    - any textured part: one texture. Parts sharing one image keep their UVs; otherwise
      the images are stacked into an atlas (with a 2-pixel edge border against bleeding)
      and UVs are remapped, wrapping repeating UVs into [0, 1] per vertex. Untextured
      parts get a small tile of their constant colour (vertex colours: their mean, with
      a warning, since a texture cannot hold them).
    - else any vertex-coloured part: vertex colours (constant parts filled in).
    - else constant colours: ``base_color`` if they agree, vertex colours if they differ.
    """
    grey = np.full(3, DEFAULT_GREY)
    if any(p.image is not None for p in parts):
        return (*_build_atlas(parts), None, None)
    if any(p.vertex_colors is not None for p in parts):
        vc = [p.vertex_colors if p.vertex_colors is not None else np.tile(p.color if p.color is not None else grey, (len(p.vertices), 1)) for p in parts]
        return None, None, np.concatenate(vc), None
    colors = [p.color for p in parts]
    if all(c is None for c in colors):
        return None, None, None, None
    colors = [grey if c is None else c for c in colors]
    if all(np.allclose(c, colors[0]) for c in colors):
        return None, None, None, colors[0]
    return None, None, np.concatenate([np.tile(c, (len(p.vertices), 1)) for c, p in zip(colors, parts)]), None


def _build_atlas(parts: list[_Part]) -> tuple[np.ndarray, np.ndarray]:
    tiles: list[np.ndarray] = []
    tile_of_key: dict[bytes, int] = {}
    part_tile: list[int] = []
    grey = np.full(3, DEFAULT_GREY)
    for p in parts:
        if p.image is not None:
            img = p.image
        else:
            color = p.color
            if p.vertex_colors is not None:
                warnings.warn("a vertex-coloured part of a textured mesh is given its mean colour", stacklevel=3)
                color = p.vertex_colors.mean(0)
            color = grey if color is None else color
            img = np.tile(np.round(np.asarray(color) * 255).clip(0, 255).astype(np.uint8), (4, 4, 1))
        key = hashlib.sha1(np.ascontiguousarray(img).tobytes() + str(img.shape).encode()).digest()
        if key not in tile_of_key:
            tile_of_key[key] = len(tiles)
            tiles.append(img)
        part_tile.append(tile_of_key[key])

    if len(tiles) == 1:  # one shared image: keep UVs as they are (repeat still works)
        uvs = [p.uvs if p.uvs is not None else np.full((len(p.vertices), 2), 0.5) for p in parts]
        return np.concatenate(uvs), tiles[0]

    border = 2
    padded = [np.pad(t, ((border, border), (border, border), (0, 0)), mode="edge") for t in tiles]
    width = max(t.shape[1] for t in padded)
    height = sum(t.shape[0] for t in padded)
    atlas = np.zeros((height, width, 3), dtype=np.uint8)
    origin = []  # (row of the tile's top-left texel, col) excluding the border
    row = 0
    for t in padded:
        atlas[row : row + t.shape[0], : t.shape[1]] = t
        origin.append((row + border, border))
        row += t.shape[0]

    uvs = []
    for p, ti in zip(parts, part_tile):
        h, w = tiles[ti].shape[:2]
        r0, c0 = origin[ti]
        if p.uvs is None:
            uv = np.full((len(p.vertices), 2), 0.5)
        else:
            uv = p.uvs.copy()
            outside = (uv < 0) | (uv > 1)
            uv[outside] = uv[outside] - np.floor(uv[outside])
        x = c0 + uv[:, 0] * w  # texel coordinates in the atlas (continuous, pixel edges at integers)
        y = r0 + (1.0 - uv[:, 1]) * h
        uvs.append(np.stack([x / width, 1.0 - y / height], axis=1))
    return np.concatenate(uvs), atlas


def _as_rgb_image(img: np.ndarray) -> np.ndarray:
    """Any HxW, HxWx1, HxWx3, HxWx4 image -> HxWx3 (dtype kept; alpha dropped)."""
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"texture must be an [H, W, 3] RGB image, got shape {img.shape}")
    if img.shape[2] in (1, 2):
        img = np.repeat(img[..., :1], 3, axis=2)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
    return np.ascontiguousarray(img)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


# --------------------------------------------------------------------------- colours
def sample_colors(mesh: MeshData, face_idx: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Surface colour at points given by face index and barycentric coordinates.

    Args:
        mesh: the mesh.
        face_idx: [M] int face indices.
        bary: [M, 3] barycentric weights of the face's three corners.

    Returns:
        [M, 3] float64 RGB in 0..1: the texture through the interpolated UVs (bilinear,
        repeating), else interpolated vertex colours, else ``base_color``, else 0.8 grey.
    """
    face_idx = np.asarray(face_idx, dtype=np.int64)
    bary = np.asarray(bary, dtype=np.float64)
    if face_idx.ndim != 1 or bary.shape != (len(face_idx), 3):
        raise ValueError(f"sample_colors needs face_idx [M] and bary [M, 3], got {face_idx.shape} and {bary.shape}")
    corners = mesh.faces[face_idx]  # [M, 3]
    if mesh.texture is not None and mesh.uvs is not None:
        uv = np.einsum("mk,mkc->mc", bary, mesh.uvs[corners])  # [M, 2]
        return bilinear_lookup(mesh.texture, uv)
    if mesh.vertex_colors is not None:
        return np.einsum("mk,mkc->mc", bary, mesh.vertex_colors[corners]).clip(0.0, 1.0)
    color = mesh.base_color if mesh.base_color is not None else np.full(3, DEFAULT_GREY)
    return np.tile(np.clip(color, 0.0, 1.0), (len(face_idx), 1))


def bilinear_lookup(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """[H, W, 3] image, [M, 2] UVs ((0, 0) bottom-left, repeating) -> [M, 3] RGB in 0..1."""
    H, W = texture.shape[:2]
    scale = 1.0 / 255.0 if texture.dtype == np.uint8 else 1.0
    x = uv[:, 0] * W - 0.5  # texel centres at integer coordinates
    y = (1.0 - uv[:, 1]) * H - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    x1, y1 = (x0 + 1) % W, (y0 + 1) % H
    x0, y0 = x0 % W, y0 % H
    tex = texture
    out = (
        tex[y0, x0] * ((1 - fx) * (1 - fy))
        + tex[y0, x1] * (fx * (1 - fy))
        + tex[y1, x0] * ((1 - fx) * fy)
        + tex[y1, x1] * (fx * fy)
    )
    return np.clip(out * scale, 0.0, 1.0)
