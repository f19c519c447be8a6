"""Canonical Gaussians bound to mesh faces, and their exact state on a deformed mesh.

Every Gaussian lives on one face: its *binding* is the face index, barycentric weights
of the face's corners ``(v0, v1, v2)`` and an offset along the face normal. Its other
parameters are stored in the face's local frame ``(t1, t2, n)`` (see
:mod:`gvf_core.geometry`): an in-plane angle ``alpha`` about ``n`` measured from ``t1``
towards ``t2``, log standard deviations ``(x, y)`` in the plane and ``z`` along ``n``,
opacity logit and colour (SH DC).

On a deformed mesh (:meth:`BoundGaussians.gaussians_at`):

- mean ``= sum_k bary_k v_k' + offset * n'``;
- the face's in-plane deformation is the 2x2 map ``A = E' E^-1``, where ``E`` holds the
  rest edges ``v1 - v0, v2 - v0`` as columns in the rest ``(t1, t2)`` basis and ``E'``
  the deformed edges in the deformed ``(t1', t2')`` basis. ``t1`` follows the edge
  ``v1 - v0``, so ``A`` is the identity for a rigid motion (and upper triangular);
- the rest in-plane covariance ``R(alpha) diag(sx^2, sy^2) R(alpha)^T`` becomes
  ``A (...) A^T``, decomposed in closed form (``theta = 1/2 atan2(2b, a - c)`` and the
  eigenvalues). The axis labels are kept: the local x axis stays the axis with the
  larger variance if it had the larger one at rest (``sx >= sy``), the smaller one
  otherwise, and of the two opposite directions of that axis the one closest to the
  image under ``A`` of the rest major axis is taken (for a needle-thin ellipse the new
  major axis *is* that image). The rest pose returns ``alpha, sx, sy`` exactly (up to
  rounding), and the state moves continuously unless the in-plane ellipse passes
  through a circle, or the deformed major axis becomes perpendicular to the image of
  the rest one (which needs ``A`` to stretch the rest minor axis ``sx / sy`` times more
  than the major one). This is a deliberate departure from snapping to the assignment
  closest to ``alpha`` modulo pi/2: that rule swaps the axes (a 90-degree jump of the
  quaternion and of the two scales) whenever shear turns the ellipse past 45 degrees,
  which happens on the long triangles of a bent capsule; the polar-decomposition angle
  of ``A`` as the reference still flipped there by 180 degrees.
  The normal scale is unchanged;
- rotation ``= frame' @ Rz(theta)``, as a quaternion; opacity and colour are unchanged.

Round in-plane covariances (relative anisotropy below ~100 machine epsilons) get
``theta = alpha`` and equal variances: their rotation about the normal is meaningless,
and this keeps the result (and its gradients) finite and the rest pose exact. Discs
that are round at rest (the default of :func:`mesh_to_gaussians`) take their x axis
along the direction of the stretch once deformed, which is set by the deformation and
can change from frame to frame while the covariance stays continuous: compare
covariances, not quaternions, of round discs.

Everything is torch, vectorized over Gaussians and leading frame axes, differentiable
with respect to the vertices and the local parameters, in float32 or float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gvf_core.gaussians import Gaussians, rgb_to_sh0, rotmat_to_quat
from gvf_core.geometry import face_edges, knn
from gvf_core.mesh import MeshData, sample_colors

from .sampling import SamplingMethod, sample_surface, surface_points


@dataclass(frozen=True, eq=False)
class Binding:
    """Where N Gaussians sit on a mesh."""

    face_idx: Tensor
    """[N] long face index."""
    bary: Tensor
    """[N, 3] barycentric weights of the face's corners (v0, v1, v2), summing to 1."""
    offset: Tensor
    """[N] signed distance along the deformed face normal, in mesh units."""

    def __post_init__(self) -> None:
        N = self.face_idx.shape[0] if self.face_idx.dim() == 1 else -1
        if self.face_idx.dim() != 1 or self.face_idx.dtype != torch.long:
            raise ValueError(f"Binding.face_idx must be a [N] long tensor, got {tuple(self.face_idx.shape)} {self.face_idx.dtype}")
        if tuple(self.bary.shape) != (N, 3) or tuple(self.offset.shape) != (N,):
            raise ValueError(
                f"Binding needs bary [N, 3] and offset [N] with N = {N}; got {tuple(self.bary.shape)} and {tuple(self.offset.shape)}"
            )

    def __len__(self) -> int:
        return self.face_idx.shape[0]

    def select(self, index: Tensor) -> "Binding":
        """Keep the entries picked by a boolean mask or index tensor over N."""
        return Binding(self.face_idx[index], self.bary[index], self.offset[index])

    def to(self, *args, **kwargs) -> "Binding":
        """Move/cast like ``Tensor.to``; ``face_idx`` stays long."""
        device = self.bary.to(*args, **kwargs).device
        return Binding(self.face_idx.to(device), self.bary.to(*args, **kwargs), self.offset.to(*args, **kwargs))


