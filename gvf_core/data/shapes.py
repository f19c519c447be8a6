"""Procedural shapes for the data engine: primitives, creatures, plants and machines.

:func:`random_asset` draws one :class:`ProceduralAsset`: a coloured triangle mesh, and for
assembled kinds a matching :class:`~gvf_core.data.skeleton.Skeleton` with smooth skinning
weights. :func:`asset_from_mesh` wraps a user's static mesh, optionally with an automatic
chain skeleton along its principal axis.

Assembled bodies are built in a canonical frame (forward +X, left +Y, up +Z, feet near
z = 0) from swept tubes (capsules, ellipsoids, cones, tapered limbs along smoothed
polylines) and subdivided boxes, then turned by a random yaw about +Z;
``ProceduralAsset.frame`` keeps that rotation so motions can find "forward" and
"lateral". Parts are either *fused* (overlapping tubes along whole limbs, skinned with
blended weights) or *separate* (one rigid piece per bone, with small gaps), and always
concatenated into one mesh (no boolean union). Units are arbitrary (torso or height ~1);
callers normalize into the model frame.

Everything is deterministic for a given ``numpy.random.Generator`` state: all random
draws happen in the design step; tessellation is a pure function of the design and a
resolution that is coarsened until the vertex budget holds.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from gvf_core.data.jsonable import to_jsonable
from gvf_core.data.skeleton import Skeleton
from gvf_core.mesh import MeshData

KIND_PROBS: dict[str, float] = {
    "primitive": 0.14,
    "quadruped": 0.16,
    "biped": 0.15,
    "bird": 0.10,
    "insect": 0.08,
    "fish": 0.08,
    "snake": 0.06,
    "plant": 0.11,
    "machine": 0.12,
}
"""Probability of each asset kind in :func:`random_asset` (sums to 1)."""

KINDS = tuple(KIND_PROBS)


@dataclass
class ProceduralAsset:
    """A coloured mesh with optional skeleton and skinning weights."""

    mesh: MeshData
    """Rest mesh with colours (vertex colours, or UVs and a texture)."""
    skeleton: Skeleton | None
    """Joint tree matching the body, or None (primitives, plain user meshes)."""
    weights: np.ndarray | None
    """[V, J] float64 skinning weights, rows sum to 1 (None without skeleton)."""
    parts: np.ndarray
    """[V] int64 part id of every vertex."""
    kind: str
    """One of :data:`KINDS`, or ``"user"``."""
    info: dict = field(default_factory=dict)
    """JSON-able design parameters."""
    frame: np.ndarray = field(default_factory=lambda: np.eye(3))
    """[3, 3] rotation whose columns are the body's forward, left and up axes in mesh
    coordinates (identity for primitives and user meshes)."""

    def __post_init__(self) -> None:
        V = self.mesh.num_vertices
        self.parts = np.asarray(self.parts, dtype=np.int64)
        if self.parts.shape != (V,):
            raise ValueError(f"ProceduralAsset: parts must be [V] = [{V}], got {self.parts.shape}")
        if (self.skeleton is None) != (self.weights is None):
            raise ValueError("ProceduralAsset: skeleton and weights must be given together")
        if self.weights is not None:
            W = np.asarray(self.weights, dtype=np.float64)
            if W.shape != (V, self.skeleton.num_joints):
                raise ValueError(f"ProceduralAsset: weights must be [V, J] = {(V, self.skeleton.num_joints)}, got {W.shape}")
            if (W < 0).any() or not np.allclose(W.sum(1), 1.0, atol=1e-6):
                raise ValueError("ProceduralAsset: skinning weights must be non-negative with rows summing to 1")
            self.weights = W

    @property
    def bbox_diagonal(self) -> float:
        return self.mesh.bbox_diagonal


# =========================================================================== public API
def random_asset(rng: np.random.Generator, kind: str | None = None, max_vertices: int = 3000) -> ProceduralAsset:
    """Draw one procedural asset.

    Args:
        rng: the random generator (consumed; same state, same asset).
        kind: one of :data:`KINDS`, or None to draw one with :data:`KIND_PROBS`.
        max_vertices: vertex budget; tessellation is coarsened until it holds.

    Returns:
        A :class:`ProceduralAsset` with vertex colours or a texture.
    """
    if kind is None:
        kind = str(rng.choice(KINDS, p=np.array(list(KIND_PROBS.values()))))
    if kind not in KIND_PROBS:
        raise ValueError(f"random_asset: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if max_vertices < 200:
        raise ValueError(f"random_asset: max_vertices must be at least 200, got {max_vertices}")
    design = _Design(kind)
    _DESIGNERS[kind](rng, design)
    design.finish_skeleton()
    coloring = _draw_coloring(rng, design)
    yaw = float(rng.uniform(-math.pi, math.pi)) if kind != "primitive" else 0.0
    return _build(design, coloring, yaw, max_vertices)


def asset_from_mesh(mesh: MeshData, rng: np.random.Generator, skeleton: str = "random", num_joints: int | None = None) -> ProceduralAsset:
    """Wrap a user's static mesh as an asset.

    Args:
        mesh: the rest mesh (any units; colours kept as they are).
        rng: random generator for the automatic skeleton's choices.
        skeleton: ``"none"``; ``"chain"``: a joint chain along the principal axis with
            weights by projection, so articulated bending applies to any mesh;
            ``"random"``: chain with probability 1/2.
        num_joints: chain length (default: random 3..6).
    """
    if skeleton not in ("none", "chain", "random"):
        raise ValueError(f"asset_from_mesh: skeleton must be 'none', 'chain' or 'random', got {skeleton!r}")
    parts = _connected_components(mesh.num_vertices, mesh.faces)
    use_chain = skeleton == "chain" or (skeleton == "random" and rng.random() < 0.5)
    info: dict = {"source": mesh.source, "skeleton": "chain" if use_chain else "none"}
    if not use_chain:
        return ProceduralAsset(mesh=mesh, skeleton=None, weights=None, parts=parts, kind="user", info=info)
    n = int(num_joints) if num_joints is not None else int(rng.integers(3, 7))
    root_at_min = bool(rng.random() < 0.5)
    skel, W = chain_skeleton(mesh.vertices, n, root_at_min=root_at_min)
    info.update(num_joints=n, root_at_min=root_at_min)
    return ProceduralAsset(mesh=mesh, skeleton=skel, weights=W, parts=parts, kind="user", info=info)


def chain_skeleton(vertices: np.ndarray, num_joints: int, root_at_min: bool = True) -> tuple[Skeleton, np.ndarray]:
    """A joint chain along the principal axis of ``vertices`` and smooth weights by projection.

    The chain spans the vertices' extent along the first principal axis; joint ``j``'s bone
    covers one of ``num_joints`` equal intervals. Weights are Gaussian bumps (sigma = half
    an interval) of the projection about each bone's middle, normalized.

    Returns:
        (skeleton with ``chains == {"chain": [[0, 1, ...]]}``, weights [V, J]).
    """
    v = np.asarray(vertices, dtype=np.float64)
    if num_joints < 1:
        raise ValueError(f"chain_skeleton: num_joints must be >= 1, got {num_joints}")
    c = v.mean(0)
    _, _, vt = np.linalg.svd(v - c, full_matrices=False)
    axis = vt[0]
    axis = axis if axis[np.argmax(np.abs(axis))] > 0 else -axis  # deterministic sign
    if not root_at_min:
        axis = -axis
    s = (v - c) @ axis
    lo, hi = float(s.min()), float(s.max())
    if hi - lo <= 0:
        raise ValueError("chain_skeleton: the mesh has no extent")
    edges = np.linspace(lo, hi, num_joints + 1)
    pos = c + edges[:, None] * axis
    skel = Skeleton(
        positions=pos[:-1],
        parents=np.arange(-1, num_joints - 1),
        names=tuple(f"chain{j}" for j in range(num_joints)),
        tails=pos[1:],
        chains={"chain": [list(range(num_joints))]},
    )
    mids = 0.5 * (edges[:-1] + edges[1:])
    sigma = 0.5 * (hi - lo) / num_joints
    W = np.exp(-0.5 * ((s[:, None] - mids[None]) / sigma) ** 2)
    W /= W.sum(1, keepdims=True)
    return skel, W


# =========================================================================== design
@dataclass
class _Part:
    """One piece of the body before tessellation."""

    shape: str  # "sweep" | "box" | "primitive"
    joints: list[int]  # joints whose bones may weigh on this part (first = own joint)
    group: int = 0  # colour group
    rigid: bool = False  # one-hot weight on joints[0]
    path: np.ndarray | None = None  # sweep: [K, 3] control polyline
    radii: np.ndarray | None = None  # sweep: [K, 2] radii along (u, w)
    up: tuple = (0.0, 0.0, 1.0)  # sweep: hint for the cross-section's u axis
    caps: tuple = ("round", "round")  # sweep: "round" | "flat" (ends of radius 0 are poles)
    center: np.ndarray | None = None  # box / primitive
    extents: np.ndarray | None = None  # box
    rotation: np.ndarray | None = None  # box / primitive [3, 3]
    prim: dict | None = None  # primitive: {"type": ..., params}

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if self.shape == "sweep":
            r = float(self.radii.max())
            return self.path.min(0) - r, self.path.max(0) + r
        if self.shape == "box":
            h = 0.5 * np.abs(self.rotation) @ self.extents
            return self.center - h, self.center + h
        h = np.full(3, float(self.prim["bound"]))
        return self.center - h, self.center + h


class _Design:
    """Parts and a skeleton under construction."""

    def __init__(self, kind: str):
        self.kind = kind
        self.parts: list[_Part] = []
        self.pos: list[np.ndarray] = []
        self.parents: list[int] = []
        self.names: list[str] = []
        self.tails: list[np.ndarray] = []
        self.chains: dict[str, list[list[int]]] = {}
        self.params: dict = {}
        self.separate = False
        self.skeleton: Skeleton | None = None

    def joint(self, name: str, pos, parent: int, tail) -> int:
        self.pos.append(np.asarray(pos, dtype=np.float64))
        self.parents.append(int(parent))
        self.names.append(name)
        self.tails.append(np.asarray(tail, dtype=np.float64))
        return len(self.names) - 1

    def chain(self, role: str, name: str, points: np.ndarray, parent: int) -> list[int]:
        """Joints at points[:-1], each bone ending at the next point; recorded under ``role``."""
        ids = []
        for k in range(len(points) - 1):
            ids.append(self.joint(f"{name}{k}", points[k], parent, points[k + 1]))
            parent = ids[-1]
        self.chains.setdefault(role, []).append(list(ids))
        return ids

    def add(self, part: _Part) -> None:
        self.parts.append(part)

    def limb(self, points, radii, joints: list[int], parent: int, group: int, up=(0.0, 0.0, 1.0), start_inside=None, tip="round") -> None:
        """A limb along ``points`` (joint positions then the tip) skinned to ``joints``.

        Fused: one tube along the whole polyline (starting at ``start_inside``, a point in
        the parent body), blended weights over parent + chain joints. Separate: one rigid
        tube per bone, shortened at both ends to leave gaps.
        """
        points = np.asarray(points, dtype=np.float64)
        radii = np.asarray(radii, dtype=np.float64)
        if radii.ndim == 1:
            radii = np.stack([radii, radii], 1)
        if not self.separate:
            path, rad = points, radii
            if start_inside is not None:
                path = np.concatenate([np.asarray(start_inside, dtype=np.float64)[None], points])
                rad = np.concatenate([radii[:1], radii])
            self.add(_Part("sweep", [parent, *joints], group, path=path, radii=rad, up=up, caps=("round", tip)))
            return
        for k, j in enumerate(joints):
            a, b = points[k], points[k + 1]
            d = b - a
            gap = 0.08 * np.linalg.norm(d) + 0.15 * float(radii[k].mean())
            gap = min(gap, 0.3 * np.linalg.norm(d))
            u = d / max(np.linalg.norm(d), 1e-12)
            seg = np.stack([a + gap * u, b - gap * u])
            self.add(_Part("sweep", [j], group, rigid=True, path=seg, radii=radii[k : k + 2], up=up))

    def finish_skeleton(self) -> None:
        if self.names:
            self.skeleton = Skeleton(
                positions=np.stack(self.pos), parents=np.asarray(self.parents), names=tuple(self.names), tails=np.stack(self.tails), chains=self.chains
            )

    def extent(self) -> float:
        lo = np.min([p.bounds()[0] for p in self.parts], axis=0)
        hi = np.max([p.bounds()[1] for p in self.parts], axis=0)
        return float(np.linalg.norm(hi - lo))


def _u(rng, a, b) -> float:
    return float(rng.uniform(a, b))


def _ellipsoid_profile(a, b, radii, n: int = 9):
    """Control path and radii of an ellipsoid from a to b with equator radii [2]."""
    s = np.linspace(-1.0, 1.0, n)
    path = 0.5 * (np.asarray(a) + np.asarray(b)) + 0.5 * s[:, None] * (np.asarray(b) - np.asarray(a))
    prof = np.sqrt(np.clip(1 - s**2, 0, 1))
    return path, prof[:, None] * np.asarray(radii, dtype=np.float64)[None]


def _body(design: _Design, rng, a, b, radii, joints, group=0, up=(0.0, 0.0, 1.0), shape=None) -> str:
    """Torso-like part from a to b: capsule, ellipsoid or box."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    radii = np.asarray(radii, float)
    shape = shape or str(rng.choice(["capsule", "ellipsoid", "box"], p=[0.4, 0.45, 0.15]))
    if shape == "capsule":
        d = b - a
        L = np.linalg.norm(d)
        u = d / L
        r = float(radii.mean())
        inset = min(r, 0.45 * L)
        n = 5
        path = a + u * inset + np.linspace(0, 1, n)[:, None] * (d - 2 * inset * u)
        design.add(_Part("sweep", joints, group, path=path, radii=np.tile(radii, (n, 1)), up=up))
    elif shape == "ellipsoid":
        path, rad = _ellipsoid_profile(a, b, radii)
        design.add(_Part("sweep", joints, group, path=path, radii=rad, up=up))
    else:
        d = b - a
        L = float(np.linalg.norm(d))
        x = d / L
        z = np.asarray(up, float) - np.dot(up, x) * x
        z /= np.linalg.norm(z)
        y = np.cross(z, x)
        R = np.stack([x, y, z], 1)
        design.add(_Part("box", joints, group, center=0.5 * (a + b), extents=np.array([L, 2 * radii[1], 2 * radii[0]]), rotation=R))
    return shape


