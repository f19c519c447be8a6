"""Skeletons, forward kinematics and linear blend skinning (numpy, vectorized over frames).

Conventions:
- A joint has a rest *position* (its pivot, the head of its bone in Blender terms) and a
  rest *tail* (the end of its bone). Joints carry no rest orientation: local rotations are
  expressed in the world axes of the rest pose and act about the joint's rest position.
- ``parents[j] < j`` for every non-root joint (parents come first); the root has -1.
- Forward kinematics returns *skinning transforms*: ``G[t, j]`` maps a rest-pose point
  rigidly attached to joint ``j`` to its posed position (the bind inverse is already
  applied), so identity rotations and zero root translation give identity transforms and
  skinning returns the rest mesh exactly.

      A_j   = Translate(p_j) @ R_j @ Translate(-p_j)
      G_j   = G_parent(j) @ A_j                     (non-root)
      G_root = Translate(root_translation) @ A_root
      v'    = sum_j w_vj * (G_j @ [v, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A joint tree in the rest pose."""

    positions: np.ndarray
    """[J, 3] float64 rest positions of the joints (rotation pivots)."""
    parents: np.ndarray
    """[J] int64 parent index, -1 for the root; ``parents[j] < j``."""
    names: tuple[str, ...]
    """[J] joint names, unique."""
    tails: np.ndarray | None = None
    """[J, 3] float64 bone ends (used for skinning weights and bone directions); defaults
    to the position of the only child, else a short stub along the parent's bone."""
    chains: dict[str, list[list[int]]] = field(default_factory=dict)
    """Named joint chains by role, root-to-tip, e.g. ``{"leg": [[hip, knee, ankle], ...],
    "tail": [[...]], "neck": [[...]], "wing": [...], "spine": [...], "wheel": [[w]]}``;
    used by articulated motions to pick what to animate. JSON-able."""

    def __post_init__(self) -> None:
        p = np.asarray(self.positions, dtype=np.float64)
        par = np.asarray(self.parents, dtype=np.int64).reshape(-1)
        J = len(par)
        if p.shape != (J, 3) or J == 0:
            raise ValueError(f"Skeleton: positions must be [J, 3] with J = len(parents) = {J} > 0, got {p.shape}")
        if not np.isfinite(p).all():
            raise ValueError("Skeleton: joint positions must be finite")
        if par[0] != -1 or (par[1:] < 0).any() or (par[1:] >= np.arange(1, J)).any():
            raise ValueError(f"Skeleton: parents must be -1 for joint 0 and satisfy 0 <= parents[j] < j, got {par.tolist()}")
        names = tuple(str(n) for n in self.names)
        if len(names) != J or len(set(names)) != J:
            raise ValueError(f"Skeleton: need {J} unique joint names, got {names}")
        if self.tails is None:
            tails = _default_tails(p, par)
        else:
            tails = np.asarray(self.tails, dtype=np.float64)
            if tails.shape != (J, 3) or not np.isfinite(tails).all():
                raise ValueError(f"Skeleton: tails must be finite [J, 3] = {(J, 3)}, got {tails.shape}")
        chains = {str(k): [[int(i) for i in c] for c in v] for k, v in dict(self.chains).items()}
        for role, cs in chains.items():
            for c in cs:
                if any(not 0 <= i < J for i in c):
                    raise ValueError(f"Skeleton: chain {role!r} {c} has joint indices outside [0, {J})")
        object.__setattr__(self, "positions", p)
        object.__setattr__(self, "parents", par)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "tails", tails)
        object.__setattr__(self, "chains", chains)

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def bone_directions(self) -> np.ndarray:
        """[J, 3] unit rest bone directions (position -> tail); +Z where a bone has no length."""
        d = self.tails - self.positions
        n = np.linalg.norm(d, axis=1, keepdims=True)
        return np.where(n > 1e-12, d / np.maximum(n, 1e-12), np.array([0.0, 0.0, 1.0]))

    def transformed(self, rotation: np.ndarray, translation=np.zeros(3), scale: float = 1.0) -> "Skeleton":
        """The same skeleton after ``x -> scale * x @ rotation.T + translation``."""
        R = np.asarray(rotation, dtype=np.float64)
        t = np.asarray(translation, dtype=np.float64)
        return Skeleton(
            positions=scale * self.positions @ R.T + t,
            parents=self.parents,
            names=self.names,
            tails=scale * self.tails @ R.T + t,
            chains=self.chains,
        )

    def forward_kinematics(self, local_rotations: np.ndarray, root_translation: np.ndarray | None = None) -> np.ndarray:
        """Skinning transforms of every joint and frame.

        Args:
            local_rotations: [T, J, 3, 3] rotation of each joint relative to its parent,
                in rest-pose world axes, about the joint's rest position.
            root_translation: [T, 3] translation applied to the whole tree (default 0).

        Returns:
            [T, J, 4, 4] float64 transforms taking rest-pose points to posed points.
        """
        R = np.asarray(local_rotations, dtype=np.float64)
        J = self.num_joints
        if R.ndim != 4 or R.shape[1:] != (J, 3, 3):
            raise ValueError(f"forward_kinematics: local_rotations must be [T, {J}, 3, 3], got {R.shape}")
        T = R.shape[0]
        A = np.zeros((T, J, 4, 4))
        A[..., :3, :3] = R
        A[..., :3, 3] = self.positions[None] - np.einsum("tjab,jb->tja", R, self.positions)  # p - R p
        A[..., 3, 3] = 1.0
        if root_translation is not None:
            rt = np.asarray(root_translation, dtype=np.float64)
            if rt.shape != (T, 3):
                raise ValueError(f"forward_kinematics: root_translation must be [T, 3] = {(T, 3)}, got {rt.shape}")
            A[:, 0, :3, 3] += rt
        G = np.empty_like(A)
        G[:, 0] = A[:, 0]
        for j in range(1, J):
            G[:, j] = G[:, self.parents[j]] @ A[:, j]
        return G


