"""From stored data-engine samples to VAE inputs and exact targets.

``prepare_vae_batch`` turns samples (dicts of arrays, as read from the shards) into
stacked tensors: rest points, displacements, anchors and their mesh-guided neighbours,
canonical Gaussians and the exact per-frame deltas from the face bindings. Random
subsets of frames, points and Gaussians (training) come from a generator seeded by
(sample seed, step), so a sample is prepared identically whichever batch, rank or
worker it lands in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gvf_core.data.sample import bound_from_sample
from gvf_core.gaussians import Gaussians
from gvf_core.geometry import farthest_point_sampling
from gvf_core.models.vae import mesh_guided_interpolation, state_deltas


@dataclass
class VAEBatch:
    rest_points: Tensor  # [B, P, 3]
    displacements: Tensor  # [B, T, P, 3]
    anchors: Tensor  # [B, L, 3]
    neighbours: tuple[Tensor, Tensor]  # [B, L, K] indices into the P points, weights
    anchor_index: Tensor  # [B, L] where the anchors are among the decoded Gaussians
    canonical: Gaussians  # [B, N] (N = the decoded subset)
    deltas: Tensor  # [B, T, N, 14] exact targets
    frames: Tensor  # [B, T] frame indices used

    def to(self, device) -> "VAEBatch":
        return VAEBatch(
            self.rest_points.to(device), self.displacements.to(device), self.anchors.to(device),
            tuple(t.to(device) for t in self.neighbours), self.anchor_index.to(device),
            self.canonical.to(device), self.deltas.to(device), self.frames.to(device),
        )


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def anchor_indices(means: Tensor, num: int) -> Tensor:
    """The L anchors: farthest-point samples of the canonical Gaussian positions (seed 0)."""
    return torch.as_tensor(farthest_point_sampling(means.detach().cpu().numpy(), num, seed=0)).long()


def rest_points_of(sample: dict, num_points: int) -> Tensor:
    """[P, 3] the first ``num_points`` surface points of a stored sample at its rest pose: the
    points the VAE encoded the sample through (:func:`prepare_sample` with all frames)."""
    rest = _t(sample["rest_vertices"]).float()
    faces = _t(sample["faces"]).long()
    tri = rest[faces[_t(sample["pts_face_idx"][:num_points]).long()]]  # [P, 3, 3]
    return (_t(sample["pts_bary"][:num_points]).float()[:, :, None] * tri).sum(1)


def prepare_sample(
    sample: dict,
    num_latents: int,
    num_points: int,
    knn: int,
    beta: float,
    frames: int | None = None,
    gaussians: int | None = None,
    step: int = 0,
) -> dict:
    """One sample's VAE inputs; ``frames``/``gaussians`` pick random subsets (None: all)."""
    seed = int(sample["meta"]["seed"]) if "meta" in sample else 0
    gen = torch.Generator().manual_seed(hash((seed, step)) & 0x7FFFFFFF)
    verts = _t(sample["vertices"]).float()  # [T, V, 3]
    T = verts.shape[0]
    frame_idx = torch.arange(T) if frames is None or frames >= T else torch.sort(torch.randperm(T, generator=gen)[:frames]).values

    pts_face = _t(sample["pts_face_idx"]).long()
    pts_bary = _t(sample["pts_bary"]).float()
    if num_points < pts_face.shape[0]:
        keep = torch.arange(num_points) if frames is None else torch.randperm(pts_face.shape[0], generator=gen)[:num_points]
        pts_face, pts_bary = pts_face[keep], pts_bary[keep]
    faces = _t(sample["faces"]).long()
    tri = verts[:, faces[pts_face]]  # [T, P, 3, 3]
    points = (pts_bary[None, :, :, None] * tri).sum(-2)  # [T, P, 3]
    rest_points = points[0]
    displacements = points[frame_idx] - rest_points  # [T', P, 3]

    bound = bound_from_sample(sample)
    canonical = bound.canonical  # [N]
    states = bound.gaussians_at(verts[frame_idx])  # [T', N]
    anchors_idx = anchor_indices(canonical.means, num_latents)
    N = canonical.num
    if gaussians is not None and gaussians < N:  # training: the anchors first, then a random subset
        decode_idx = torch.cat([anchors_idx, torch.randperm(N, generator=gen)[:gaussians]])
        anchor_pos = torch.arange(num_latents)
    else:  # every Gaussian once, in order
        decode_idx = torch.arange(N)
        anchor_pos = anchors_idx
    canonical_sub = canonical.select(decode_idx)
    deltas = state_deltas(canonical_sub, states.select(decode_idx))  # [T', n, 14]
    anchors = canonical.means[anchors_idx]
    idx, w = mesh_guided_interpolation(anchors[None], rest_points[None], knn, beta)
    return {
        "rest_points": rest_points, "displacements": displacements, "anchors": anchors,
        "neighbours": (idx[0], w[0]), "anchor_index": anchor_pos,
        "canonical": canonical_sub, "deltas": deltas, "frames": frame_idx,
    }


def stack(prepared: list[dict]) -> VAEBatch:
    return VAEBatch(
        rest_points=torch.stack([p["rest_points"] for p in prepared]),
        displacements=torch.stack([p["displacements"] for p in prepared]),
        anchors=torch.stack([p["anchors"] for p in prepared]),
        neighbours=(torch.stack([p["neighbours"][0] for p in prepared]), torch.stack([p["neighbours"][1] for p in prepared])),
        anchor_index=torch.stack([p["anchor_index"] for p in prepared]),
        canonical=Gaussians.stack([p["canonical"] for p in prepared]),
        deltas=torch.stack([p["deltas"] for p in prepared]),
        frames=torch.stack([p["frames"] for p in prepared]),
    )
