"""Probe the lift's rigid threshold: when should the lift take the rigid transform?

    OMP_NUM_THREADS=1 .venv/bin/python scripts/lift_rigid_probe.py --data data/gvf2000 --split train \
        --limit 500 > part0.jsonl            # and --skip 500 --limit 500 > part1.jsonl in a second process
    .venv/bin/python scripts/lift_rigid_probe.py --summary part0.jsonl part1.jsonl

For each stored clip: the optical-flow tracks and the rigid fit the lift makes
(gvf_core/models/track_lift.py), the residual it leaves over the tracked motion, and the vertex
error against the ground truth (/ bbox diagonal) of the rigid transform and of the plane lift,
each applied to the clip's rest vertices (no VAE, no DiT). One JSON line per clip, ~2.5 s per
clip on one core. ``--summary`` prints the lift's error on the clips whose fit leaves less than
0.15 with the plane lift taken above each candidate threshold (docs/models.md, "The lift's
rigid threshold": LIFT_RIGID_RESIDUAL was chosen this way on the first 1000 training clips).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

THRESHOLDS = (0.15, 0.14, 0.13, 0.12, 0.115, 0.11, 0.10)


def probe(data: str, split: str, limit: int | None, skip: int) -> None:
    from gvf_core.eval.animate import _clip_inputs, _samples
    from gvf_core.models.track_lift import lift_motion, lift_tracks
    from gvf_core.models.video_tracks import clip_tracks, visibility_surface
    from gvf_core.pipeline.core import load_models

    models = load_models(None, "cpu")
    for arrays, meta, _ in _samples(data, split, limit, skip):
        bound, rest, rest_points, video, w2c = _clip_inputs(arrays, meta, models)
        truth = torch.as_tensor(arrays["vertices"]).float()
        diag = float((rest.max(0).values - rest.min(0).values).norm())
        K, size, points = video.K.float(), video.size, rest_points.float()
        surface = visibility_surface(bound.canonical.means)
        tracks = clip_tracks(points, surface, video.pixels, K, w2c).float()
        frames = tracks.shape[0]
        lifted = lift_motion(points, tracks, K, w2c, size)  # the lift's own fit, used or not
        fit = lifted.rigid
        with torch.no_grad():
            rigid = lifted.root.apply(rest[None].expand(frames, -1, -1), torch.arange(frames))
        vertex_tracks = clip_tracks(rest, surface, video.pixels, K, w2c).float()
        plane = rest[None] + lift_tracks(rest, vertex_tracks, K, w2c, size)

        def error(v: torch.Tensor) -> float:
            return round(float((v - truth).norm(dim=-1).mean() / diag), 5)

        print(json.dumps({"seed": int(meta["seed"]), "family": meta.get("family"),
                          "ratio": round(fit["residual_px"] / max(fit["motion_px"], 1e-9), 4),
                          "static": error(rest[None].expand_as(truth)), "rigid": error(rigid), "plane": error(plane)}),
              flush=True)


def summary(files: list[str]) -> None:
    rows = [json.loads(line) for f in files for line in open(f) if line.startswith("{")]
    candidates = [r for r in rows if r["ratio"] < max(THRESHOLDS)]
    print(f"{len(rows)} clips; the fit leaves less than {max(THRESHOLDS)} on {len(candidates)}")
    if not candidates:
        return
    print("threshold  rigid on  lift's vertex error on those clips")
    for threshold in THRESHOLDS:
        taken = [r["rigid"] if r["ratio"] < threshold else r["plane"] for r in candidates]
        print(f"{threshold:9.3f}  {sum(r['ratio'] < threshold for r in candidates):8d}  {sum(taken) / len(taken):.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/gvf2000")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--summary", nargs="+", metavar="JSONL", help="summarise probe outputs instead")
    args = parser.parse_args(argv)
    if args.summary:
        summary(args.summary)
    else:
        probe(args.data, args.split, args.limit, args.skip)


if __name__ == "__main__":
    main(sys.argv[1:])
