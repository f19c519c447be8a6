"""What the trainers share: the learning-rate schedule, one optimisation step with EMA, and
resumable checkpoints (EMA weights for use, raw weights + optimizer state for resuming)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from gvf_core.models.checkpoint import load_training_state, save_training_state

RAW_WEIGHTS = "training_model.safetensors"
TRAINING_STATE = "training_state.safetensors"


def warmup_cosine(step: int, peak: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine decay to 10 %."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA, a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def optimize(loss: Tensor, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, lr: float,
             grad_clip: float, ema_decay: float) -> float:
    """Backward, clip, step at ``lr``, update the EMA; returns the gradient norm before clipping."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - ema_decay)
    return float(grad_norm)


def save_checkpoint(out_dir, step: int, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
                    save_weights: Callable[[Path], object]) -> None:
    """``save_weights(out_dir)`` writes the EMA model file; then the resume state beside it."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(out_dir)
    save_training_state(out_dir / TRAINING_STATE, step, optimizer, ema)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out_dir / RAW_WEIGHTS))


def resume_checkpoint(out_dir, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer) -> int | None:
    """The step restored from ``out_dir``, or None when it holds no checkpoint."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    if not (out_dir / TRAINING_STATE).exists():
        return None
    model.load_state_dict(load_file(str(out_dir / RAW_WEIGHTS)))
    step, _ = load_training_state(out_dir / TRAINING_STATE, optimizer, ema)
    return step
