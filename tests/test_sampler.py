"""Rectified-flow sampler (gvf_core/models/sampler.py): integrators, guidance, seeds, control."""

from __future__ import annotations

import math

import pytest
import torch

from gvf_core.models.sampler import (
    Cancelled, SamplerConfig, add_noise, guided_velocity, iterate, sample, time_grid,
)

NO_GUIDANCE = dict(guidance_video=1.0, guidance_canonical=1.0, draws=1)  # one trajectory per item
SHAPE = (2, 3, 5, 4)


def test_one_euler_step_is_exact_for_a_straight_path():
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))  # what sample() draws for seed 0

    def denoise(x, t, dv, dc):  # the true velocity of the straight path noise → x0
        return noise - x0

    out = sample(denoise, SHAPE, SamplerConfig(steps=1, method="euler", **NO_GUIDANCE), seed=0)
    torch.testing.assert_close(out, x0)
    # the same field, evaluated as (x_t − x0) / t, is constant along the path: Heun is exact too
    out = sample(lambda x, t, dv, dc: (x - x0) / t.view(-1, 1, 1, 1), SHAPE,
                 SamplerConfig(steps=3, method="heun", **NO_GUIDANCE), seed=0)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)
    # and add_noise is the path it integrates
    t = torch.tensor([0.0, 0.25])
    xt = add_noise(x0, noise, t)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[1], 0.75 * x0[1] + 0.25 * noise[1])


def test_heun_beats_euler_at_equal_model_calls():
    # dx/dt = 2 t x, so x(0) = x(1) · e⁻¹ (a curved, time-dependent field)
    calls = {"n": 0}

    def denoise(x, t, dv, dc):
        calls["n"] += 1
        return 2 * t.view(-1, 1, 1, 1) * x

    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    exact = noise * math.exp(-1.0)
    errors = {}
    for method, steps in (("euler", 5), ("heun", 3)):
        config = SamplerConfig(steps=steps, method=method, **NO_GUIDANCE)
        calls["n"] = 0
        out = sample(denoise, SHAPE, config, seed=3)
        assert calls["n"] == config.model_calls == 5
        errors[method] = float((out - exact).abs().max() / exact.abs().max())
    assert errors["heun"] < 0.5 * errors["euler"]
    assert errors["euler"] > 1e-2  # the field really is curved


# ------------------------------------------------------------------------------ guidance
def _branch_denoiser(values: dict[str, float], calls: list):
    """Returns a constant per branch: full (no drops), no_video (video dropped), none (both)."""

    def denoise(x, t, drop_video, drop_canonical):
        calls.append(x.shape[0])
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            key = "none" if drop_canonical[i] else ("no_video" if drop_video[i] else "full")
            assert not (drop_canonical[i] and not drop_video[i]), "canonical dropped alone is not a branch"
            out[i] = values[key]
        return out

    return denoise


@pytest.mark.parametrize("sv, sc", [(2.5, 1.7), (3.0, 1.0), (1.0, 2.0), (1.0, 1.0)])
def test_guided_velocity_arithmetic(sv, sc):
    values = {"full": 3.0, "no_video": 1.25, "none": -0.5}
    calls: list = []
    x = torch.zeros(2, 3, 4)
    v = guided_velocity(_branch_denoiser(values, calls), x, 0.4, SamplerConfig(guidance_video=sv, guidance_canonical=sc))
    expected = values["none"] + sc * (values["no_video"] - values["none"]) + sv * (values["full"] - values["no_video"])
    torch.testing.assert_close(v, torch.full_like(x, expected))
    assert len(calls) == 1  # all branches in one batched call
    assert calls[0] == {(1.0, 1.0): 2, (3.0, 1.0): 4, (1.0, 2.0): 6, (2.5, 1.7): 6}[(sv, sc)]


def test_guidance_branches_get_the_same_x_and_t():
    seen = []

    def denoise(x, t, dv, dc):
        seen.append((x.clone(), t.clone()))
        return torch.zeros_like(x)

    x = torch.randn(2, 5)
    guided_velocity(denoise, x, 0.3, SamplerConfig(guidance_video=2.0, guidance_canonical=1.5))
    xs, ts = seen[0]
    for chunk in xs.chunk(3):
        torch.testing.assert_close(chunk, x)
    torch.testing.assert_close(ts, torch.full((6,), 0.3))


# ------------------------------------------------------------------------------ control
def _toy(x, t, dv, dc):
    return x - 0.3 * torch.tanh(x)


def test_seeds_are_reproducible():
    config = SamplerConfig(steps=4)
    a = sample(_toy, SHAPE, config, seed=7)
    b = sample(_toy, SHAPE, config, seed=7)
    c = sample(_toy, SHAPE, config, seed=8)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


def test_progress_and_cancel():
    seen = []
    sample(_toy, SHAPE, SamplerConfig(steps=5), progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]

    steps_done = []
    with pytest.raises(Cancelled, match="after step 2 of 5"):
        sample(_toy, SHAPE, SamplerConfig(steps=5), progress=lambda i, n: steps_done.append(i),
               cancel=lambda: len(steps_done) >= 2)
    assert steps_done == [1, 2]


