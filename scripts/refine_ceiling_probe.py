"""How far refinement against one view can take the generated motion (docs/models.md).

For each evaluation clip the shipped pipeline generates the motion (default sampler), and the
probe reports its vertex error / bounding-box diagonal beside

- ``exact_rays``: every vertex moved onto its true camera ray at its own distance from the
  camera — everything one view could show, for the hidden side too, exactly;
- ``exact_depth``: every vertex at its true distance on its own ray;
- ``fast``: the shipped ``fast`` refinement (optical-flow tracks), with the same two ceilings
  applied to its result (``fast_true_rays``, ``fast_true_depth``) and, split by whether the
  ground truth shows a vertex in a frame (``_shown`` / ``_hidden``), its error and its error on
  the true rays: what is left across the rays on the points the video shows is the tracks' part;
- ``exact_tracks`` (``--exact-tracks``): the same refinement given the true projections of the
  points the video shows in each frame (the true per-frame visibility) instead of the flow,
  optionally with Gaussian noise of ``--noise`` pixels of the refinement crop.

    python scripts/refine_ceiling_probe.py --data data/gvf2000 [--split val] [--skip 0] [--limit 16]
        [--exact-tracks] [--noise 0.5] [--no-fast] [--family combo]

One JSON line per clip, then ``SUMMARY {...}`` with the means and their ratios to the unrefined
error. Measured 2026-12-04 (64 validation clips): exact rays 71.8 % of unrefined, exact depth
52.9 %; on the first 16 clips exact tracks 85.9 % against 94.9 % for ``fast``. 2026-12-06, the 19
``combo`` validation clips (``--limit 64 --family combo``): ``fast`` 0.0457 (unrefined 0.0478), on
the true rays 0.0312, at the true depth 0.0248; on the vertices the video shows 0.0449, on their
true rays 0.0338. The exact tracks reach refinement by
replacing :func:`gvf_core.pipeline.refine.point_tracks` for the probe's own process: a
measurement, not a pipeline option.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import gvf_core.pipeline.refine as refine
from gvf_core.eval.animate import _clip_inputs, _samples
from gvf_core.models.sampler import SamplerConfig
from gvf_core.models.vae_inputs import anchor_indices
from gvf_core.models.video_inputs import project
from gvf_core.models.video_tracks import SURFACE_POINTS, visibility_over_frames
from gvf_core.pipeline.core import generate_motion, load_models
from probe_clips import add_clip_options, clip_error


def ray_ceilings(vertices: torch.Tensor, truth: torch.Tensor, world_to_camera: torch.Tensor) -> tuple:
    """(vertices on the true rays at their own distances, vertices at the true distances on their
    own rays), [T, V, 3] each, model frame."""
    R, t = world_to_camera[:3, :3], world_to_camera[:3, 3]
    p, q = vertices @ R.T + t, truth @ R.T + t
    dp, dq = p.norm(dim=-1, keepdim=True), q.norm(dim=-1, keepdim=True)
    return (q / dq * dp - t) @ R, (p / dp * dq - t) @ R


class ExactTracks:
    """A stand-in for ``refine.point_tracks``: the true projections of the clip's points."""

    def __init__(self, rest: torch.Tensor, paths: torch.Tensor, surface: torch.Tensor, noise: float, seed: int):
        self.rest, self.paths, self.surface, self.noise, self.seed = rest, paths, surface, noise, seed

    def __call__(self, points, means, targets, hidden_weight=1.0):
        del means, hidden_weight
        index = torch.cdist(points.float(), self.rest).argmin(1)  # the points are among the known ones
        posed = self.paths[:, index]  # [T, P, 3]
        K, w2c = targets.camera.K[0].float(), targets.camera.world_to_camera[0].float()
        size = targets.render_size or targets.size
        screen = project(posed, K, w2c, size)
        weight = visibility_over_frames(posed, self.surface, K, w2c, size)
        weight[0] = 0
        if self.noise > 0:
            gen = torch.Generator().manual_seed(self.seed)
            jitter = torch.randn(screen.shape, generator=gen) * self.noise / targets.size
            jitter[0] = 0
            screen = screen + jitter
        return screen, weight


