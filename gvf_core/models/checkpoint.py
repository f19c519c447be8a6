"""Checkpoints: safetensors files that carry their config and normalisation statistics.

A model file holds the weights (statistics are buffers, so they are weights too) and,
in the safetensors metadata, ``kind`` (e.g. "gvf-vae"), ``config`` (JSON) and
``format_version``. ``from_pretrained(path)`` needs nothing else. Training state
(optimizer moments, EMA, step) is a second safetensors file for resuming. Nothing is
ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from gvf_core.atomic_write import atomic_path

FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, of another kind, or does not fit its config."""


def fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's weights and buffers, in name order: tells two models of
    the same config apart (e.g. the VAE that encoded a data set's latents)."""
    import hashlib

    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model(path, model: nn.Module, kind: str, config_json: str, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"kind": kind, "config": config_json, "format_version": FORMAT_VERSION}
    if extra:
        meta["extra"] = json.dumps(extra)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_model(path, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a model file, checked to be of ``kind``."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / f"{kind.split('-')[-1]}.safetensors"
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; train one with `gvf train` or point --model at the shipped folder")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc}); re-download or re-train it") from exc
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: this is a {meta.get('kind', 'unknown')!r} checkpoint, expected {kind!r}")
    if "config" not in meta:
        raise CheckpointError(f"{path}: the checkpoint carries no config; it was not written by gvf")
    return meta, tensors


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], path) -> None:
    """Load weights strictly, turning shape/key mismatches into a clear error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: the weights do not match the model built from the checkpoint's config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}); the file is damaged or mixed"
        )
    model.load_state_dict(tensors)


def save_training_state(path, step: int, optimizer: torch.optim.Optimizer, ema: nn.Module | None, extra: dict | None = None) -> Path:
    """Optimizer moments, EMA weights and the step, flattened into one safetensors file."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt/{pid}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    if ema is not None:
        for k, v in ema.state_dict().items():
            tensors[f"ema/{k}"] = v.detach().cpu().contiguous()
    meta = {
        "kind": "gvf-training-state",
        "step": str(step),
        "param_groups": json.dumps(state["param_groups"]),
        "scalars": json.dumps(scalars),
        "extra": json.dumps(extra or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_training_state(path, optimizer: torch.optim.Optimizer, ema: nn.Module | None) -> tuple[int, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("kind") != "gvf-training-state":
        raise CheckpointError(f"{path}: not a gvf training state")
    state: dict = {"state": {}, "param_groups": json.loads(meta["param_groups"])}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, pid, name = key.split("/", 2)
            state["state"].setdefault(int(pid), {})[name] = value
    for pid, entries in json.loads(meta["scalars"]).items():
        state["state"].setdefault(int(pid), {}).update(entries)
    optimizer.load_state_dict(state)
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema/")})
    return int(meta["step"]), json.loads(meta.get("extra", "{}"))