@dataclass(eq=False)
class BoundGaussians:
    """N Gaussians bound to the faces of a mesh, parameters in face-local frames."""

    binding: Binding
    local_angle: Tensor
    """[N] in-plane rotation (radians) about the face normal, from t1 towards t2."""
    local_log_scales: Tensor
    """[N, 3] log standard deviations: x, y in the face plane (rotated by the angle), z along the normal."""
    opacity_logits: Tensor
    """[N] opacity before the sigmoid."""
    sh0: Tensor
    """[N, 3] degree-0 SH colour (see :mod:`gvf_core.gaussians`)."""
    faces: Tensor
    """[F, 3] long mesh faces."""
    rest_vertices: Tensor
    """[V, 3] rest-pose vertices, in the frame the Gaussians live in (normally the model frame)."""

    def __post_init__(self) -> None:
        N = len(self.binding)
        expected = {"local_angle": (N,), "local_log_scales": (N, 3), "opacity_logits": (N,), "sh0": (N, 3)}
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"BoundGaussians.{name} has shape {got}, expected {shape} for N = {N} bindings")
        if self.faces.dim() != 2 or self.faces.shape[1] != 3 or self.faces.dtype != torch.long:
            raise ValueError(f"BoundGaussians.faces must be a [F, 3] long tensor, got {tuple(self.faces.shape)} {self.faces.dtype}")
        if self.rest_vertices.dim() != 2 or self.rest_vertices.shape[1] != 3:
            raise ValueError(f"BoundGaussians.rest_vertices must be [V, 3], got {tuple(self.rest_vertices.shape)}")
        if N and int(self.binding.face_idx.max()) >= self.faces.shape[0]:
            raise ValueError(f"Binding.face_idx refers to face {int(self.binding.face_idx.max())} but the mesh has {self.faces.shape[0]} faces")
        if N:
            corners = self.faces[self.binding.face_idx.to(self.faces.device)]
            e1, e2 = face_edges(self.rest_vertices.detach(), corners.to(self.rest_vertices.device))
            area2 = torch.linalg.cross(e1, e2, dim=-1).norm(dim=-1)  # [N]
            if not bool((area2 > 0).all()):
                raise ValueError(
                    f"{int((area2 <= 0).sum())} Gaussians are bound to faces of zero area at rest, which have no frame; "
                    "bind them to other faces (sample_surface never picks such faces)"
                )

    # ------------------------------------------------------------------ basics
    @property
    def num(self) -> int:
        return len(self.binding)

    @property
    def num_vertices(self) -> int:
        return self.rest_vertices.shape[0]

    @property
    def opacities(self) -> Tensor:
        """[N] opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def canonical(self) -> Gaussians:
        """The Gaussians on the rest pose (``gaussians_at(rest_vertices)``)."""
        return self.gaussians_at(self.rest_vertices)

    def select(self, index: Tensor) -> "BoundGaussians":
        """Keep the Gaussians picked by a boolean mask or index tensor over N (bindings stay aligned)."""
        return BoundGaussians(
            binding=self.binding.select(index),
            local_angle=self.local_angle[index],
            local_log_scales=self.local_log_scales[index],
            opacity_logits=self.opacity_logits[index],
            sh0=self.sh0[index],
            faces=self.faces,
            rest_vertices=self.rest_vertices,
        )

    def to(self, *args, **kwargs) -> "BoundGaussians":
        """Move/cast float tensors like ``Tensor.to``; index tensors stay long."""
        binding = self.binding.to(*args, **kwargs)
        return BoundGaussians(
            binding=binding,
            local_angle=self.local_angle.to(*args, **kwargs),
            local_log_scales=self.local_log_scales.to(*args, **kwargs),
            opacity_logits=self.opacity_logits.to(*args, **kwargs),
            sh0=self.sh0.to(*args, **kwargs),
            faces=self.faces.to(binding.face_idx.device),
            rest_vertices=self.rest_vertices.to(*args, **kwargs),
        )

    # ------------------------------------------------------------------ serialization
    _KEYS = ("face_idx", "bary", "offset", "local_angle", "local_log_scales", "opacity_logits", "sh0", "faces", "rest_vertices")

    def to_dict(self) -> dict[str, Tensor]:
        """Flat dict of contiguous tensors (safetensors-ready)."""
        b = self.binding
        values = (b.face_idx, b.bary, b.offset, self.local_angle, self.local_log_scales, self.opacity_logits, self.sh0, self.faces, self.rest_vertices)
        return {k: v.detach().contiguous() for k, v in zip(self._KEYS, values)}

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> "BoundGaussians":
        missing = [k for k in cls._KEYS if k not in d]
        if missing:
            raise ValueError(f"BoundGaussians.from_dict: missing {missing}; the file was not written by BoundGaussians.to_dict")
        return cls(
            binding=Binding(d["face_idx"].long(), d["bary"], d["offset"]),
            local_angle=d["local_angle"],
            local_log_scales=d["local_log_scales"],
            opacity_logits=d["opacity_logits"],
            sh0=d["sh0"],
            faces=d["faces"].long(),
            rest_vertices=d["rest_vertices"],
        )

    # ------------------------------------------------------------------ deformation
    def gaussians_at(self, vertices: Tensor) -> Gaussians:
        """Exact Gaussians on the mesh posed at ``vertices``.

        Args:
            vertices: [..., V, 3] float tensor (any leading frame/batch axes), same frame
                as ``rest_vertices``.

        Returns:
            Gaussians with leading shape ``[..., N]``, in the dtype of ``vertices``.
        """
        V = self.num_vertices
        if not isinstance(vertices, Tensor) or vertices.dim() < 2 or tuple(vertices.shape[-2:]) != (V, 3):
            shape = tuple(vertices.shape) if isinstance(vertices, Tensor) else type(vertices).__name__
            raise ValueError(f"gaussians_at needs a vertices tensor [..., {V}, 3] (the bound mesh has V = {V}); got {shape}")
        if not vertices.is_floating_point():
            raise ValueError(f"gaussians_at needs float vertices, got {vertices.dtype}")
        dtype, device = vertices.dtype, vertices.device
        lead = vertices.shape[:-2]
        N = self.num

        corners = self.faces.to(device)[self.binding.face_idx.to(device)]  # [N, 3] vertex ids per Gaussian
        bary = self.binding.bary.to(device, dtype)  # [N, 3]
        offset = self.binding.offset.to(device, dtype)  # [N]
        alpha = self.local_angle.to(device, dtype)  # [N]
        log_s = self.local_log_scales.to(device, dtype)  # [N, 3]

        # deformed and rest face frames, edges in tangent coordinates (upper triangular)
        t1, t2, n, d11, d12, d22 = _tangent_frame(*face_edges(vertices, corners))  # [..., N, 3] x3, [..., N] x3
        _, _, _, r11, r12, r22 = _tangent_frame(*face_edges(self.rest_vertices.to(device, dtype), corners))  # [N] x3

        # means
        v_corners = vertices[..., corners, :]  # [..., N, 3 corners, 3]
        means = (bary[..., None] * v_corners).sum(-2) + offset[..., None] * n  # [..., N, 3]

        # in-plane deformation A = E' E^-1 (both upper triangular)
        A = _upper2(d11 / r11, (d12 - d11 * r12 / r11) / r22, d22 / r22)  # [..., N, 2, 2]
        ca, sa = torch.cos(alpha), torch.sin(alpha)
        R_alpha = torch.stack([torch.stack([ca, -sa], -1), torch.stack([sa, ca], -1)], -2)  # [N, 2, 2]
        B = R_alpha.transpose(-1, -2) @ A @ R_alpha  # [..., N, 2, 2]: A in the rest ellipse's axes
        M = B * log_s[..., None, :2].exp()  # [..., N, 2, 2] = B diag(sx, sy)
        a = (M[..., 0, :] ** 2).sum(-1)  # [..., N] Sigma'' = M M^T = [[a, b], [b, c]]
        c = (M[..., 1, :] ** 2).sum(-1)
        b = (M[..., 0, :] * M[..., 1, :]).sum(-1)

        # where the rest major axis went: B maps the rest ellipse axes (here e_x, e_y)
        x_is_major = log_s[..., 0] >= log_s[..., 1]  # [N]
        ref_major_x = _safe_atan2(B[..., 1, 0], B[..., 0, 0])  # angle of B e_x
        ref_major_y = _safe_atan2(B[..., 1, 1], B[..., 0, 1]) - math.pi / 2  # angle of B e_y, minus the quarter turn from x to y
        theta_rel, log_var_x, log_var_y = _decompose_sym2(
            a,
            b,
            c,
            log_abs_det=_safe_log((d11 * d22 / (r11 * r22)).abs()) + log_s[..., 0] + log_s[..., 1],
            x_is_major=x_is_major,
            reference=torch.where(x_is_major, ref_major_x, ref_major_y),
        )
        theta = alpha + theta_rel  # [..., N]

        cth, sth = torch.cos(theta)[..., None], torch.sin(theta)[..., None]
        axis_x = cth * t1 + sth * t2  # [..., N, 3]
        axis_y = -sth * t1 + cth * t2
        rotation = torch.stack([axis_x, axis_y, n], dim=-1)  # [..., N, 3, 3] columns = local axes
        quats = rotmat_to_quat(rotation)  # [..., N, 4]

        log_scales = torch.stack([0.5 * log_var_x, 0.5 * log_var_y, log_s[..., 2].expand(*lead, N)], dim=-1)  # [..., N, 3]
        return Gaussians(
            means=means,
            quats=quats,
            log_scales=log_scales,
            opacity_logits=self.opacity_logits.to(device, dtype).expand(*lead, N),
            sh0=self.sh0.to(device, dtype).expand(*lead, N, 3),
        )


def _tangent_frame(e1: Tensor, e2: Tensor):
    """Face frame from edges, and the edges in tangent coordinates.

    Returns t1, t2, n ([..., 3] each) and d11 = t1.e1 = |e1|, d12 = t1.e2, d22 = t2.e2
    (t2.e1 = 0), i.e. E = [[d11, d12], [0, d22]] with the edges as columns.
    """
    n = torch.nn.functional.normalize(torch.linalg.cross(e1, e2, dim=-1), dim=-1)
    t1 = torch.nn.functional.normalize(e1, dim=-1)
    t2 = torch.linalg.cross(n, t1, dim=-1)
    return t1, t2, n, (t1 * e1).sum(-1), (t1 * e2).sum(-1), (t2 * e2).sum(-1)


def _upper2(m00: Tensor, m01: Tensor, m11: Tensor) -> Tensor:
    zero = torch.zeros_like(m00)
    return torch.stack([torch.stack([m00, m01], -1), torch.stack([zero, m11], -1)], -2)


def _safe_atan2(y: Tensor, x: Tensor) -> Tensor:
    """atan2 with a zero (and zero gradient) at the origin instead of NaN gradients."""
    ok = (x != 0) | (y != 0)
    return torch.atan2(torch.where(ok, y, torch.zeros_like(y)), torch.where(ok, x, torch.ones_like(x)))


def _safe_log(x: Tensor) -> Tensor:
    return torch.log(x.clamp_min(torch.finfo(x.dtype).tiny))


def _decompose_sym2(
    a: Tensor, b: Tensor, c: Tensor, log_abs_det: Tensor, x_is_major: Tensor, reference: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form eigen-decomposition of ``[[a, b], [b, c]]`` with a continuous labelling.

    Args:
        a, b, c: [...] entries of the symmetric positive (semi)definite 2x2 matrix.
        log_abs_det: [...] log|det M| where the matrix is ``M M^T`` (its determinant is
            ``exp(2 log_abs_det)``), giving the smaller variance without cancellation.
        x_is_major: [...] bool, whether the local x axis carries the larger variance
            (as it did at rest); the axis labels never swap.
        reference: [...] angle the x axis should stay near: theta is the x axis angle
            closest to it (of the two, pi apart).

    Returns:
        (theta, log variance along the rotated x axis, along y). Near-isotropic input
        gives theta = 0 and equal variances.
    """
    m = 0.5 * (a + c)
    h = 0.5 * (a - c)
    r2 = h * h + b * b
    tol = 100.0 * torch.finfo(a.dtype).eps
    aniso = r2 > (tol * m) ** 2
    # double `where` keeps atan2/sqrt (and their gradients) away from the isotropic point
    r = torch.where(aniso, torch.sqrt(torch.where(aniso, r2, torch.ones_like(r2))), torch.zeros_like(r2))
    major = 0.5 * torch.atan2(torch.where(aniso, b, torch.zeros_like(b)), torch.where(aniso, h, torch.ones_like(h)))  # major axis angle
    log_big = _safe_log(m + r)
    log_small = torch.where(aniso, 2.0 * log_abs_det - log_big, _safe_log(m))
    log_big = torch.where(aniso, log_big, log_small)
    psi = torch.where(x_is_major, major, major + math.pi / 2)  # an angle of the x axis
    theta = psi - math.pi * torch.round((psi - reference) / math.pi)  # the one closest to the reference
    theta = torch.where(aniso, theta, torch.zeros_like(theta))
    return theta, torch.where(x_is_major, log_big, log_small), torch.where(x_is_major, log_small, log_big)