# --------------------------------------------------------------------------- kinds
def _design_primitive(rng, d: _Design) -> None:
    t = str(rng.choice(["box", "sphere", "capsule", "cylinder", "cone", "torus"]))
    scale = np.exp(rng.uniform(-0.5, 0.5, 3))
    prim = {"type": t, "scale": scale.tolist(), "bound": 1.5 * float(scale.max())}
    if t == "capsule":
        prim["height"] = _u(rng, 0.3, 2.0)
        prim["bound"] *= 1 + prim["height"] / 2
    elif t in ("cylinder", "cone"):
        prim["height"] = _u(rng, 0.5, 2.5)
        prim["bound"] *= 1 + prim["height"] / 2
    elif t == "torus":
        prim["minor"] = _u(rng, 0.15, 0.5)
    rot = _random_rotation(rng) if rng.random() < 0.5 else np.eye(3)
    d.params.update(primitive=t, scale=[round(float(x), 4) for x in scale])
    d.add(_Part("primitive", [], 0, center=np.zeros(3), rotation=rot, prim=prim))


def _design_quadruped(rng, d: _Design) -> None:
    d.separate = bool(rng.random() < 0.25)
    Lt = 1.0
    rt = _u(rng, 0.12, 0.28)
    wr = _u(rng, 0.7, 1.3)
    Ll = _u(rng, 0.3, 0.9)
    zb = Ll + 0.3 * rt
    d.params.update(torso_length=Lt, torso_radius=rt, width_ratio=wr, leg_length=Ll)
    pelvis = d.joint("pelvis", (-0.3, 0, zb), -1, (0, 0, zb))
    spine = d.joint("spine", (0, 0, zb), pelvis, (0.3, 0, zb))
    chest = d.joint("chest", (0.3, 0, zb), spine, (0.45, 0, zb))
    d.chains["spine"] = [[pelvis, spine, chest]]
    d.params["torso"] = _body(d, rng, (-Lt / 2, 0, zb), (Lt / 2, 0, zb), (rt, rt * wr), [pelvis, spine, chest])
    rl = _u(rng, 0.25, 0.5) * rt
    for front, parent in ((True, chest), (False, pelvis)):
        x = (0.32 if front else -0.32) * Lt
        bend = _u(rng, -0.12, 0.12) * Ll
        for side in (1, -1):
            hip = np.array([x, side * 0.65 * rt * wr, Ll])
            pts = np.stack([hip, hip + (bend, 0, -0.5 * Ll), hip + (0, 0, -0.9 * Ll), hip + (0.12 * Ll, 0, -Ll + 0.5 * rl)])
            name = f"leg_{'f' if front else 'b'}{'l' if side > 0 else 'r'}"
            ids = d.chain("leg", name, pts, parent)
            d.limb(pts, [rl, 0.8 * rl, 0.6 * rl, 0.5 * rl], ids, parent, 1, up=(1, 0, 0), start_inside=hip + (0, 0, 0.4 * rt))
    _neck_and_head(rng, d, chest, base=np.array([0.4 * Lt, 0, zb + 0.3 * rt]), rt=rt, elev=(0.2, 1.2))
    if rng.random() < 0.8:
        _tail(rng, d, pelvis, base=np.array([-0.45 * Lt, 0, zb + 0.2 * rt]), rt=rt, length=(0.2, 0.9))


