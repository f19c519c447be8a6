"""What the refinement probes in scripts/ share: the options that pick their clips, the vertex
error they report, their figures as percentages of the unrefined error, and the rigid fit on its own
with the rest shape it moves. Not a script of its
own; the probes import it from their folder."""

from __future__ import annotations

import argparse
from typing import Callable

import numpy as np
import torch

import gvf_core.pipeline.refine as refine
from gvf_core.models.rigid_motion import RootTransform


def add_clip_options(parser: argparse.ArgumentParser, split: str = "train",
                     splits: tuple[str, ...] = ("train", "val", "test"), limit: int | None = None) -> None:
    """``--data``, ``--split``, ``--skip`` and ``--limit``: the stored clips a probe runs on."""
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default=split, choices=splits)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--limit", type=int, default=limit)


def diagonal(rest: torch.Tensor) -> float:
    """The bounding-box diagonal of the rest vertices [V, 3], the unit of the probes' figures."""
    return float((rest.max(0).values - rest.min(0).values).norm())


def clip_error(arrays: dict, rest: torch.Tensor) -> tuple[torch.Tensor, Callable[..., float]]:
    """(the clip's true vertices [T, V, 3], ``error``): ``error(vertices)`` is the mean distance of
    ``vertices`` [T, V, 3] to the truth over the rest shape's bounding-box diagonal, the figure of
    ``gvf eval animate``; ``error(vertices, shown)`` the same over the entries of a [T, V] mask."""
    truth = torch.as_tensor(arrays["vertices"]).float()
    diag = diagonal(rest)

    def error(vertices: torch.Tensor, shown: torch.Tensor | None = None) -> float:
        distance = (vertices - truth).norm(dim=-1)
        return float(distance.mean() / diag) if shown is None else float((distance / diag)[shown].mean())

    return truth, error


def percent_of_unrefined(rows: list[dict]) -> tuple[float, Callable[[list[float]], float]]:
    """(the rows' mean unrefined error, ``percent``): ``percent(values)`` is the mean of per-clip
    ``values`` as a percentage of it, to one decimal."""
    unrefined = float(np.mean([r["unrefined"] for r in rows]))

    def percent(values: list[float]) -> float:
        return round(float(np.mean(values) / unrefined * 100), 1)

    return unrefined, percent


def fit_rigid_alone(bound, targets: refine.RefineTargets,
                    settings: refine.RefineSettings) -> tuple[RootTransform, float]:
    """(the transform, its residual / tracked motion) of refinement's rigid fit with ``settings``,
    on its own: the clip's tracked Gaussians (:func:`gvf_core.pipeline.refine.track_targets`) and
    :func:`gvf_core.pipeline.refine.fit_rigid`, as ``refine_motion`` fits it."""
    tracks = refine.track_targets(bound.canonical, targets, settings.track_points, settings.w_track_hidden)
    root = RootTransform(targets.rgb.shape[0], bound.canonical.means)
    with torch.enable_grad():
        fit = refine.fit_rigid(root, bound.canonical, tracks, targets, settings.rigid_iterations,
                               settings.w_rigid_smooth, settings.rigid_hidden_weight, settings.rigid_cauchy)
    return root, fit["residual_px"] / max(fit["motion_px"], 1e-9)


def rigid_vertices(root: RootTransform, rest: torch.Tensor) -> torch.Tensor:
    """The rest vertices [V, 3] moved by ``root`` alone in each of its frames: [T, V, 3]."""
    T = root.rotation.shape[0]
    with torch.no_grad():
        return root.apply(rest[None].expand(T, -1, -1), torch.arange(T))