# --------------------------------------------------------------------------- construction
def mesh_to_gaussians(
    mesh: MeshData,
    n: int = 8192,
    seed: int = 0,
    method: SamplingMethod = "blue_noise",
    thickness_ratio: float = 0.1,
    spacing_factor: float = 0.6,
    opacity: float = 0.9,
    dtype: torch.dtype = torch.float32,
) -> BoundGaussians:
    """Canonical Gaussians sampled on a mesh, bound to its faces.

    Gaussians are flat discs in their face plane: isotropic in-plane standard deviation
    ``spacing_factor`` x (mean distance to the 3 nearest other samples), so neighbouring
    discs overlap and the surface renders closed; normal standard deviation
    ``thickness_ratio`` x that; angle 0; offset 0; opacity ``opacity``; colour from
    :func:`gvf_core.mesh.sample_colors`. The Gaussians live in the frame of
    ``mesh.vertices`` (normalize the mesh first for the model frame:
    ``mesh.with_vertices(norm.apply(mesh.vertices))``).
    """
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"mesh_to_gaussians: opacity must be in (0, 1), got {opacity}")
    if thickness_ratio <= 0 or spacing_factor <= 0:
        raise ValueError(f"mesh_to_gaussians: thickness_ratio and spacing_factor must be > 0, got {thickness_ratio}, {spacing_factor}")
    face_idx, bary = sample_surface(mesh, n, seed=seed, method=method)  # [n], [n, 3]
    points = surface_points(mesh.vertices, mesh.faces, face_idx, bary)  # [n, 3]
    rgb = sample_colors(mesh, face_idx, bary)  # [n, 3]

    if n > 1:
        k = min(3, n - 1)
        dist, _ = knn(points, points, k + 1)  # [n, k + 1], column 0 is the point itself
        spacing = dist[:, 1:].mean(1)
        floor = 0.1 * np.median(spacing)
        spacing = np.maximum(spacing, floor if floor > 0 else 1e-3 * mesh.bbox_diagonal)
    else:
        spacing = np.full(1, 0.1 * mesh.bbox_diagonal)
    s = spacing_factor * spacing  # [n] in-plane standard deviation
    log_scales = np.log(np.stack([s, s, thickness_ratio * s], axis=1))  # [n, 3]

    def t(x) -> Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype)

    return BoundGaussians(
        binding=Binding(torch.from_numpy(face_idx).long(), t(bary), torch.zeros(n, dtype=dtype)),
        local_angle=torch.zeros(n, dtype=dtype),
        local_log_scales=t(log_scales),
        opacity_logits=torch.full((n,), math.log(opacity / (1 - opacity)), dtype=dtype),
        sh0=rgb_to_sh0(t(rgb)),
        faces=torch.from_numpy(mesh.faces).long(),
        rest_vertices=t(mesh.vertices),
    )


def prune(bound: BoundGaussians, min_opacity: float = 0.02) -> BoundGaussians:
    """Drop near-transparent Gaussians (opacity < ``min_opacity``), as Lyra does."""
    return bound.select(bound.opacities >= min_opacity)