def _design_biped(rng, d: _Design) -> None:
    d.separate = bool(rng.random() < 0.25)
    Ll = _u(rng, 0.35, 0.6)
    Lt = _u(rng, 0.25, 0.45)
    rt = _u(rng, 0.07, 0.15)
    wr = _u(rng, 1.0, 1.7)
    d.params.update(leg_length=Ll, torso_length=Lt, torso_radius=rt, width_ratio=wr)
    z0 = Ll
    pelvis = d.joint("pelvis", (0, 0, z0), -1, (0, 0, z0 + Lt / 2))
    spine = d.joint("spine", (0, 0, z0 + Lt / 2), pelvis, (0, 0, z0 + Lt))
    chest = d.joint("chest", (0, 0, z0 + Lt), spine, (0, 0, z0 + Lt + 0.05))
    d.chains["spine"] = [[pelvis, spine, chest]]
    d.params["torso"] = _body(d, rng, (0, 0, z0 - 0.3 * rt), (0, 0, z0 + Lt + 0.3 * rt), (rt, rt * wr), [pelvis, spine, chest], up=(1, 0, 0))
    rl = _u(rng, 0.25, 0.45) * rt * wr
    for side in (1, -1):
        hip = np.array([0, side * 0.5 * rt * wr, z0])
        pts = np.stack([hip, hip + (0.03 * Ll, 0, -0.5 * Ll), hip + (0, 0, -0.92 * Ll), hip + (0.15 * Ll, 0, -Ll + 0.4 * rl)])
        ids = d.chain("leg", f"leg_{'l' if side > 0 else 'r'}", pts, pelvis)
        d.limb(pts, [rl, 0.8 * rl, 0.6 * rl, 0.5 * rl], ids, pelvis, 1, up=(1, 0, 0), start_inside=hip + (0, 0, 0.3 * rt))
    La = _u(rng, 0.6, 1.1) * Ll
    ra = _u(rng, 0.5, 0.8) * rl
    spread = _u(rng, 0.2, 1.45)  # from hanging (0) to T-pose (pi/2)
    for side in (1, -1):
        sh = np.array([0, side * (rt * wr + 0.5 * ra), z0 + Lt - 0.4 * rt])
        dirv = np.array([0, side * math.sin(spread), -math.cos(spread)])
        pts = np.stack([sh, sh + 0.5 * La * dirv + (0.02 * La, 0, 0), sh + 0.92 * La * dirv, sh + La * dirv])
        ids = d.chain("arm", f"arm_{'l' if side > 0 else 'r'}", pts, chest)
        d.limb(pts, [ra, 0.8 * ra, 0.6 * ra, 0.7 * ra], ids, chest, 1, up=(1, 0, 0), start_inside=sh - side * np.array([0, 0.6 * rt, 0]))
    d.params["arm_spread"] = spread
    _neck_and_head(rng, d, chest, base=np.array([0, 0, z0 + Lt]), rt=rt * 1.2, elev=(1.3, 1.57), neck_len=(0.05, 0.15), head_pitch=(-0.2, 0.2))
    if rng.random() < 0.2:
        _tail(rng, d, pelvis, base=np.array([-0.8 * rt, 0, z0]), rt=rt, length=(0.2, 0.5))


