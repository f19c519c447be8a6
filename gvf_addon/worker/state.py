"""An :class:`Animation` as one ``.npz`` (arrays + a JSON header), so that ``extend`` can
continue a clip after the worker, or Blender, has restarted.

numpy only, ``allow_pickle=False`` both ways: a state file is data, never code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from gvf_core.atomic_write import atomic_path
from gvf_core.cameras import Cameras
from gvf_core.canonical import BoundGaussians
from gvf_core.canonical.binding import Binding
from gvf_core.gaussians import Gaussians
from gvf_core.normalize import Normalization
from gvf_core.pipeline.animate import Animation

STATE_VERSION = 1
_GAUSSIAN = ("means", "quats", "log_scales", "opacity_logits", "sh0")
_BOUND = ("local_angle", "local_log_scales", "opacity_logits", "sh0", "faces", "rest_vertices")
_BINDING = ("face_idx", "bary", "offset")


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def save_animation(anim: Animation, path) -> Path:
    """Write ``anim`` to ``path`` (replaced atomically)."""
    path = Path(path)
    a: dict[str, np.ndarray] = {
        "vertices": anim.vertices, "faces": anim.faces, "model_vertices": _np(anim.model_vertices),
        "points_face": _np(anim.points[0]), "points_bary": _np(anim.points[1]), "video": anim.video,
        "camera_K": _np(anim.camera.K), "camera_w2c": _np(anim.camera.world_to_camera),
    }
    a.update({f"gaussians_{k}": _np(getattr(anim.model_gaussians, k)) for k in _GAUSSIAN})
    a.update({f"bound_{k}": _np(getattr(anim.bound, k)) for k in _BOUND})
    a.update({f"binding_{k}": _np(getattr(anim.bound.binding, k)) for k in _BINDING})
    for name in ("normalization", "world_normalization"):
        n = getattr(anim, name)
        a[f"{name}_center"], a[f"{name}_rotation"] = np.asarray(n.center), np.asarray(n.rotation)
    a.update({f"latent_{i}": _np(z) for i, z in enumerate(anim.latents)})
    header = {
        "version": STATE_VERSION, "fps": anim.fps, "width": anim.width, "height": anim.height,
        "magnitude": anim.magnitude, "predicted_magnitude": anim.predicted_magnitude, "latents": len(anim.latents),
        "segment_starts": list(map(int, anim.segment_starts)), "refinement": anim.refinement,
        "normalization_scale": anim.normalization.scale, "world_normalization_scale": anim.world_normalization.scale,
        "timings": anim.timings, "settings": anim.settings,
    }
    a["header"] = np.array(json.dumps(header, default=str))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **a)
    return path


def load_animation(path) -> Animation:
    """The :class:`Animation` that :func:`save_animation` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such animation state file (write one with save_state=True)")
    with np.load(path, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    header = json.loads(str(a.pop("header")))
    if header.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: animation state version {header.get('version')}, this worker reads {STATE_VERSION}")
    t = torch.from_numpy
    binding = Binding(*(t(a[f"binding_{k}"]) for k in _BINDING))
    bound = BoundGaussians(binding, *(t(a[f"bound_{k}"]) for k in _BOUND))
    return Animation(
        vertices=a["vertices"], faces=a["faces"], fps=header["fps"], model_vertices=t(a["model_vertices"]),
        model_gaussians=Gaussians(*(t(a[f"gaussians_{k}"]) for k in _GAUSSIAN)), bound=bound,
        points=(a["points_face"], a["points_bary"]),
        normalization=Normalization(a["normalization_center"], header["normalization_scale"], a["normalization_rotation"]),
        world_normalization=Normalization(a["world_normalization_center"], header["world_normalization_scale"],
                                          a["world_normalization_rotation"]),
        camera=Cameras(t(a["camera_K"]), t(a["camera_w2c"])), width=header["width"], height=header["height"],
        video=a["video"], latents=[t(a[f"latent_{i}"]) for i in range(header["latents"])],
        segment_starts=header.get("segment_starts", []), refinement=header.get("refinement", []),
        magnitude=header["magnitude"], predicted_magnitude=header["predicted_magnitude"],
        timings=header["timings"], settings=header["settings"],
    )
