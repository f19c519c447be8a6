"""``gvf eval vae``: reconstruction quality on the fixed validation set.

For every validation sample: encode all frames (posterior mean), decode every canonical
Gaussian, and compare with the exact per-frame Gaussians from the face bindings.
Figures, each beside the static baseline (the canonical Gaussians / rest mesh that never
move):

- mean Gaussian position error / bounding-box diagonal;
- mean vertex error / bounding-box diagonal after write-back (VertexSolver on the
  decoded position deltas), and the write-back ceiling (the solver fed exact deltas);
- PSNR of renders from the sample's extra cameras against renders of the exact states.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from gvf_core.canonical import VertexSolver
from gvf_core.cameras import Cameras
from gvf_core.metrics import psnr
from gvf_core.models.vae import GVFVAE, apply_deltas
from gvf_core.data.sample import bound_from_sample
from gvf_core.models.vae_inputs import prepare_sample, stack
from gvf_core.render import rasterize


@torch.no_grad()
def evaluate_sample(model: GVFVAE, sample: dict, device="cpu") -> dict:
    c = model.config
    prep = prepare_sample(sample, c.num_latents, c.num_points, c.knn, c.interp_beta)
    batch = stack([prep]).to(device)
    deltas, _, _ = model(batch.rest_points, batch.displacements, batch.anchors, batch.neighbours, batch.canonical, sample=False)
    pred = apply_deltas(batch.canonical, deltas)[0]  # [T, N]
    truth = apply_deltas(batch.canonical, batch.deltas)[0]
    rest = np.asarray(sample["rest_vertices"], dtype=np.float64)
    verts = np.asarray(sample["vertices"], dtype=np.float64)  # [T, V, 3]
    diag = float(np.linalg.norm(rest.max(0) - rest.min(0)))

    gauss_err = (pred.means - truth.means).norm(dim=-1).mean().item() / diag
    gauss_static = (truth.means - batch.canonical.means[0]).norm(dim=-1).mean().item() / diag

    bound = bound_from_sample(sample)
    solver = VertexSolver.from_bound(bound)
    pred_delta = (pred.means - batch.canonical.means[0]).cpu().numpy().astype(np.float64)
    true_delta = (truth.means - batch.canonical.means[0]).cpu().numpy().astype(np.float64)
    verts_pred = rest + solver.solve(pred_delta)
    verts_ceiling = rest + solver.solve(true_delta)
    vert_err = float(np.linalg.norm(verts_pred - verts, axis=-1).mean() / diag)
    vert_static = float(np.linalg.norm(verts - rest, axis=-1).mean() / diag)
    vert_ceiling = float(np.linalg.norm(verts_ceiling - verts, axis=-1).mean() / diag)

    frames = torch.as_tensor(np.asarray(sample["extra_frames"]), dtype=torch.long)
    K = torch.as_tensor(np.asarray(sample["extra_K"])).float()
    w2c = torch.as_tensor(np.asarray(sample["extra_w2c"])).float()
    size = int(np.asarray(sample["extra_images"]).shape[-2])
    cams = Cameras(K, w2c)
    static = apply_deltas(batch.canonical, torch.zeros_like(batch.deltas))[0]
    render = lambda g: rasterize(g[frames.to(device)], cams, size, size, background=1.0).rgb  # noqa: E731
    truth_img = render(truth)
    return {
        "gaussian_error": gauss_err, "gaussian_error_static": gauss_static,
        "vertex_error": vert_err, "vertex_error_static": vert_static, "vertex_error_writeback_ceiling": vert_ceiling,
        "psnr": float(psnr(render(pred), truth_img)), "psnr_static": float(psnr(render(static), truth_img)),
    }


def evaluate_vae(model: GVFVAE, data_dir, split: str = "val", limit: int | None = None, device="cpu", progress=None) -> dict:
    from gvf_core.data.dataset import GVFMapDataset

    ds = GVFMapDataset(data_dir, split=split)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise ValueError(f"{data_dir} has no {split} samples; make them with `gvf data make --out {data_dir} --split {split}`")
    model = model.to(device).eval()
    start = time.perf_counter()
    rows = []
    for i in range(n):
        rows.append(evaluate_sample(model, ds[i], device))
        if progress is not None:
            progress(i + 1, n)
    figures = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    figures["vertex_error_ratio_to_static"] = figures["vertex_error"] / max(figures["vertex_error_static"], 1e-12)
    figures["gaussian_error_ratio_to_static"] = figures["gaussian_error"] / max(figures["gaussian_error_static"], 1e-12)
    figures["motion_captured"] = 1.0 - figures["vertex_error_ratio_to_static"]
    figures["goal_vertex_error_ratio"] = 0.10
    figures["meets_goal"] = figures["vertex_error_ratio_to_static"] <= 0.10
    figures["samples"] = n
    figures["split"] = split
    figures["seconds"] = time.perf_counter() - start
    figures["model"] = model.config.to_json()
    return figures
