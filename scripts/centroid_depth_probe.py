"""How much of refinement's remaining vertex error is the depth of the asset's centroid: one number
per frame, the one a single view shows worst (docs/models.md, "Where the error is left").

For each clip the shipped pipeline generates the motion (default sampler) and the shipped ``fast``
refines it; refinement's rigid fit (:func:`probe_clips.fit_rigid_alone`) moves the rest vertices on
its own. One JSON line per clip: the vertex error / bounding-box diagonal of ``static``,
``unrefined`` and ``refined``, and of the unrefined and refined vertices moved, frame by frame,
along the camera ray through their centroid until the centroid is as far from the camera as the
truth's (``unrefined_true_depth``, ``refined_true_depth``: the shape and the centroid's pixel
unchanged); then how far each motion moves its centroid in depth (``travel``: the mean over frames
of the change of the centroid's camera depth from frame 0, over the diagonal) for the truth, the
unrefined and refined motions and the rigid transform. Then ``SUMMARY``: the errors as
percentages of the unrefined one, the mean travels.

    python scripts/centroid_depth_probe.py --data data/train256 --split train --limit 64

Measured 2026-12-07 on the first 128 of the 256 training clips (``gvf data make --out
data/train256 --count 256 --no-val``) and on the 64 validation clips: see docs/models.md.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import gvf_core.pipeline.refine as refine
from gvf_core.eval.animate import _clip_inputs, _samples
from gvf_core.models.sampler import SamplerConfig
from gvf_core.pipeline.core import generate_motion, load_models
from probe_clips import (add_clip_options, clip_error, diagonal, fit_rigid_alone, percent_of_unrefined,
                         rigid_vertices)

MOTIONS = ("truth", "unrefined", "refined", "rigid")


def centroid_depth(vertices: torch.Tensor, world_to_camera: torch.Tensor) -> torch.Tensor:
    """The camera depth [T] of the centroid of ``vertices`` [T, V, 3] in each frame."""
    camera = vertices @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    return camera.mean(1)[:, 2]


def depth_travel(vertices: torch.Tensor, world_to_camera: torch.Tensor) -> float:
    """The mean over frames of how far the centroid of ``vertices`` [T, V, 3] has moved in camera
    depth since frame 0."""
    z = centroid_depth(vertices, world_to_camera)
    return float((z - z[0]).abs().mean())


def at_centroid_depth(vertices: torch.Tensor, depth: torch.Tensor, world_to_camera: torch.Tensor) -> torch.Tensor:
    """``vertices`` [T, V, 3] moved, frame by frame, along the camera ray through their centroid
    until the centroid's camera depth is ``depth`` [T]: the shape and the centroid's projection kept."""
    R, t = world_to_camera[:3, :3], world_to_camera[:3, 3]
    camera = vertices @ R.T + t
    centroid = camera.mean(1, keepdim=True)
    moved = camera + centroid * (depth[:, None, None] / centroid[..., 2:3] - 1)
    return (moved - t) @ R


def summary(rows: list[dict]) -> dict:
    unrefined, percent = percent_of_unrefined(rows)
    errors = ("static", "unrefined", "refined", "unrefined_true_depth", "refined_true_depth")
    travel = {k: float(np.mean([r["travel"][k] for r in rows])) for k in MOTIONS}
    return {"clips": len(rows), "unrefined": unrefined, **{k: percent([r[k] for r in rows]) for k in errors},
            "travel": travel, "travel_over_truth": {k: round(v / max(travel["truth"], 1e-12), 2) for k, v in travel.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = load_models(None, "cpu")
    fast = refine.refine_settings("fast")
    rows = []
    for arrays, meta, _ in _samples(args.data, args.split, args.limit, args.skip):
        seed = int(meta["seed"])
        bound, rest, rest_points, video, w2c = _clip_inputs(arrays, meta, models)
        truth, error = clip_error(arrays, rest)
        targets = refine.refine_targets(arrays["video"], arrays["camera_K"], w2c, fast.resolution)
        motion = generate_motion(models, bound, rest_points, video, w2c, SamplerConfig(), seed=seed)
        refined = refine.refine_motion(models, bound, motion, targets, fast, seed=seed).motion.vertices
        rigid = rigid_vertices(fit_rigid_alone(bound, targets, fast)[0], rest)
        depth = centroid_depth(truth, w2c)
        travel = {name: depth_travel(vertices, w2c) / diagonal(rest)
                  for name, vertices in zip(MOTIONS, (truth, motion.vertices, refined, rigid))}
        row = {"seed": seed, "family": meta["family"], "static": error(rest.expand_as(truth)),
               "unrefined": error(motion.vertices), "refined": error(refined),
               "unrefined_true_depth": error(at_centroid_depth(motion.vertices, depth, w2c)),
               "refined_true_depth": error(at_centroid_depth(refined, depth, w2c)), "travel": travel}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not rows:
        raise SystemExit(f"{args.data}: no {args.split} clips in that range")
    print("SUMMARY", json.dumps(summary(rows)), flush=True)


if __name__ == "__main__":
    main()
