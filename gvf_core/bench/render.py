"""``gvf bench render``: renderer speed at the project's reference size.

4096 Gaussians at 256×256, one view (defaults). Reports medians of forward and
forward+backward for the tiled torch backend on CPU, the naive dense reference
(all Gaussians × all pixels) measured in the same run with the ratio between them,
and, when CUDA is present, the torch backend on CUDA and gsplat.
"""

from __future__ import annotations

import statistics
import time

import torch

from gvf_core import Cameras, Gaussians
from gvf_core.render import rasterize, rasterize_reference, resolve_backend

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh0")


def bench_scene(num_gaussians: int, seed: int = 0) -> Gaussians:
    """A reproducible object-sized scene: Gaussians in a 0.8-unit cube, 0.5-2.5 % sized."""
    gen = torch.Generator().manual_seed(seed)
    n = num_gaussians
    return Gaussians(
        means=(torch.rand(n, 3, generator=gen) - 0.5) * 0.8,
        quats=torch.randn(n, 4, generator=gen),
        log_scales=torch.log(torch.rand(n, 3, generator=gen) * 0.02 + 0.005),
        opacity_logits=torch.randn(n, generator=gen) + 1.0,
        sh0=torch.randn(n, 3, generator=gen),
    )


def _time(render, gaussians: Gaussians, repeats: int, backward: bool, device: str) -> float:
    times = []
    for _ in range(repeats):
        params = {k: getattr(gaussians, k).detach().clone().requires_grad_(backward) for k in FIELDS}
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = render(Gaussians(**params))
        if backward:
            (out.rgb.sum() + out.alpha.sum()).backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(num_gaussians: int = 4096, size: int = 256, repeats: int = 5, reference: bool = True, reference_repeats: int = 1) -> dict:
    scene = bench_scene(num_gaussians)
    cams = Cameras.orbit([30.0], elevation_deg=15.0, distance=2.0, fov_deg=40.0, width=size, height=size)
    figures: dict = {
        "num_gaussians": num_gaussians,
        "width": size,
        "height": size,
        "views": 1,
        "cpu_threads": torch.get_num_threads(),
        "repeats": repeats,
    }

    def torch_backend(g):
        return rasterize(g, cams, size, size, backend="torch")

    _time(torch_backend, scene, 1, True, "cpu")  # warm-up
    figures["torch_cpu_forward_s"] = _time(torch_backend, scene, repeats, False, "cpu")
    figures["torch_cpu_forward_backward_s"] = _time(torch_backend, scene, repeats, True, "cpu")
    figures["goal_forward_backward_s"] = 0.5
    figures["meets_goal"] = figures["torch_cpu_forward_backward_s"] <= 0.5

    if reference:
        def dense(g):
            return rasterize_reference(g, cams, size, size, method="dense")

        tiny = Cameras.orbit([30.0], distance=2.0, fov_deg=40.0, width=16, height=16)
        _time(lambda g: rasterize_reference(g, tiny, 16, 16, method="dense"), scene, 1, True, "cpu")  # warm-up
        figures["reference_repeats"] = reference_repeats
        figures["dense_cpu_forward_s"] = _time(dense, scene, reference_repeats, False, "cpu")
        figures["dense_cpu_forward_backward_s"] = _time(dense, scene, reference_repeats, True, "cpu")
        figures["speedup_forward_vs_dense"] = figures["dense_cpu_forward_s"] / figures["torch_cpu_forward_s"]
        figures["speedup_forward_backward_vs_dense"] = figures["dense_cpu_forward_backward_s"] / figures["torch_cpu_forward_backward_s"]

    if torch.cuda.is_available():
        gpu_scene = scene.to("cuda")
        cams_gpu = cams.to("cuda")
        figures["cuda_device"] = torch.cuda.get_device_name(0)

        def torch_cuda(g):
            return rasterize(g, cams_gpu, size, size, backend="torch")

        _time(torch_cuda, gpu_scene, 2, True, "cuda")
        figures["torch_cuda_forward_s"] = _time(torch_cuda, gpu_scene, repeats, False, "cuda")
        figures["torch_cuda_forward_backward_s"] = _time(torch_cuda, gpu_scene, repeats, True, "cuda")
        if resolve_backend("auto", torch.device("cuda")) == "gsplat":
            def gsplat(g):
                return rasterize(g, cams_gpu, size, size, backend="gsplat")

            _time(gsplat, gpu_scene, 3, True, "cuda")
            figures["gsplat_forward_s"] = _time(gsplat, gpu_scene, repeats, False, "cuda")
            figures["gsplat_forward_backward_s"] = _time(gsplat, gpu_scene, repeats, True, "cuda")
        else:
            figures["gsplat"] = "unavailable (not installed or does not compile)"
    else:
        figures["cuda"] = "not available"
    return figures