def _design_bird(rng, d: _Design) -> None:
    d.separate = bool(rng.random() < 0.15)
    rt = _u(rng, 0.14, 0.25)
    Ll = _u(rng, 0.15, 0.4)
    zb = Ll + rt * 0.8
    pitch = _u(rng, 0.0, 0.5)
    fwd = np.array([math.cos(pitch), 0, math.sin(pitch)])
    c = np.array([0, 0, zb])
    pelvis = d.joint("pelvis", c - 0.25 * fwd, -1, c)
    chest = d.joint("chest", c, pelvis, c + 0.25 * fwd)
    d.chains["spine"] = [[pelvis, chest]]
    d.params.update(torso_radius=rt, leg_length=Ll, pitch=pitch)
    _body(d, rng, c - 0.4 * fwd, c + 0.4 * fwd, (rt, rt * _u(rng, 0.8, 1.1)), [pelvis, chest], shape="ellipsoid")
    span = _u(rng, 0.5, 1.4)
    chord = _u(rng, 0.15, 0.35)
    dihedral = _u(rng, -0.2, 0.5)
    d.params.update(wingspan=span, chord=chord)
    for side in (1, -1):
        sh = c + 0.1 * fwd + np.array([0, side * 0.6 * rt, 0.4 * rt])
        out = np.array([0, side * math.cos(dihedral), math.sin(dihedral)])
        pts = np.stack([sh, sh + 0.45 * span * out - (0.03, 0, 0), sh + span * out - (0.12, 0, 0)])
        ids = d.chain("wing", f"wing_{'l' if side > 0 else 'r'}", pts, chest)
        rad = np.array([[chord, 0.025], [0.9 * chord, 0.02], [0.35 * chord, 0.012]])
        d.limb(pts, rad, ids, chest, 2, up=(1, 0, 0), start_inside=sh - side * np.array([0, 0.3 * rt, 0]))
    rl = _u(rng, 0.03, 0.05)
    for side in (1, -1):
        hip = c - 0.1 * fwd + np.array([0, side * 0.4 * rt, -0.5 * rt])
        ground = hip[2]
        pts = np.stack([hip, hip + (0.03, 0, -0.5 * ground), hip + (0, 0, -0.95 * ground), hip + (0.1, 0, -ground + rl)])
        ids = d.chain("leg", f"leg_{'l' if side > 0 else 'r'}", pts, pelvis)
        d.limb(pts, [rl, 0.8 * rl, 0.7 * rl, 0.6 * rl], ids, pelvis, 1, up=(1, 0, 0), start_inside=hip + (0, 0, 0.3 * rt))
    _neck_and_head(rng, d, chest, base=c + 0.35 * fwd + (0, 0, 0.2 * rt), rt=rt, elev=(0.6, 1.4), neck_len=(0.08, 0.35), beak=True)
    # tail fan: a flat ellipsoid pointing back
    base = c - 0.35 * fwd
    tip = base - _u(rng, 0.2, 0.45) * np.array([math.cos(pitch - 0.2), 0, math.sin(pitch - 0.2)])
    ids = d.chain("tail", "tail", np.stack([base, tip]), pelvis)
    path, rad = _ellipsoid_profile(base, tip, (_u(rng, 0.1, 0.2), 0.015))
    d.add(_Part("sweep", [ids[0], pelvis], 2, path=path, radii=rad, up=(0, 1, 0)))


def _design_insect(rng, d: _Design) -> None:
    d.separate = bool(rng.random() < 0.4)
    rt = _u(rng, 0.08, 0.14)
    Ll = _u(rng, 0.25, 0.55)
    zb = _u(rng, 0.15, 0.3)
    thorax_c = np.array([0, 0, zb])
    root = d.joint("thorax", thorax_c, -1, thorax_c + (0.15, 0, 0))
    ab_len = _u(rng, 0.3, 0.6)
    ab = d.joint("abdomen", thorax_c - (0.12, 0, 0), root, thorax_c - (0.12 + ab_len, 0, 0))
    headj = d.joint("head", thorax_c + (0.15, 0, 0.02), root, thorax_c + (0.3, 0, 0.03))
    d.chains["spine"] = [[root, ab]]
    d.chains["neck"] = [[headj]]
    d.params.update(thorax_radius=rt, leg_length=Ll, abdomen_length=ab_len)
    _body(d, rng, thorax_c - (0.15, 0, 0), thorax_c + (0.15, 0, 0), (rt, rt), [root], shape="ellipsoid")
    path, rad = _ellipsoid_profile(thorax_c - (0.1, 0, 0), thorax_c - (0.12 + ab_len, 0, -0.03), (1.2 * rt, 1.3 * rt))
    d.add(_Part("sweep", [ab, root], 0, path=path, radii=rad))
    hr = 0.8 * rt
    path, rad = _ellipsoid_profile(thorax_c + (0.13, 0, 0.02), thorax_c + (0.13 + 2.2 * hr, 0, 0.04), (hr, hr))
    d.add(_Part("sweep", [headj], 3, rigid=True, path=path, radii=rad))
    rl = _u(rng, 0.015, 0.03)
    for i, x in enumerate((0.1, 0.0, -0.1)):
        for side in (1, -1):
            hip = thorax_c + (x, side * 0.7 * rt, -0.3 * rt)
            spread = x * 2.5
            out = np.array([math.sin(spread), side * math.cos(spread), 0])
            knee = hip + 0.45 * Ll * out + (0, 0, 0.35 * zb)
            foot = hip + Ll * out + (0, 0, -hip[2] + rl)
            pts = np.stack([hip, knee, foot])
            ids = d.chain("leg", f"leg{i}_{'l' if side > 0 else 'r'}", pts, root)
            d.limb(pts, [rl, 0.9 * rl, 0.6 * rl], ids, root, 1, up=(1, 0, 0))
    for side in (1, -1):
        a = thorax_c + (0.13 + 2 * hr, side * 0.4 * hr, 0.6 * hr)
        pts = np.stack([a, a + (0.12, side * 0.06, 0.12), a + (0.25, side * 0.12, 0.15)])
        ids = d.chain("antenna", f"antenna_{'l' if side > 0 else 'r'}", pts, headj)
        d.limb(pts, [0.01, 0.008, 0.005], ids, headj, 3, up=(1, 0, 0))
    if rng.random() < 0.4:
        span = _u(rng, 0.3, 0.6)
        for side in (1, -1):
            sh = thorax_c + (0.02, side * 0.5 * rt, 0.8 * rt)
            tip = sh + (-0.6 * span, side * 0.6 * span, 0.05)
            ids = d.chain("wing", f"wing_{'l' if side > 0 else 'r'}", np.stack([sh, tip]), root)
            path, rad = _ellipsoid_profile(sh, tip, (0.25 * span, 0.006))
            d.add(_Part("sweep", [ids[0]], 2, rigid=True, path=path, radii=rad, up=(1, 1, 0)))