def test_constrain_holds_frame_zero():
    def constrain(x):
        x = x.clone()
        x[:, 0] = 0
        return x

    def denoise(x, t, dv, dc):  # pushes every frame away from zero
        return x - 1.0

    for method in ("euler", "heun"):
        states = list(iterate(denoise, SHAPE, SamplerConfig(steps=3, method=method), constrain=constrain))
        assert [s.index for s in states] == [1, 2, 3] and states[-1].t == 0.0
        for s in states:
            assert s.x[:, 0].abs().max() == 0
            assert s.x[:, 1:].abs().min() > 0
    unconstrained = sample(denoise, SHAPE, SamplerConfig(steps=3))
    assert unconstrained[:, 0].abs().max() > 0.1


def test_config_validation():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        SamplerConfig(steps=0)
    with pytest.raises(ValueError, match="unknown sampler method 'dpm'"):
        SamplerConfig(method="dpm")
    assert SamplerConfig(steps=4, method="euler").model_calls == 4
    assert SamplerConfig(steps=4, method="heun").model_calls == 7
    with pytest.raises(ValueError, match="draws must be >= 1"):
        SamplerConfig(draws=0)


def _two_point_posterior(x, t, dv, dc):
    """The exact velocity when x₀ is ±1 with equal odds: E[ε − x₀ | x_t] = (x_t − E[x₀ | x_t]) / t,
    E[x₀ | x_t] = tanh((1 − t) x_t / t²). The posterior mean from pure noise is 0."""
    t = t.view(-1, *([1] * (x.dim() - 1))).clamp(min=1e-4)
    return (x - torch.tanh((1 - t) * x / t ** 2)) / t


def test_draws_average_towards_the_posterior_mean():
    shape = (1, 400)  # 400 independent scalar items
    single = sample(_two_point_posterior, shape, SamplerConfig(steps=8, draws=1), seed=0)
    assert single.shape == shape and single.abs().mean() > 0.9  # each draw is a sharp sample, ±1
    averaged = sample(_two_point_posterior, shape, SamplerConfig(steps=8, draws=16), seed=0)
    assert averaged.shape == shape
    # the mean of 16 draws of ±1 is off the posterior mean by ~0.2 on average (single draws: 1)
    assert averaged.pow(2).mean() < 0.25 * single.pow(2).mean()


def test_draws_run_as_one_batch_laid_out_draw_major():
    targets = torch.tensor([[-2.0], [3.0]])  # two items, B = 2
    seen = []

    def denoise(x, t, dv, dc):  # the exact straight path to each row's item: row k·B + b is item b
        seen.append(x.shape[0])
        return (x - targets.repeat(x.shape[0] // 2, 1)) / t.view(-1, 1)

    out = sample(denoise, (2, 1), SamplerConfig(steps=3, draws=5), seed=1)
    assert seen == [10, 10, 10]  # 5 draws × 2 items per call, one call per step
    torch.testing.assert_close(out, targets)


def test_time_grid_shift():
    plain = time_grid(8)
    torch.testing.assert_close(plain, torch.linspace(1, 0, 9))
    shifted = time_grid(8, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0
    assert (shifted[1:] < shifted[:-1]).all()  # strictly decreasing
    steps = shifted[:-1] - shifted[1:]
    assert steps[0] < plain[0] - plain[1] < steps[-1]  # small steps near t = 1, large near 0
    assert int((shifted[1:] > 0.5).sum()) > int((plain[1:] > 0.5).sum())  # more steps spent above t = 0.5


def test_the_cli_the_pipeline_and_the_sampler_share_one_default():
    from gvf_core.cli import build_parser
    from gvf_core.models.sampler_config import DEFAULT_SAMPLER
    from gvf_core.pipeline.animate import AnimateSettings

    assert AnimateSettings().sampler() == DEFAULT_SAMPLER == SamplerConfig()
    for argv in (["animate", "mesh.obj", "video.mp4", "--out", "x"], ["eval", "animate"]):
        args = build_parser().parse_args(argv)
        assert (args.steps, args.method, args.guidance, args.draws) == (DEFAULT_SAMPLER.steps, DEFAULT_SAMPLER.method,
                                                                        DEFAULT_SAMPLER.guidance_video, DEFAULT_SAMPLER.draws)
    # the posterior-mean default: few Euler steps, no guidance (docs/models.md)
    assert DEFAULT_SAMPLER.method == "euler" and DEFAULT_SAMPLER.guidance_video == 1.0 and DEFAULT_SAMPLER.model_calls <= 2


def test_max_batch_splits_the_calls_not_the_result():
    calls = []

    def denoise(x, t, dv, dc):
        calls.append(x.shape[0])
        return x - 0.3 * torch.tanh(x) * t.view(-1, 1, 1, 1)

    config = SamplerConfig(steps=2, draws=8)
    whole = sample(denoise, (1, 3, 5, 4), config, seed=4)
    assert calls == [8, 8]
    calls.clear()
    split = sample(denoise, (1, 3, 5, 4), config, seed=4, max_batch=2)
    assert calls == [2] * 8  # four calls of two draws per step
    torch.testing.assert_close(split, whole)