def _default_tails(positions: np.ndarray, parents: np.ndarray) -> np.ndarray:
    J = len(parents)
    tails = positions.copy()
    children = [[] for _ in range(J)]
    for j in range(1, J):
        children[parents[j]].append(j)
    scale = float(np.linalg.norm(positions.max(0) - positions.min(0))) or 1.0
    for j in range(J):
        if len(children[j]) == 1:
            tails[j] = positions[children[j][0]]
        elif parents[j] >= 0:
            d = positions[j] - positions[parents[j]]
            n = np.linalg.norm(d)
            tails[j] = positions[j] + (0.5 * d if n > 1e-12 else np.array([0.0, 0.0, 0.05 * scale]))
        else:
            tails[j] = positions[j] + np.array([0.0, 0.0, 0.05 * scale])
    return tails


def linear_blend_skinning(rest_vertices: np.ndarray, weights: np.ndarray, skeleton: Skeleton, transforms: np.ndarray) -> np.ndarray:
    """Deform rest vertices with per-frame joint transforms.

    Args:
        rest_vertices: [V, 3] rest-pose positions.
        weights: [V, J] non-negative skinning weights, rows summing to 1.
        skeleton: the skeleton the weights refer to (only its joint count is used).
        transforms: [T, J, 4, 4] skinning transforms (:meth:`Skeleton.forward_kinematics`).

    Returns:
        [T, V, 3] float64 posed vertices.
    """
    v = np.asarray(rest_vertices, dtype=np.float64)
    W = np.asarray(weights, dtype=np.float64)
    G = np.asarray(transforms, dtype=np.float64)
    J = skeleton.num_joints
    if v.ndim != 2 or v.shape[1] != 3 or W.shape != (len(v), J) or G.ndim != 4 or G.shape[1:] != (J, 4, 4):
        raise ValueError(f"linear_blend_skinning: need vertices [V, 3], weights [V, {J}], transforms [T, {J}, 4, 4]; got {v.shape}, {W.shape}, {G.shape}")
    M = np.einsum("vj,tjab->tvab", W, G[:, :, :3, :])  # [T, V, 3, 4] blended affine maps
    return np.einsum("tvab,vb->tva", M[..., :3], v) + M[..., 3]


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """[..., 3] rotation vectors (axis * angle, radians) -> [..., 3, 3] rotation matrices (Rodrigues)."""
    r = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(r, axis=-1)[..., None, None]
    K = np.zeros(r.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -r[..., 2], r[..., 1]
    K[..., 1, 0], K[..., 1, 2] = r[..., 2], -r[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -r[..., 1], r[..., 0]
    # sin(t)/t and (1 - cos t)/t^2, stable at t -> 0
    a = np.sinc(theta / np.pi)
    b = 0.5 * np.sinc(theta / (2 * np.pi)) ** 2
    return np.eye(3) + a * K + b * (K @ K)
