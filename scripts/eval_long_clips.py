"""Long clips through animate(): the vertex error of the first segment's frames and of the later
ones, for clips longer than one segment (docs/pipeline.md, "Long clips and extend()").

    gvf data make --out data/val48 --split val --frames 48
    OMP_NUM_THREADS=1 python scripts/eval_long_clips.py --data data/val48 --limit 32 [--clip-frame]

``--clip-frame`` runs the later segments in the clip's model frame, as before 2026-12-03 (for
the comparison in the docs). Prints one JSON line per clip, then the means.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time

import numpy as np
import torch

from gvf_core.cameras import Cameras
from gvf_core.eval.animate import _samples
from gvf_core.mesh import MeshData
from gvf_core.normalize import Normalization
from gvf_core.pipeline import animate, load_models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--skip", type=int, default=0)
    p.add_argument("--first", type=int, default=24, help="frames of the first segment (default 24)")
    p.add_argument("--refine", default="off")
    p.add_argument("--clip-frame", action="store_true", help="later segments in the clip's frame (the old way)")
    args = p.parse_args()
    if args.clip_frame:
        segments = importlib.import_module("gvf_core.pipeline.animate")
        segments._segment_frame = lambda bound, pose: (segments._posed_bound(bound, pose),
                                                       Normalization(center=np.zeros(3), scale=1.0))
    models = load_models(None, "cpu")
    rows = []
    for arrays, meta, _ in _samples(args.data, "val", args.limit, args.skip):
        t0 = time.perf_counter()
        mesh = MeshData(vertices=arrays["rest_vertices"], faces=arrays["faces"], source=f"clip {meta['seed']}")
        camera = Cameras(K=torch.as_tensor(arrays["camera_K"])[None].float(),
                         world_to_camera=torch.as_tensor(arrays["camera_w2c"])[None].float())
        anim = animate(mesh, arrays["video"], camera=camera, model=models, refine=args.refine, seed=int(meta["seed"]),
                       device="cpu")
        truth = np.asarray(arrays["vertices"], np.float64)
        rest = truth[0]
        diag = float(np.linalg.norm(rest.max(0) - rest.min(0)))
        error = np.linalg.norm(anim.vertices - truth, axis=-1).mean(-1) / diag
        static = np.linalg.norm(truth - rest, axis=-1).mean(-1) / diag
        rows.append({"seed": int(meta["seed"]), "segments": len(anim.latents), "first": float(error[:args.first].mean()),
                     "later": float(error[args.first:].mean()), "static_later": float(static[args.first:].mean()),
                     "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({k: float(np.mean([r[k] for r in rows])) for k in ("first", "later", "static_later", "seconds")}
                     | {"clips": len(rows)}))


if __name__ == "__main__":
    main()
