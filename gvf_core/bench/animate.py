"""``gvf bench animate``: stage timings of the pipeline.

1. The shipped ``tiny`` model on the bundled sample (greenman + walk.mp4), ``frames``
   frames, on the chosen device: the timings ``animate()`` reports per stage.
2. With CUDA: the ``paper`` presets (VAE + DiT, randomly initialised: this measures
   speed only) at 8192 Gaussians, 24 frames, diffusion stage timed separately (the
   paper reports 1.5 s on an A100 for its diffusion stage).
"""

from __future__ import annotations

import time

import torch

from gvf_core.demo import SAMPLE_ASSET, SAMPLE_VIDEO
from gvf_core.models.sampler_config import DEFAULT_SAMPLER
from gvf_core.pipeline import animate
from gvf_core.pipeline.core import Models, load_models


def _paper_models(device: str) -> Models:
    from gvf_core.models.dit import DIT_PRESETS, GVFDiT
    from gvf_core.models.vae import VAE_PRESETS, GVFVAE

    torch.manual_seed(0)
    return Models(GVFVAE(VAE_PRESETS["paper"]).to(device).eval(), GVFDiT(DIT_PRESETS["paper"]).to(device).eval(),
                  "paper presets, random weights (speed only)")


def _one(models: Models, frames: int, steps: int, device: str, num_gaussians: int,
         draws: int = DEFAULT_SAMPLER.draws, refine: str = "auto") -> dict:
    anim = animate(SAMPLE_ASSET, SAMPLE_VIDEO, frames=frames, steps=steps, device=device, model=models,  # one segment
                   num_gaussians=num_gaussians, segment_frames=max(frames, 2), overlap=1, draws=draws, refine=refine)
    return {"frames": anim.num_frames, "gaussians": int(anim.model_gaussians.num),
            "stages_s": {k: round(v, 4) for k, v in anim.timings.items()}}


def run(frames: int = 24, steps: int = DEFAULT_SAMPLER.steps, device: str = "cpu", draws: int = DEFAULT_SAMPLER.draws) -> dict:
    """Stage timings of one segment of the sample clip with the shipped model (and the ``paper``
    preset on CUDA); beside them, the diffusion stage of a single draw in the same run, so the
    cost of averaging ``draws`` samples shows as a ratio."""
    out = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": steps,
           "method": DEFAULT_SAMPLER.method, "guidance_video": DEFAULT_SAMPLER.guidance_video, "draws": draws}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    t0 = time.perf_counter()
    models = load_models(None, device)
    out["load_models_s"] = time.perf_counter() - t0
    _one(models, frames, 2, device, 4096)  # warm-up
    out["tiny"] = _one(models, frames, steps, device, 4096, draws)
    if draws != 1:
        one = _one(models, frames, steps, device, 4096, 1, refine="off")["stages_s"]["diffusion"]
        out["tiny"]["diffusion_one_draw_s"] = one
        out["tiny"]["diffusion_ratio_to_one_draw"] = round(out["tiny"]["stages_s"]["diffusion"] / max(one, 1e-9), 2)
    if device.startswith("cuda"):
        paper = _paper_models(device)
        _one(paper, frames, 2, device, 8192)
        torch.cuda.synchronize()
        out["paper"] = _one(paper, frames, steps, device, 8192, draws)
        out["paper"]["note"] = "random weights; paper reports 1.5 s for its diffusion stage on an A100"
    return out