def shown_vertices(truth: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor, size: int) -> torch.Tensor:
    """[T, V] bool: the vertices the ground truth shows in each frame (not behind its own surface)."""
    surface = truth[:, anchor_indices(truth[0], min(SURFACE_POINTS, truth.shape[1]))]
    return visibility_over_frames(truth, surface, K, world_to_camera, size).bool()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_options(parser, split="val", splits=("val", "test"), limit=16)
    parser.add_argument("--exact-tracks", action="store_true")
    parser.add_argument("--noise", type=float, default=0.0, help="pixels of Gaussian noise on the exact tracks")
    parser.add_argument("--no-fast", action="store_true", help="leave out the shipped fast refinement")
    parser.add_argument("--family", help="only the clips of this motion family (e.g. combo, rigid)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = load_models(None, "cpu")
    settings = refine.refine_settings("fast")
    flow_tracks = refine.point_tracks
    rows = []
    for arrays, meta, _ in _samples(args.data, args.split, args.limit, args.skip):
        if args.family is not None and meta["family"] != args.family:
            continue
        bound, rest, rest_points, video, w2c = _clip_inputs(arrays, meta, models)
        seed = int(meta["seed"])
        motion = generate_motion(models, bound, rest_points, video, w2c, SamplerConfig(), seed=seed)
        truth, error = clip_error(arrays, rest)
        rays, depth = ray_ceilings(motion.vertices, truth, w2c)
        row = {"seed": seed, "static": error(rest.expand_as(truth)), "unrefined": error(motion.vertices),
               "exact_rays": error(rays), "exact_depth": error(depth)}
        targets = refine.refine_targets(arrays["video"], arrays["camera_K"], w2c, settings.resolution)
        if not args.no_fast:
            refine.point_tracks = flow_tracks
            fitted = refine.refine_motion(models, bound, motion, targets, settings, seed=seed).motion.vertices
            fast_rays, fast_depth = ray_ceilings(fitted, truth, w2c)
            shown = shown_vertices(truth, targets.camera.K[0].float(), targets.camera.world_to_camera[0].float(),
                                   targets.render_size or targets.size)
            row.update({"fast": error(fitted), "fast_true_rays": error(fast_rays), "fast_true_depth": error(fast_depth),
                        "fast_shown": error(fitted, shown), "fast_true_rays_shown": error(fast_rays, shown),
                        "fast_hidden": error(fitted, ~shown), "fast_true_rays_hidden": error(fast_rays, ~shown)})
        if args.exact_tracks:
            posed = bound.gaussians_at(truth).means.float()
            faces = torch.as_tensor(arrays["faces"]).long()
            tri = truth[:, faces[torch.as_tensor(arrays["pts_face_idx"]).long()]]  # [T, P, 3, 3]
            points = (torch.as_tensor(arrays["pts_bary"]).float()[None, :, :, None] * tri).sum(2)
            means = bound.canonical.means.float()
            surface = posed[:, anchor_indices(means, min(SURFACE_POINTS, len(means)))]  # as start_visibility tests
            refine.point_tracks = ExactTracks(torch.cat([bound.canonical.means.float(), points[0]]),
                                              torch.cat([posed, points], 1), surface, args.noise, seed)
            row["exact_tracks"] = error(refine.refine_motion(models, bound, motion, targets, settings,
                                                             seed=seed).motion.vertices)
            refine.point_tracks = flow_tracks
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not rows:
        raise SystemExit(f"{args.data}: no {args.split} clips in that range{' of that family' if args.family else ''}")
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    summary.update({f"{k}_vs_unrefined": summary[k] / summary["unrefined"] for k in list(summary) if k != "unrefined"})
    print("SUMMARY", json.dumps({"clips": len(rows), **summary}), flush=True)


if __name__ == "__main__":
    main()
