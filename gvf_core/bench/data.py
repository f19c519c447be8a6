"""``gvf bench data``: data-engine throughput at the default SampleConfig.

Two figures: a per-stage breakdown from ``samples`` samples made in this process (one
torch thread, as in a worker), and the real throughput of ``gvf data make`` with one
worker per core on ``parallel_samples`` samples written to a temporary folder.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from gvf_core.data.make import make_dataset, make_sample
from gvf_core.data.sample import SampleConfig
from gvf_core.data.shards import write_shard

GOAL_SAMPLES_PER_MIN = 30.0


def run(samples: int = 6, parallel_samples: int = 32, workers: int | None = None, first_seed: int = 500_000) -> dict:
    config = SampleConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    timings: dict[str, float] = {}
    made = []
    start = time.perf_counter()
    try:
        for k in range(samples):
            made.append(make_sample(first_seed + k, config, timings=timings))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_shard(os.path.join(tmp, "bench.safetensors"), made)
            timings["write_shard"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    serial_s = time.perf_counter() - start
    figures: dict = {
        "frames": config.frames,
        "image_size": config.image_size,
        "num_gaussians": config.num_gaussians,
        "num_points": config.num_points,
        "serial_samples": samples,
        "serial_s_per_sample": serial_s / samples,
        **{f"stage_{k}_s": v / samples for k, v in timings.items()},
    }
    figures["serial_samples_per_min"] = 60.0 * samples / serial_s

    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_dataset(tmp, split="train", count=parallel_samples, start=first_seed, config=config,
                     workers=workers, shard_size=max(1, parallel_samples // (2 * workers)))
        parallel_s = time.perf_counter() - t0
    figures.update(
        {
            "parallel_workers": workers,
            "parallel_samples": parallel_samples,
            "parallel_samples_per_min": 60.0 * parallel_samples / parallel_s,
            "goal_samples_per_min": GOAL_SAMPLES_PER_MIN,
        }
    )
    figures["meets_goal"] = figures["parallel_samples_per_min"] >= GOAL_SAMPLES_PER_MIN
    return figures
