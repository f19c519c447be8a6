"""``gvf data encode``: each sample's VAE latent (posterior mean and std) for DiT training.

For every shard ``{split}-….safetensors`` of a data set, ``latents/<same name>`` holds,
per sample i: ``{i:04d}/mean`` and ``{i:04d}/std`` [T, L, C] (all frames),
``{i:04d}/anchors`` [L, 3] (the anchor positions, model frame), ``{i:04d}/anchor_motion``
[T, L, 3] (the anchors' exact displacement from frame 0, the Geometry-Forcing target
and a cheap evaluation signal) and ``{i:04d}/canonical`` [M, 14] (the features of M
farthest-point-sampled canonical Gaussians, what the DiT cross-attends to). The metadata names the
VAE's config and the fingerprint of its weights, so stale latents are detected. Resumable:
finished files are skipped when they were made by the same VAE (config and weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gvf_core.atomic_write import atomic_path
from gvf_core.models.checkpoint import fingerprint
from gvf_core.models.vae import GVFVAE, gaussian_features
from gvf_core.models.vae_inputs import anchor_indices, prepare_sample, stack

CANONICAL_TOKENS = 1024
"""M: canonical Gaussians stored per sample for the DiT's canonical cross-attention."""
FORMAT = "2"


@torch.no_grad()
def encode_sample(model: GVFVAE, sample: dict, device="cpu") -> dict[str, torch.Tensor]:
    c = model.config
    prepared = prepare_sample(sample, c.num_latents, c.num_points, c.knn, c.interp_beta)
    batch = stack([prepared]).to(device)
    mean, logvar = model.encode(batch.rest_points, batch.displacements, batch.anchors, batch.neighbours)
    canonical = prepared["canonical"]
    tokens = anchor_indices(canonical.means, min(CANONICAL_TOKENS, canonical.num))
    return {
        "mean": mean[0].cpu(),
        "std": torch.exp(0.5 * logvar[0]).cpu(),
        "anchors": batch.anchors[0].cpu(),
        "anchor_motion": prepared["deltas"][:, prepared["anchor_index"], :3].float(),
        "canonical": gaussian_features(canonical.select(tokens)).float(),
    }


def encode_dataset(model: GVFVAE, data_dir, splits=("train", "val"), device="cpu", progress=None) -> list[Path]:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from gvf_core.data.shards import Manifest, ShardReader

    data_dir = Path(data_dir)
    manifest = Manifest.load(data_dir)
    out_dir = data_dir / "latents"
    out_dir.mkdir(exist_ok=True)
    tag = model.config.to_json() + "/format" + FORMAT
    weights = fingerprint(model)
    shards = [s for split in splits for s in manifest.shards_of(split)]
    total = sum(s.count for s in shards)
    done, written = 0, []
    model = model.to(device).eval()
    for info in shards:
        path = out_dir / info.file
        if path.exists():
            try:
                with safe_open(str(path), framework="pt") as f:
                    meta = f.metadata() or {}
                    if meta.get("vae_config") == tag and meta.get("vae_fingerprint") == weights:
                        done += info.count
                        written.append(path)
                        continue
            except Exception:
                pass  # unreadable: encode again
        tensors = {}
        with ShardReader(data_dir / info.file) as reader:
            for i in range(len(reader)):
                arrays, meta = reader[i]
                arrays["meta"] = meta
                for key, value in encode_sample(model, arrays, device).items():
                    tensors[f"{i:04d}/{key}"] = value.contiguous()
                done += 1
                if progress is not None:
                    progress(done, total)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"vae_config": tag, "vae_fingerprint": weights,
                                                   "count": str(info.count), "seeds": json.dumps(list(info.seeds))})
        written.append(path)
    return written
