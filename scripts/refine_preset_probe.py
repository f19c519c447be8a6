"""Measure a candidate refinement preset on some clips before it becomes ``best`` (docs/models.md).

The candidate is a preset (``--base fast`` or ``best``) with JSON overrides of its
:class:`gvf_core.pipeline.refine.RefineSettings`; it is run through ``gvf eval animate`` (no image
scores) in the place of ``fast``. ``--rigid-opt lbfgs`` fits refinement's rigid transform with
L-BFGS instead of Adam (the lift that feeds the DiT keeps the Adam fit it was trained with). One
JSON line: the unrefined and refined vertex error, their ratio, refinement seconds per clip and the
per-clip rows.

    OMP_NUM_THREADS=1 python scripts/refine_preset_probe.py r600 '{"rigid_iterations": 600}' \\
        --data data/train1k --split train --limit 24

The device checks use it for the image phase on the GPU (``'{"iterations": 40, "backend": "gsplat"}'
--split val --device cuda``, docs/gpu_checks.md). The training split is read without its latents (no VAE ceiling, no flow loss): with them the
evaluation would also build the whole split's flow-loss cache.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

import gvf_core.eval.animate as evaluation
import gvf_core.pipeline.refine as refine
from gvf_core.models.rigid_motion import rigid_fit_closure, rigid_fit_report


def fit_rigid_lbfgs(iterations: int):
    """A drop-in for :func:`gvf_core.models.rigid_motion.fit_rigid_motion` that runs L-BFGS for
    ``iterations`` steps (strong-Wolfe line search) instead of the preset's Adam steps."""

    def fit(root, points, positions, weights, K, world_to_camera, size, pixels=None, _adam_iterations=0,
            smoothness=0.0, cauchy=0.0):
        pixels = float(size if pixels is None else pixels)
        optimizer = torch.optim.LBFGS(root.parameters(), lr=1.0, max_iter=iterations, history_size=20,
                                      line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)
        with torch.enable_grad():
            optimizer.step(rigid_fit_closure(root, points, positions, weights, K, world_to_camera, size, pixels,
                                             smoothness, cauchy))
        return rigid_fit_report(root, points, positions, weights, K, world_to_camera, size, pixels)

    return fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("overrides", help="JSON object of RefineSettings fields")
    parser.add_argument("--data", default="data/train1k")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--base", choices=("fast", "best"), default="fast")
    parser.add_argument("--rigid-opt", choices=("adam", "lbfgs"), default="adam")
    parser.add_argument("--lbfgs-iters", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    refine.REFINE_PRESETS["fast"] = replace(refine.REFINE_PRESETS[args.base], **json.loads(args.overrides))
    if args.rigid_opt == "lbfgs":
        refine.fit_rigid_motion = fit_rigid_lbfgs(args.lbfgs_iters)
    if args.split == "train":
        evaluation._latents_encoded = lambda *_: False
    start = time.perf_counter()
    out = evaluation.evaluate_animate(args.data, limit=args.limit, skip=args.skip, split=args.split, refine="fast",
                                      per_clip=True, render_every=0, device=args.device)
    print(json.dumps({"name": args.name, "overrides": json.loads(args.overrides), "base": args.base,
                      "rigid_opt": args.rigid_opt, "samples": out["samples"],
                      "unrefined": out["model"]["vertex_error"], "refined": out["refined"]["vertex_error"],
                      "ratio": out["refine"]["vertex_error_vs_unrefined"],
                      "refine_s": out["refine"]["seconds_per_clip"], "per_clip": out["per_clip"],
                      "wall_min": (time.perf_counter() - start) / 60}))


if __name__ == "__main__":
    main()
