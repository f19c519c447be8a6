"""Rectified-flow sampling, separate from the model.

Formulation: x_t = (1 − t)·x₀ + t·ε, the model predicts the velocity v = ε − x₀, and
sampling integrates dx/dt = v from t = 1 (noise) to t = 0 with Euler or Heun steps on
a time grid optionally shifted towards the noisy end (``shift`` > 1, as in SD3). Why
rectified flow rather than v-prediction + DPM-Solver++: the measured quality-vs-steps
curve is in docs/models.md (``gvf eval animate --sweep-steps``).

Two-scale classifier-free guidance over the canonical (c) and video (v) conditions:

    v̂ = v(∅, ∅) + s_c · (v(c, ∅) − v(∅, ∅)) + s_v · (v(c, v) − v(c, ∅))

All branches run as one batched call. ``sample`` reports progress per step, can be
cancelled between steps (``Cancelled``), draws its noise from a fixed seed and returns the
mean of ``config.draws`` samples from independent noise (integrated together, as one batch).

Settings and the default: sampler_config.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from gvf_core.models.sampler_config import SamplerConfig

Denoiser = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
"""(x [N, ...], t [N], drop_video [N] bool, drop_canonical [N] bool) → velocity [N, ...]."""


class Cancelled(RuntimeError):
    """Raised when a long job (sampling, refinement, a pipeline stage) is cancelled."""


@dataclass
class SamplerStep:
    index: int  # 1-based step just finished
    total: int
    t: float  # time reached
    x: Tensor


def time_grid(steps: int, shift: float = 1.0, device=None) -> Tensor:
    t = torch.linspace(1.0, 0.0, steps + 1, device=device)
    return shift * t / (1 + (shift - 1) * t)


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t for flow times t [B] (broadcast over the trailing dims)."""
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + t * noise


def guided_velocity(denoise: Denoiser, x: Tensor, t: float, config: SamplerConfig) -> Tensor:
    B = x.shape[0]
    tt = torch.full((B,), t, device=x.device)
    no, yes = torch.zeros(B, dtype=torch.bool, device=x.device), torch.ones(B, dtype=torch.bool, device=x.device)
    sv, sc = config.guidance_video, config.guidance_canonical
    if sv == 1.0 and sc == 1.0:
        return denoise(x, tt, no, no)
    if sc == 1.0:  # v(c, ∅) + s_v (v(c, v) − v(c, ∅))
        v = denoise(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([no, yes]), torch.cat([no, no]))
        full, no_video = v.chunk(2)
        return no_video + sv * (full - no_video)
    v = denoise(torch.cat([x, x, x]), torch.cat([tt, tt, tt]), torch.cat([no, yes, yes]), torch.cat([no, no, yes]))
    full, no_video, none = v.chunk(3)
    return none + sc * (no_video - none) + sv * (full - no_video)


def iterate(
    denoise: Denoiser,
    shape: tuple[int, ...],
    config: SamplerConfig = SamplerConfig(),
    seed: int = 0,
    device="cpu",
    constrain: Callable[[Tensor], Tensor] | None = None,
    noise: Tensor | None = None,
    max_batch: int | None = None,
) -> Iterator[SamplerStep]:
    """Yield the state after each step; the last one holds the sample at t = 0.

    ``constrain`` (optional) is applied to the state after every step (e.g. clamping
    known frames); ``noise`` overrides the seeded starting noise; ``max_batch`` (optional)
    caps the rows of the state one model call takes (the result does not depend on it).
    """
    if noise is None:
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(shape, generator=gen)
    x = noise.to(device)
    if constrain is not None:
        x = constrain(x)
    grid = time_grid(config.steps, config.shift).tolist()

    def velocity(x: Tensor, t: float) -> Tensor:
        if max_batch is None or x.shape[0] <= max_batch:
            return guided_velocity(denoise, x, t, config)
        return torch.cat([guided_velocity(denoise, part, t, config) for part in x.split(max_batch)])

    for i in range(config.steps):
        t, t_next = grid[i], grid[i + 1]
        v = velocity(x, t)
        x_next = x + (t_next - t) * v
        if config.method == "heun" and t_next > 0:
            if constrain is not None:
                x_next = constrain(x_next)
            v2 = velocity(x_next, t_next)
            x_next = x + (t_next - t) * 0.5 * (v + v2)
        x = x_next if constrain is None else constrain(x_next)
        yield SamplerStep(i + 1, config.steps, t_next, x)


def sample(
    denoise: Denoiser,
    shape: tuple[int, ...],
    config: SamplerConfig = SamplerConfig(),
    seed: int = 0,
    device="cpu",
    constrain: Callable[[Tensor], Tensor] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    max_batch: int | None = None,
) -> Tensor:
    """Run :func:`iterate` to the end for ``config.draws`` samples of ``shape`` [B, ...] and return
    their mean [B, ...]; ``cancel()`` returning True stops it with :class:`Cancelled`.

    The draws are integrated together: ``denoise`` sees up to draws × B rows, draw-major (row
    k·B + b is draw k of item b; ``max_batch`` caps the rows per call, a multiple of B keeps
    whole draws together), so a denoiser whose conditions are one item (B = 1) repeats them for
    every row it gets.
    """
    draws = config.draws
    x = None
    with torch.no_grad():
        for step in iterate(denoise, (draws * shape[0], *shape[1:]), config, seed, device, constrain,
                            max_batch=max_batch):
            x = step.x
            if progress is not None:
                progress(step.index, step.total)
            if cancel is not None and step.index < step.total and cancel():
                raise Cancelled(f"sampling cancelled after step {step.index} of {step.total}")
    return x.reshape(draws, *shape).mean(0)
