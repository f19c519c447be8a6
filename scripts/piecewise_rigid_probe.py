"""How far rigid motions alone go on articulated and combined motions, against ``fast`` (docs/models.md).

For each clip of the chosen motion families the shipped pipeline generates the motion (default
sampler) and ``fast`` refines it; then the 256 Gaussians refinement tracks are split into K parts
(k-means on their track displacements and rest positions, K = 1..4), each part's rigid motion is
fitted to its tracks as refinement fits its rigid transform (``fast``'s settings: hidden tracks
out, Cauchy loss; :func:`gvf_core.pipeline.refine.fit_rigid`), and each rest vertex is moved by the
part of its nearest tracked Gaussian. One JSON line per clip: the vertex error / bounding-box
diagonal of ``static``, ``unrefined``, ``fast`` and ``partsK``, with each K's mean fit residual /
tracked motion (``partsK_ratio``); then ``SUMMARY`` with the means as percentages of unrefined,
and the rule "the K-part motion where its ratio is below R, else fast" over a grid of R.

    python scripts/piecewise_rigid_probe.py --data data/train256 --split train [--families articulated,combo]

Measured 2026-12-06 on the 119 articulated and combo clips of the 256 training clips (``gvf data
make --out data/train256 --count 256 --no-val``): ``fast`` 93.5 % of unrefined; one rigid motion
alone 107.0 %, 2-4 parts 111-115 %; one rigid motion where its fit leaves less than 0.4 of the
tracked motion, else ``fast``, 91.3 %; the better of ``fast`` and one rigid motion per clip
(an oracle) 72.9 %, of ``fast`` and any K 68.8 % (docs/models.md). A measurement, not a
pipeline option.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy.cluster.vq import kmeans2

import gvf_core.pipeline.refine as refine
from gvf_core.eval.animate import _clip_inputs, _samples
from gvf_core.models.rigid_motion import RootTransform
from gvf_core.models.sampler import SamplerConfig
from gvf_core.pipeline.core import generate_motion, load_models
from probe_clips import add_clip_options, clip_error, percent_of_unrefined

PARTS = (1, 2, 3, 4)
RATIOS = (0.2, 0.25, 0.3, 0.35, 0.4)
MIN_PART_POINTS = 6  # a part with fewer tracked points stays at rest


def piecewise_rigid(rest: torch.Tensor, canonical, tracks: refine.TrackTargets, targets: refine.RefineTargets,
                    settings: refine.RefineSettings, parts: int) -> tuple[torch.Tensor, float | None]:
    """(rest vertices [V, 3] moved by ``parts`` rigid motions [T, V, 3], mean fit ratio)."""
    T = tracks.position.shape[0]
    points = canonical.means[tracks.index].float()
    if parts == 1:
        labels = np.zeros(len(points), int)
    else:
        moves = (tracks.position - tracks.position[:1]).permute(1, 0, 2).reshape(len(points), -1).numpy()
        where = points.numpy()
        features = np.concatenate([moves / (moves.std() + 1e-9), where / (where.std() + 1e-9)], 1)
        _, labels = kmeans2(features, parts, seed=0, minit="++")
    nearest = torch.as_tensor(labels)[torch.cdist(rest, points).argmin(1)]  # each vertex's part
    posed = rest[None].repeat(T, 1, 1)
    ratios = []
    for part in range(parts):
        chosen = torch.as_tensor(np.nonzero(labels == part)[0])
        if len(chosen) < MIN_PART_POINTS:
            continue
        sub = refine.TrackTargets(tracks.index[chosen], tracks.position[:, chosen], tracks.weight[:, chosen])
        root = RootTransform(T, points[chosen])
        with torch.enable_grad():
            fit = refine.fit_rigid(root, canonical, sub, targets, settings.rigid_iterations, settings.w_rigid_smooth,
                                   settings.rigid_hidden_weight, settings.rigid_cauchy)
        ratios.append(fit["residual_px"] / max(fit["motion_px"], 1e-9))
        moved = nearest == part
        with torch.no_grad():
            posed[:, moved] = root.apply(rest[moved][None].expand(T, -1, -1), torch.arange(T))
    return posed, (float(np.mean(ratios)) if ratios else None)


def summary(rows: list[dict]) -> dict:
    unrefined, percent = percent_of_unrefined(rows)
    out = {"clips": len(rows), "unrefined": unrefined,
           **{k: percent([r[k] for r in rows]) for k in ("static", "fast", *(f"parts{K}" for K in PARTS))}}
    for K in PARTS:
        out[f"parts{K}_below"] = {
            str(ratio): percent([r[f"parts{K}"] if (r[f"parts{K}_ratio"] is not None and r[f"parts{K}_ratio"] < ratio)
                                 else r["fast"] for r in rows]) for ratio in RATIOS}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_options(parser)
    parser.add_argument("--families", default="articulated,combo", help="comma-separated motion families")
    args = parser.parse_args()
    torch.set_num_threads(1)
    families = set(args.families.split(","))
    models = load_models(None, "cpu")
    fast = refine.refine_settings("fast")
    rows = []
    for arrays, meta, _ in _samples(args.data, args.split, args.limit, args.skip):
        if meta["family"] not in families:
            continue
        seed = int(meta["seed"])
        bound, rest, rest_points, video, w2c = _clip_inputs(arrays, meta, models)
        truth, error = clip_error(arrays, rest)
        targets = refine.refine_targets(arrays["video"], arrays["camera_K"], w2c, fast.resolution)
        motion = generate_motion(models, bound, rest_points, video, w2c, SamplerConfig(), seed=seed)
        row = {"seed": seed, "family": meta["family"], "static": error(rest.expand_as(truth)),
               "unrefined": error(motion.vertices),
               "fast": error(refine.refine_motion(models, bound, motion, targets, fast, seed=seed).motion.vertices)}
        tracks = refine.track_targets(bound.canonical, targets, fast.track_points, fast.w_track_hidden)
        for K in PARTS:
            posed, ratio = piecewise_rigid(rest, bound.canonical, tracks, targets, fast, K)
            row[f"parts{K}"], row[f"parts{K}_ratio"] = error(posed), ratio
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not rows:
        raise SystemExit(f"{args.data}: no {args.split} clips of {sorted(families)} in that range")
    print("SUMMARY", json.dumps(summary(rows)), flush=True)


if __name__ == "__main__":
    main()
