"""How much of refinement's rigid transform to mix into ``fast``'s motion where it is fitted but not
used (``rigid_blend``, ``rigid_blend_residual``, ``rigid_blend_disagreement``; docs/models.md).

For each clip the shipped pipeline generates the motion (default sampler) and ``fast`` without the
mix refines it (``rigid_blend`` 0); refinement's rigid fit (``fast``'s: hidden tracks out, Cauchy
loss; :func:`gvf_core.pipeline.refine.fit_rigid`) moves the rest vertices on its own. One JSON
line per clip: the vertex error / bounding-box diagonal of ``static``, ``unrefined``, ``fast``,
``rigid`` and of the mixes ``blend1`` … ``blend9`` (``fast`` moved 0.1 … 0.9 of the way to
``rigid``); the fit's residual / tracked motion (``ratio``), whether ``fast`` starts from the
transform there (``rigid_used``: it then carries it already) and ``disagreement``, the mean
distance between the two motions' vertices over the mean distance ``fast`` moves them. Then
``SUMMARY``: the rule "mix W where the ratio is below R and the disagreement below K, else
``fast``" over a grid, as percentages of the unrefined error.

    python scripts/rigid_blend_probe.py --data data/train256 --split train --limit 128

Measured 2026-12-07 on the first 128 of the 256 training clips (``gvf data make --out
data/train256 --count 256 --no-val``): ``fast`` without the mix 94.3 % of unrefined, the rigid
transform alone 125.6 %; the mix 0.5 below a ratio of 0.4 and a disagreement of 2 (the shipped
rule) 86.2 %; on the other 128 (``--skip 128``), not used for the choice, 91.8 % → 86.6 %.
The pipeline measures the disagreement on the Gaussians before its temporal filter, this probe
on the vertices after it: close, not equal (docs/models.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

import gvf_core.pipeline.refine as refine
from gvf_core.eval.animate import _clip_inputs, _samples
from gvf_core.models.sampler import SamplerConfig
from gvf_core.pipeline.core import generate_motion, load_models
from probe_clips import add_clip_options, clip_error, fit_rigid_alone, percent_of_unrefined, rigid_vertices

WEIGHTS = range(1, 10)  # tenths


def rule(row: dict, weight: int, below: float, disagreement: float) -> float:
    """The refined error of one clip when ``weight`` tenths of the transform are mixed in where its
    fit leaves less than ``below`` of the tracked motion and it disagrees less than ``disagreement``."""
    if row["rigid_used"] or row["ratio"] >= below or row["disagreement"] >= disagreement:
        return row["fast"]
    return row[f"blend{weight}"]


def summary(rows: list[dict]) -> dict:
    unrefined, percent = percent_of_unrefined(rows)
    out = {"clips": len(rows), "unrefined": unrefined,
           **{k: percent([r[k] for r in rows]) for k in ("static", "fast", "rigid")}}
    for below in (0.3, 0.4, 0.5, 0.6):
        for disagreement in (1.5, 2.0, 2.5, 3.0, float("inf")):
            out[f"below_{below}_disagreement_{disagreement}"] = {
                f"blend{w}": percent([rule(r, w, below, disagreement) for r in rows]) for w in WEIGHTS}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = load_models(None, "cpu")
    fast = dataclasses.replace(refine.refine_settings("fast"), rigid_blend=0.0)
    rows = []
    for arrays, meta, _ in _samples(args.data, args.split, args.limit, args.skip):
        seed = int(meta["seed"])
        bound, rest, rest_points, video, w2c = _clip_inputs(arrays, meta, models)
        truth, error = clip_error(arrays, rest)
        targets = refine.refine_targets(arrays["video"], arrays["camera_K"], w2c, fast.resolution)
        motion = generate_motion(models, bound, rest_points, video, w2c, SamplerConfig(), seed=seed)
        outcome = refine.refine_motion(models, bound, motion, targets, fast, seed=seed)
        refined = outcome.motion.vertices
        root, ratio = fit_rigid_alone(bound, targets, fast)
        rigid = rigid_vertices(root, rest)
        row = {"seed": seed, "family": meta["family"], "static": error(rest.expand_as(truth)),
               "unrefined": error(motion.vertices), "fast": error(refined), "rigid": error(rigid),
               "ratio": ratio, "rigid_used": bool(outcome.report["rigid"]["used"]),
               "disagreement": refine.rigid_disagreement(refined - rest, rigid - rest),
               **{f"blend{w}": error(refined + w / 10 * (rigid - refined)) for w in WEIGHTS}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not rows:
        raise SystemExit(f"{args.data}: no {args.split} clips in that range")
    print("SUMMARY", json.dumps(summary(rows)), flush=True)


if __name__ == "__main__":
    main()
