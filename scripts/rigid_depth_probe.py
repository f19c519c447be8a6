"""Which depth the refined motion keeps where refinement's rigid transform starts the point fit
(``rigid_depth_residual``, docs/models.md and docs/pipeline.md).

For each clip the refinement's rigid fit is run first on its own (a second or two) to screen the
clips: those where the current fit (``fast``'s: hidden tracks out, Cauchy loss) leaves
``--max-ratio`` or more of the tracked motion are left out, as no rule of interest uses the
transform there. On the rest the shipped pipeline generates the motion (default sampler) and
``fast`` refines it four ways; the vertex error / bounding-box diagonal of each:

- ``off``: no rigid transform (``root`` off);
- ``on_old``: the transform forced on, fitted as before 2026-12-06 (every track, smooth L1), its
  rays at the sample's depth (``rigid_depth_residual`` 0);
- ``on_new``: the current fit, forced on, its own depth;
- ``on_new_rays``: the current fit, forced on, its rays at the sample's depth;

with each fit's residual / tracked motion (``on_old_ratio``, ``on_new_ratio``). ``SUMMARY``
then applies rules "the transform where its ratio is below U, its own depth below D, the
sample's above" over a grid of U and D, as percentages of the unrefined error.

    python scripts/rigid_depth_probe.py --data data/train256 --split train [--skip 0] [--limit 256]

Measured 2026-12-06 on the 256 training clips of ``gvf data make --out data/train256 --count 256
--no-val`` (66 pass the screen at 0.25): the older fit with the sample's depth below
0.15 (the rule until then) 96.3 % of unrefined; the current fit, its own depth below 0.115 and
the sample's from 0.115 to 0.15 (the shipped rule) 88.0 %.
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
from probe_clips import add_clip_options, clip_error, fit_rigid_alone, percent_of_unrefined

OWN_DEPTH = 1e9  # rigid_depth_residual that every fit passes: the transform's own depth kept


def rule(row: dict, used_below: float, own_depth_below: float) -> float:
    """The refined error of one clip under a rule (see the module docstring)."""
    if row["on_new_ratio"] >= used_below:
        return row["off"]
    return row["on_new"] if row["on_new_ratio"] < own_depth_below else row["on_new_rays"]


def summary(rows: list[dict]) -> dict:
    unrefined, percent = percent_of_unrefined(rows)
    out = {"clips": len(rows), "unrefined": unrefined,
           "off": percent([r["off"] for r in rows]),
           "old_fit_sample_depth_below_0.15": percent([r["on_old"] if r["on_old_ratio"] < 0.15 else r["off"]
                                                      for r in rows])}
    for used in (0.1, 0.115, 0.13, 0.15, 0.2):
        out[f"used_below_{used}"] = {f"own_depth_below_{d}": percent([rule(r, used, d) for r in rows])
                                     for d in (0, 0.05, 0.08, 0.1, 0.115, 0.13, 0.15, 0.2) if d <= used}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_options(parser)
    parser.add_argument("--max-ratio", type=float, default=0.25, help="screen: leave out clips whose fit leaves more")
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = load_models(None, "cpu")
    fast = refine.refine_settings("fast")
    variants = {
        "off": dataclasses.replace(fast, root="off"),
        "on_old": dataclasses.replace(fast, root="on", rigid_hidden_weight=1.0, rigid_cauchy=0.0,
                                      rigid_depth_residual=0.0),
        "on_new": dataclasses.replace(fast, root="on", rigid_depth_residual=OWN_DEPTH),
        "on_new_rays": dataclasses.replace(fast, root="on", rigid_depth_residual=0.0),
    }
    rows = []
    for arrays, meta, _ in _samples(args.data, args.split, args.limit, args.skip):
        seed = int(meta["seed"])
        bound, rest, rest_points, video, w2c = _clip_inputs(arrays, meta, models)
        targets = refine.refine_targets(arrays["video"], arrays["camera_K"], w2c, fast.resolution)
        _, ratio = fit_rigid_alone(bound, targets, fast)
        if ratio >= args.max_ratio:
            print(json.dumps({"seed": seed, "on_new_ratio": ratio, "screened_out": True}), flush=True)
            continue
        truth, error = clip_error(arrays, rest)
        motion = generate_motion(models, bound, rest_points, video, w2c, SamplerConfig(), seed=seed)
        row = {"seed": seed, "static": error(rest.expand_as(truth)), "unrefined": error(motion.vertices)}
        for name, settings in variants.items():
            outcome = refine.refine_motion(models, bound, motion, targets, settings, seed=seed)
            row[name] = error(outcome.motion.vertices)
            if "rigid" in outcome.report:
                fit = outcome.report["rigid"]
                row[f"{name}_ratio"] = fit["residual_px"] / fit["motion_px"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not rows:
        raise SystemExit(f"{args.data}: no {args.split} clips in that range pass the screen")
    print("SUMMARY", json.dumps(summary(rows)), flush=True)


if __name__ == "__main__":
    main()