def _design_fish(rng, d: _Design) -> None:
    n = int(rng.integers(4, 8))
    h = _u(rng, 0.08, 0.2)  # half height
    w = h * _u(rng, 0.3, 0.8)  # half width
    zb = 0.0
    xs = np.linspace(0.5, -0.35, n + 1)
    pts = np.stack([xs, np.zeros(n + 1), np.full(n + 1, zb)], 1)
    ids = d.chain("spine", "spine", pts, -1)
    d.params.update(num_spine_joints=n, half_height=h, half_width=w)
    s = np.linspace(0, 1, 13)
    prof = np.clip(np.sqrt(s) * (1 - s) ** 0.8 / 0.48, 0, None)
    prof[-1] = 0.1  # tail root stays finite; fin covers the end
    path = np.stack([0.55 - 0.95 * s, np.zeros_like(s), np.full_like(s, zb)], 1)
    d.add(_Part("sweep", ids, 0, path=path, radii=np.stack([h * prof, w * prof], 1), up=(0, 0, 1), caps=("round", "round")))
    # tail fin: flat in y, spanning z
    fin_len = _u(rng, 0.12, 0.25)
    fin_h = _u(rng, 0.8, 1.6) * h
    base = np.array([-0.38, 0, zb])
    fin_path, fin_rad = _ellipsoid_profile(base, base - (fin_len, 0, 0), (fin_h, 0.012))
    d.add(_Part("sweep", [ids[-1], ids[-2]], 2, path=fin_path, radii=fin_rad, up=(0, 0, 1)))
    # dorsal fin
    k = max(1, n // 3)
    top = np.array([float(xs[k]), 0, zb + 0.85 * h])
    d.add(_Part("sweep", [ids[k], ids[min(k + 1, n - 1)]], 2, path=np.stack([top, top + (-0.15, 0, 0.5 * h)]), radii=np.array([[0.06, 0.01], [0.0, 0.0]]), up=(1, 0, 0)))
    if rng.random() < 0.6:  # pectoral fins
        for side in (1, -1):
            a = np.array([float(xs[1]), side * 0.8 * w, zb - 0.3 * h])
            path, rad = _ellipsoid_profile(a, a + (-0.12, side * 0.08, -0.04), (0.04, 0.008))
            d.add(_Part("sweep", [ids[1]], 2, rigid=True, path=path, radii=rad, up=(0, 1, 1)))


def _design_snake(rng, d: _Design) -> None:
    n = int(rng.integers(8, 15))
    r = _u(rng, 0.02, 0.05)
    amp = _u(rng, 0.0, 0.08)
    waves = _u(rng, 0.5, 2.0)
    s = np.linspace(0, 1, 4 * n + 1)
    path = np.stack([0.5 - s, amp * np.sin(2 * math.pi * waves * s), np.full_like(s, r)], 1)
    jp = path[::4]
    ids = d.chain("spine", "spine", jp, -1)
    d.params.update(num_spine_joints=n, radius=r, rest_wave_amplitude=amp)
    prof = np.clip(1.0 - np.clip((s - 0.75) / 0.25, 0, 1) ** 1.5 * 0.95, 0.05, 1)
    prof[:3] = [0.7, 1.25, 1.2]  # head bulge
    d.add(_Part("sweep", ids, 0, path=path, radii=np.stack([prof * r * 0.8, prof * r], 1), up=(0, 0, 1)))


def _design_plant(rng, d: _Design) -> None:
    H = 1.0
    n = int(rng.integers(3, 7))
    rs = _u(rng, 0.015, 0.04)
    lean = rng.normal(0, 0.08, 2)
    s = np.linspace(0, 1, n + 1)
    stem = np.stack([lean[0] * s**2, lean[1] * s**2, H * s], 1)
    ids = d.chain("stem", "stem", stem, -1)
    d.params.update(num_stem_joints=n, stem_radius=rs)
    d.add(_Part("sweep", ids, 0, path=stem, radii=np.stack([rs * (1 - 0.6 * s)] * 2, 1), caps=("flat", "round")))
    if rng.random() < 0.5:  # pot
        pr = _u(rng, 0.08, 0.18)
        ph = _u(rng, 0.1, 0.25)
        d.add(_Part("sweep", [ids[0]], 3, rigid=True, path=np.array([[0, 0, -ph], [0, 0, 0.02]]), radii=np.array([[0.8 * pr] * 2, [pr] * 2]), caps=("flat", "flat")))
    nb = int(rng.integers(1, 6))
    leaf_len = _u(rng, 0.08, 0.25)
    d.params.update(num_branches=nb, leaf_length=leaf_len)
    for b in range(nb):
        k = int(rng.integers(1, n))
        az = _u(rng, -math.pi, math.pi)
        el = _u(rng, 0.2, 1.0)
        L = _u(rng, 0.15, 0.45)
        out = np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
        a = stem[k]
        pts = np.stack([a, a + 0.5 * L * out, a + L * out + (0, 0, 0.1 * L)])
        bids = d.chain("branch", f"branch{b}_", pts, ids[k])
        rb = 0.6 * rs * (1 - 0.6 * s[k])
        d.limb(pts, [rb, 0.8 * rb, 0.5 * rb], bids, ids[k], 0, up=(0, 0, 1))
        _leaf(d, rng, pts[-1], out, leaf_len, bids[-1])
    top = stem[-1]
    if rng.random() < 0.5:
        fr = _u(rng, 0.05, 0.12)
        path, rad = _ellipsoid_profile(top - (0, 0, 0.3 * fr), top + (0, 0, 1.5 * fr), (fr, fr))
        d.add(_Part("sweep", [ids[-1]], 2, rigid=True, path=path, radii=rad))
    else:
        _leaf(d, rng, top, np.array([0.3, 0, 1.0]) / math.hypot(0.3, 1.0), leaf_len, ids[-1])


def _leaf(d: _Design, rng, base, out, length, joint) -> None:
    droop = _u(rng, -0.4, 0.3)
    dirv = out + np.array([0, 0, droop])
    dirv /= np.linalg.norm(dirv)
    tip = base + length * dirv
    side = np.cross(dirv, [0.0, 0.0, 1.0])  # the blade spans `side` and is thin across it
    if np.linalg.norm(side) < 1e-6:
        side = np.array([0.0, 1.0, 0.0])
    path, rad = _ellipsoid_profile(base, tip, (0.35 * length, 0.01))
    d.add(_Part("sweep", [joint], 2, rigid=True, path=path, radii=rad, up=tuple(side)))


def _design_machine(rng, d: _Design) -> None:
    d.separate = True
    bw, bd, bh = _u(rng, 0.4, 1.0), _u(rng, 0.3, 0.8), _u(rng, 0.15, 0.5)
    wheels = bool(rng.random() < 0.6)
    rw = _u(rng, 0.08, 0.2) if wheels else 0.0
    z0 = rw + 0.5 * bh if wheels else 0.5 * bh
    root = d.joint("body", (0, 0, z0), -1, (0, 0, z0 + 0.5 * bh))
    d.params.update(body=[bw, bd, bh], wheels=wheels)
    d.add(_Part("box", [root], 0, rigid=True, center=np.array([0, 0, z0]), extents=np.array([bw, bd, bh]), rotation=np.eye(3)))
    if wheels:
        nw = 2 if rng.random() < 0.3 else 4
        xs = [0.0] if nw == 2 else [-0.35 * bw, 0.35 * bw]
        ww = _u(rng, 0.04, 0.1)
        d.chains["wheel"] = []
        for i, x in enumerate(xs):
            for side in (1, -1):
                c = np.array([x, side * (0.5 * bd + 0.6 * ww), rw])
                j = d.joint(f"wheel{i}_{'l' if side > 0 else 'r'}", c, root, c + (0, side * ww, 0))
                d.chains["wheel"].append([j])
                d.add(_Part("sweep", [j], 3, rigid=True, path=np.stack([c - (0, side * ww / 2, 0), c + (0, side * ww / 2, 0)]), radii=np.array([[rw, rw]] * 2), up=(1, 0, 0), caps=("flat", "flat")))
    if not wheels or rng.random() < 0.8:  # manipulator arm
        nseg = int(rng.integers(2, 4))
        top = np.array([_u(rng, -0.2, 0.2) * bw, 0, z0 + 0.5 * bh])
        tr = _u(rng, 0.06, 0.12)
        th = _u(rng, 0.05, 0.12)
        base_j = d.joint("arm_base", top, root, top + (0, 0, th))
        d.add(_Part("sweep", [base_j], 1, rigid=True, path=np.stack([top, top + (0, 0, th)]), radii=np.array([[tr, tr]] * 2), caps=("flat", "flat")))
        pts = [top + (0, 0, th)]
        heading = _u(rng, 0.3, 1.4)
        for k in range(nseg):
            L = _u(rng, 0.2, 0.5)
            dirv = np.array([math.cos(heading), 0, math.sin(heading)])
            pts.append(pts[-1] + L * dirv)
            heading -= _u(rng, 0.3, 1.2)
        pts = np.stack(pts)
        ids = d.chain("arm_chain", "arm", pts, base_j)
        d.chains["arm_chain"][-1] = [base_j] + ids
        ra = 0.5 * tr
        for k, j in enumerate(ids):
            a, b = pts[k], pts[k + 1]
            if rng.random() < 0.5:
                L = float(np.linalg.norm(b - a))
                x = (b - a) / L
                y = np.array([0.0, 1.0, 0.0])
                R = np.stack([x, y, np.cross(x, y)], 1)
                d.add(_Part("box", [j], 1, rigid=True, center=0.5 * (a + b), extents=np.array([L + ra, 1.6 * ra, 1.6 * ra]), rotation=R))
            else:
                d.add(_Part("sweep", [j], 1, rigid=True, path=np.stack([a, b]), radii=np.array([[ra, ra]] * 2), up=(0, 1, 0)))
            ra *= 0.85
        # end effector: a lamp cone or a gripper block
        tip = pts[-1]
        dirv = (pts[-1] - pts[-2]) / np.linalg.norm(pts[-1] - pts[-2])
        if rng.random() < 0.5:
            d.add(_Part("sweep", [ids[-1]], 2, rigid=True, path=np.stack([tip, tip + 0.15 * dirv]), radii=np.array([[0.02, 0.02], [0.1, 0.1]]), up=(0, 1, 0), caps=("round", "flat")))
        else:
            R = np.stack([dirv, [0.0, 1.0, 0.0], np.cross(dirv, [0.0, 1.0, 0.0])], 1)
            d.add(_Part("box", [ids[-1]], 2, rigid=True, center=tip + 0.05 * dirv, extents=np.array([0.1, 0.16, 0.06]), rotation=R))
    if rng.random() < 0.4:  # static chimney / antenna
        c = np.array([_u(rng, -0.4, 0.4) * bw, _u(rng, -0.3, 0.3) * bd, z0 + 0.5 * bh])
        d.add(_Part("sweep", [root], 3, rigid=True, path=np.stack([c, c + (0, 0, _u(rng, 0.1, 0.3))]), radii=np.array([[0.03, 0.03]] * 2), caps=("flat", "flat")))


def _neck_and_head(rng, d: _Design, parent: int, base, rt, elev, neck_len=(0.15, 0.55), head_pitch=(-0.7, 0.1), beak=False) -> None:
    e = _u(rng, *elev)
    Ln = _u(rng, *neck_len)
    dirv = np.array([math.cos(e), 0, math.sin(e)])
    pts = np.stack([base, base + 0.5 * Ln * dirv, base + Ln * dirv])
    hr = max(_u(rng, 0.55, 1.0) * rt, 0.05)
    hl = hr * _u(rng, 1.0, 2.2)
    g = _u(rng, *head_pitch)
    hd = np.array([math.cos(g), 0, math.sin(g)])
    head_pos = pts[-1]
    ids = d.chain("neck", "neck", pts, parent)
    hj = d.joint("head", head_pos, ids[-1], head_pos + hl * hd)
    d.chains["neck"][-1].append(hj)
    rn = _u(rng, 0.35, 0.7) * rt
    d.limb(pts, [rn, 0.9 * rn, 0.8 * rn], ids, parent, 0, up=(0, 1, 0), start_inside=base - 0.5 * rt * dirv)
    hshape = str(rng.choice(["ellipsoid", "capsule", "box"], p=[0.6, 0.25, 0.15]))
    _body(d, rng, head_pos - 0.35 * hl * hd, head_pos + hl * hd, (hr, hr * _u(rng, 0.8, 1.1)), [hj], group=3, shape=hshape)
    d.parts[-1].rigid = True
    if beak:
        a = head_pos + 0.9 * hl * hd
        d.add(_Part("sweep", [hj], 2, rigid=True, path=np.stack([a, a + _u(rng, 0.6, 1.5) * hr * hd]), radii=np.array([[0.4 * hr] * 2, [0.0, 0.0]]), up=(0, 0, 1)))
    elif rng.random() < 0.5:  # ears or horns
        for side in (1, -1):
            a = head_pos + 0.2 * hl * hd + np.array([0, side * 0.6 * hr, 0.6 * hr])
            tip = a + np.array([-0.1 * hr, side * 0.3 * hr, _u(rng, 0.6, 1.4) * hr])
            d.add(_Part("sweep", [hj], 2, rigid=True, path=np.stack([a, tip]), radii=np.array([[0.3 * hr, 0.15 * hr], [0.0, 0.0]]), up=(1, 0, 0)))
    d.params.update(neck_length=Ln, head_radius=hr)


def _tail(rng, d: _Design, parent: int, base, rt, length) -> None:
    n = int(rng.integers(3, 7))
    L = _u(rng, *length)
    e = _u(rng, -0.6, 0.9)
    curl = _u(rng, -0.8, 0.8)
    pts = [np.asarray(base, float)]
    for k in range(n):
        a = e + curl * k / max(n - 1, 1)
        pts.append(pts[-1] + (L / n) * np.array([-math.cos(a), 0, math.sin(a)]))
    pts = np.stack(pts)
    ids = d.chain("tail", "tail", pts, parent)
    r0 = _u(rng, 0.15, 0.45) * rt
    rad = np.linspace(r0, 0.15 * r0, n + 1)
    d.limb(pts, rad, ids, parent, 1, up=(0, 1, 0), start_inside=base + (0.5 * rt, 0, 0))
    d.params.update(tail_joints=n, tail_length=L)


_DESIGNERS = {
    "primitive": _design_primitive,
    "quadruped": _design_quadruped,
    "biped": _design_biped,
    "bird": _design_bird,
    "insect": _design_insect,
    "fish": _design_fish,
    "snake": _design_snake,
    "plant": _design_plant,
    "machine": _design_machine,
}


# =========================================================================== tessellation
def _chaikin(X: np.ndarray, iters: int) -> np.ndarray:
    for _ in range(iters):
        if len(X) < 3:
            return X
        q = 0.75 * X[:-1] + 0.25 * X[1:]
        r = 0.25 * X[:-1] + 0.75 * X[1:]
        mid = np.stack([q, r], 1).reshape(-1, X.shape[1])
        X = np.concatenate([X[:1], mid[1:-1], X[-1:]])
    return X


def _sweep(path: np.ndarray, radii: np.ndarray, h: float, up, caps) -> tuple[np.ndarray, np.ndarray]:
    """Closed tube along a smoothed polyline: rings of elliptic cross-section, capped.

    Returns (vertices [n, 3], faces [m, 3]) with outward (counter-clockwise) faces.
    """
    X = np.concatenate([path, radii], 1)
    X = _chaikin(X, 2)
    metric = np.concatenate([X[:, :3], X[:, 3:].mean(1, keepdims=True)], 1)
    seg = np.linalg.norm(np.diff(metric, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(3, int(math.ceil(s[-1] / h)) + 1)
    su = np.linspace(0.0, s[-1], n)
    X = np.stack([np.interp(su, s, X[:, i]) for i in range(5)], 1)
    C, R = X[:, :3], X[:, 3:]
    tang = np.gradient(C, axis=0)
    tn = np.linalg.norm(tang, axis=1, keepdims=True)
    tang = tang / np.maximum(tn, 1e-12)
    # parallel-transported cross-section frames
    U = np.empty_like(C)
    hint = np.asarray(up, dtype=np.float64)
    u = hint - np.dot(hint, tang[0]) * tang[0]
    if np.linalg.norm(u) < 1e-6 * max(np.linalg.norm(hint), 1e-12):
        alt = np.eye(3)[np.argmin(np.abs(tang[0]))]
        u = alt - np.dot(alt, tang[0]) * tang[0]
    u /= np.linalg.norm(u)
    for k in range(n):
        u = u - np.dot(u, tang[k]) * tang[k]
        u /= np.linalg.norm(u)
        U[k] = u
    W = np.cross(tang, U)
    rmax = float(R.max())
    nsec = int(np.clip(round(2 * math.pi * float(R.mean(1).max()) / h), 6, 24))
    if rmax <= 0:
        raise ValueError("sweep with zero radius")
    eps = 1e-6 * rmax
    rings: list[tuple] = []  # ("ring", center, u, w, a, b) or ("pole", point)

    def cap(end: int, kind: str) -> list[tuple]:
        c, uu, ww, r = C[end], U[end], W[end], R[end]
        t = tang[end] * (1 if end == -1 else -1)  # outward along the path
        rm = float(r.mean())
        if kind == "round":
            m = max(2, int(math.ceil(0.5 * math.pi * rm / h)))
            out = [("ring", c + t * rm * math.sin(0.5 * math.pi * i / m), uu, ww, *(r * math.cos(0.5 * math.pi * i / m))) for i in range(1, m)]
            return out + [("pole", c + t * rm)]
        m = max(1, int(math.ceil(rm / h)))
        return [("ring", c, uu, ww, *(r * (1 - i / m))) for i in range(1, m)] + [("pole", c)]

    body = [("ring", C[k], U[k], W[k], R[k, 0], R[k, 1]) for k in range(n)]
    if R[0].max() <= eps:
        body[0] = ("pole", C[0])
        start = []
    else:
        start = cap(0, caps[0])[::-1]
    if R[-1].max() <= eps:
        body[-1] = ("pole", C[-1])
        end = []
    else:
        end = cap(-1, caps[1])
    rings = start + body + end

    theta = 2 * math.pi * np.arange(nsec) / nsec
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    verts, faces, prev = [], [], None
    count = 0
    for r in rings:
        if r[0] == "pole":
            idx = np.array([count])
            verts.append(np.asarray(r[1])[None])
        else:
            _, c, uu, ww, a, b = r
            verts.append(c + a * cos * uu + b * sin * ww)
            idx = count + np.arange(nsec)
        count += len(idx)
        if prev is not None:
            if len(prev) == 1 and len(idx) > 1:  # fan from a start pole
                faces.append(np.stack([np.full(nsec, prev[0]), np.roll(idx, -1), idx], 1))
            elif len(idx) == 1 and len(prev) > 1:  # fan to an end pole
                faces.append(np.stack([prev, np.roll(prev, -1), np.full(nsec, idx[0])], 1))
            elif len(idx) > 1:
                a0, a1, b0, b1 = prev, np.roll(prev, -1), idx, np.roll(idx, -1)
                faces.append(np.concatenate([np.stack([a0, a1, b1], 1), np.stack([a0, b1, b0], 1)]))
        prev = idx
    V = np.concatenate(verts)
    F = np.concatenate(faces).astype(np.int64)
    return V, _orient_outward(V, F)


def _orient_outward(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    vol = np.einsum("ij,ij->i", a, np.cross(b - a, c - a)).sum()
    return F if vol >= 0 else F[:, ::-1].copy()


def _trimesh_part(part: _Part, h: float) -> tuple[np.ndarray, np.ndarray]:
    import trimesh
    from trimesh import remesh

    if part.shape == "box":
        m = trimesh.creation.box(extents=part.extents)
        v, f = np.asarray(m.vertices), np.asarray(m.faces)
    else:
        p = part.prim
        t = p["type"]
        if t == "box":
            m = trimesh.creation.box(extents=(1.4, 1.4, 1.4))
        elif t == "sphere":
            m = trimesh.creation.icosphere(subdivisions=1, radius=1.0)
        elif t == "capsule":
            m = trimesh.creation.capsule(height=p["height"], radius=0.7, count=[12, 12])
        elif t == "cylinder":
            m = trimesh.creation.cylinder(radius=0.7, height=p["height"], sections=20)
        elif t == "cone":
            m = trimesh.creation.cone(radius=0.8, height=p["height"], sections=20)
        else:
            m = trimesh.creation.torus(major_radius=0.8, minor_radius=p["minor"], major_sections=24, minor_sections=12)
        v = np.asarray(m.vertices) * np.asarray(p["scale"])
        f = np.asarray(m.faces)
    v, f = remesh.subdivide_to_size(v, f, max_edge=h, max_iter=12)
    v = v @ part.rotation.T + part.center
    return np.asarray(v, dtype=np.float64), _orient_outward(v, np.asarray(f, dtype=np.int64))


def _tessellate(design: _Design, h: float):
    verts, faces, part_ids, offset = [], [], [], 0
    for i, part in enumerate(design.parts):
        if part.shape == "sweep":
            v, f = _sweep(part.path, part.radii, h, part.up, part.caps)
        else:
            v, f = _trimesh_part(part, h)
        verts.append(v)
        faces.append(f + offset)
        part_ids.append(np.full(len(v), i))
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(part_ids)


def _segment_distances(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, 3] points, [k, 3] segment ends -> [n, k] distances."""
    ab = b - a
    L2 = np.maximum((ab**2).sum(1), 1e-18)
    t = np.clip(np.einsum("nkc,kc->nk", x[:, None] - a[None], ab) / L2, 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(x[:, None] - closest, axis=-1)


def _skin_weights(design: _Design, V: np.ndarray, part_ids: np.ndarray, size: float) -> np.ndarray:
    """Inverse-distance (power 4) weights to the bones each part allows, rows normalized."""
    skel = design.skeleton
    W = np.zeros((len(V), skel.num_joints))
    eps = 0.02 * size
    for i, part in enumerate(design.parts):
        sel = part_ids == i
        js = list(dict.fromkeys(part.joints))
        if part.rigid or len(js) == 1:
            W[sel, js[0]] = 1.0
            continue
        d = _segment_distances(V[sel], skel.positions[js], skel.tails[js])
        w = (d + eps) ** -4.0
        w /= w.sum(1, keepdims=True)
        W[np.ix_(sel, js)] = w
    return W


def _build(design: _Design, coloring: dict, yaw: float, max_vertices: int) -> ProceduralAsset:
    size = design.extent()
    h = size / 50.0
    for _ in range(40):
        V, F, part_ids = _tessellate(design, h)
        if len(V) <= max_vertices:
            break
        h *= 1.15
    else:
        raise RuntimeError(f"random_asset: could not fit {design.kind} into {max_vertices} vertices")
    W = _skin_weights(design, V, part_ids, size) if design.skeleton is not None else None
    colors = _apply_coloring(coloring, design, V, part_ids)
    c, s = math.cos(yaw), math.sin(yaw)
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    skel = design.skeleton.transformed(Rz) if design.skeleton is not None else None
    mesh = MeshData(vertices=V @ Rz.T, faces=F, source=f"<procedural {design.kind}>", **colors)
    info = {
        "kind": design.kind,
        "assembly": "separate" if design.separate else "fused",
        "num_parts": len(design.parts),
        "yaw": yaw,
        "edge_length": h,
        "coloring": coloring["info"],
        "params": to_jsonable(design.params, 6),
    }
    if skel is not None:
        info["num_joints"] = skel.num_joints
        info["chains"] = {k: len(v) for k, v in skel.chains.items()}
    return ProceduralAsset(mesh=mesh, skeleton=skel, weights=W, parts=part_ids, kind=design.kind, info=info, frame=Rz)


# =========================================================================== colours
PATTERNS = ("plain", "stripes", "checker", "spots", "noise")
PATTERN_PROBS = (0.35, 0.2, 0.15, 0.15, 0.15)
TEXTURE_PROB = 0.3
"""Probability that an asset gets UVs + a texture atlas instead of vertex colours."""


def _random_color(rng) -> np.ndarray:
    h, s, v = rng.random(), _u(rng, 0.1, 0.9), _u(rng, 0.25, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _draw_coloring(rng, design: _Design) -> dict:
    groups = sorted({p.group for p in design.parts})
    mode = "texture" if rng.random() < TEXTURE_PROB else "vertex"
    base = _random_color(rng)
    styles = {}
    for g in groups:
        c1 = base if (g == 0 or rng.random() < 0.4) else _random_color(rng)
        c2 = _random_color(rng)
        pattern = str(rng.choice(PATTERNS, p=PATTERN_PROBS))
        dim = 2 if mode == "texture" else 3
        styles[g] = {
            "c1": c1,
            "c2": c2,
            "pattern": pattern,
            "freq": _u(rng, 2.0, 9.0),
            "dir": _unit(rng.normal(size=dim)),
            "phase": _u(rng, 0, 2 * math.pi),
            "sharp": _u(rng, 1.0, 8.0),
            "spots": rng.uniform(-0.5, 0.5, (int(rng.integers(4, 16)), dim)),
            "spot_r": _u(rng, 0.05, 0.15),
            "waves": [(_unit(rng.normal(size=dim)), _u(rng, 1.0, 6.0), _u(rng, 0, 2 * math.pi)) for _ in range(4)],
            "proj": _random_rotation(rng)[:, :2],
        }
    return {
        "mode": mode,
        "styles": styles,
        "info": {"mode": mode, "patterns": {str(g): styles[g]["pattern"] for g in groups}},
    }


def _pattern(st: dict, p: np.ndarray) -> np.ndarray:
    """[n, d] coordinates (~unit range) -> [n] mix factor in 0..1."""
    kind = st["pattern"]
    f, k = st["freq"], st["sharp"]
    if kind == "plain":
        return np.zeros(len(p))
    if kind == "stripes":
        return 0.5 + 0.5 * np.tanh(k * np.sin(2 * math.pi * f * (p @ st["dir"]) + st["phase"]))
    if kind == "checker":
        prod = np.prod(np.sin(2 * math.pi * 0.5 * f * p + st["phase"]), axis=1)
        return 0.5 + 0.5 * np.tanh(4 * k * prod)
    if kind == "spots":
        c = st["spots"]
        d = np.linalg.norm(p[:, None] - c[None], axis=-1).min(1)
        return np.clip((st["spot_r"] - d) / (0.3 * st["spot_r"]) + 0.5, 0, 1)
    n = sum(np.sin(2 * math.pi * fr * (p @ dv) + ph) for dv, fr, ph in st["waves"]) / 2.0
    return 0.5 + 0.5 * np.tanh(k * n)


def _apply_coloring(coloring: dict, design: _Design, V: np.ndarray, part_ids: np.ndarray) -> dict:
    styles = coloring["styles"]
    groups = np.array([design.parts[i].group for i in range(len(design.parts))])[part_ids]  # [V]
    lo, hi = V.min(0), V.max(0)
    size = float(np.linalg.norm(hi - lo))
    p3 = (V - 0.5 * (lo + hi)) / size
    if coloring["mode"] == "vertex":
        vc = np.zeros((len(V), 3))
        for g, st in styles.items():
            sel = groups == g
            m = _pattern(st, p3[sel])[:, None]
            vc[sel] = (1 - m) * st["c1"] + m * st["c2"]
        return {"vertex_colors": np.clip(vc, 0, 1)}
    # texture atlas: one tile per colour group, planar-projected UVs inside the tile
    keys = sorted(styles)
    K = int(math.ceil(math.sqrt(len(keys))))
    tile = 128 // K if K > 1 else 128
    size_px = tile * K
    tex = np.zeros((size_px, size_px, 3))
    uvs = np.zeros((len(V), 2))
    margin = 0.06
    yy, xx = np.mgrid[0:tile, 0:tile]
    local = np.stack([(xx.ravel() + 0.5) / tile, 1 - (yy.ravel() + 0.5) / tile], 1)  # tile-local uv
    for n, g in enumerate(keys):
        st = styles[g]
        row, col = divmod(n, K)
        m = _pattern(st, local - 0.5)[:, None]
        img = (1 - m) * st["c1"] + m * st["c2"]
        tex[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile] = img.reshape(tile, tile, 3)
        sel = groups == g
        q = p3[sel] @ st["proj"]  # [n, 2]
        q = (q - q.min(0)) / np.maximum(q.max(0) - q.min(0), 1e-9)
        q = margin + (1 - 2 * margin) * q
        uvs[sel, 0] = (col + q[:, 0]) / K
        uvs[sel, 1] = 1 - (row + 1 - q[:, 1]) / K
    return {"uvs": uvs, "texture": np.round(np.clip(tex, 0, 1) * 255).astype(np.uint8)}


# =========================================================================== helpers
def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _random_rotation(rng) -> np.ndarray:
    q = _unit(rng.normal(size=4))
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _connected_components(num_vertices: int, faces: np.ndarray) -> np.ndarray:
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, dtype=np.int64)
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    A = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(num_vertices, num_vertices))
    return connected_components(A, directed=False)[1].astype(np.int64)


