"""Driving video → DiT inputs (gvf_core/models/video_inputs.py): crop, intrinsics, rays, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gvf_core.cameras import Cameras
from gvf_core.models.video_inputs import (
    VideoInputError, cell_centres, crop_intrinsics, prepare_video, project, ray_embedding,
)

H, W, T = 64, 80, 4
RED = (220, 30, 40)


def square_frames(rgba: bool = False, under=(0, 0, 0)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A red square moving right on white (RGB) or on a transparent background (RGBA).

    Returns the frames [T, H, W, 3|4] and the union box (x_lo, x_hi, y_lo, y_hi), exclusive ends.
    """
    frames = np.zeros((T, H, W, 4), np.uint8)
    frames[..., :3] = 255 if not rgba else np.array(under, np.uint8)
    frames[..., 3] = 255 if not rgba else 0
    for t in range(T):
        x0, y0 = 22 + 3 * t, 20 + t
        frames[t, y0:y0 + 14, x0:x0 + 12, :3] = RED
        frames[t, y0:y0 + 14, x0:x0 + 12, 3] = 255
    box = (22, 22 + 3 * (T - 1) + 12, 20, 20 + (T - 1) + 14)
    return (frames if rgba else frames[..., :3]), box


def original_K() -> torch.Tensor:
    return torch.tensor([[90.0, 0.0, W / 2], [0.0, 90.0, H / 2], [0.0, 0.0, 1.0]])


def test_rgb_and_rgba_give_the_same_crop_and_pixels():
    size, margin = 32, 0.1
    rgb, box = square_frames(rgba=False)
    rgba, _ = square_frames(rgba=True, under=(0, 0, 0))  # black under the transparent pixels
    a = prepare_video(rgb, original_K(), size, margin)
    b = prepare_video(rgba, original_K(), size, margin)
    assert a.pixels.shape == (T, 4, size, size) == b.pixels.shape
    assert a.crop == b.crop
    torch.testing.assert_close(a.pixels, b.pixels, atol=2e-3, rtol=0)
    torch.testing.assert_close(a.K, b.K)

    x0, y0, side = a.crop
    x_lo, x_hi, y_lo, y_hi = box
    longest = max(x_hi - x_lo, y_hi - y_lo)
    assert side == math.ceil(longest * (1 + 2 * margin))  # square window, longest side + margin
    # the window holds the union box with the margin on both sides (±1 px of rounding)
    pad = margin * longest
    assert x0 <= x_lo - pad + 1 and x0 + side >= x_hi + pad - 1
    assert y0 <= y_lo - (side - (y_hi - y_lo)) / 2 + 1 and y0 + side >= y_hi + (side - (y_hi - y_lo)) / 2 - 1
    assert a.object_fraction == pytest.approx(12 * 14 / (H * W))

    # mask ~1 on the object, ~0 on the background; RGB on white outside the object
    mask = a.pixels[:, 3]
    s = size / side
    for t in range(T):
        cx = (22 + 3 * t + 6 - x0) * s
        cy = (20 + t + 7 - y0) * s
        assert mask[t, int(cy), int(cx)] > 0.99
        torch.testing.assert_close(a.pixels[t, :3, int(cy), int(cx)], torch.tensor(RED) / 255.0, atol=5e-3, rtol=0)
    assert mask[:, 0, 0].max() < 0.01 and mask[:, -1, -1].max() < 0.01
    assert a.pixels[:, :3, 0, 0].min() > 0.99  # white background


def test_crop_reaching_past_the_frame_is_padded_white():
    frames = np.full((3, 40, 40, 3), 255, np.uint8)
    frames[:, 2:30, 0:12] = (10, 200, 10)  # touches the left edge: the window sticks out
    out = prepare_video(frames, original_K(), 16)
    x0, y0, side = out.crop
    assert x0 < 0
    assert out.pixels[:, 3, :, 0].max() < 0.01  # padding has mask 0 ...
    assert out.pixels[:, :3, :, 0].min() > 0.99  # ... and is white


def test_crop_intrinsics_follow_the_points():
    size = 48
    frames, _ = square_frames()
    out = prepare_video(frames, original_K(), size)
    x0, y0, side = out.crop
    w2c = Cameras.orbit([30.0], elevation_deg=10.0, distance=2.5).world_to_camera[0]
    points = torch.tensor([[0.0, 0.0, 0.0], [0.2, -0.1, 0.3], [-0.3, 0.25, -0.1]])
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    pix = (cam / cam[:, 2:]) @ original_K().T  # original image pixels
    expected = torch.stack([(pix[:, 0] - x0) * size / side, (pix[:, 1] - y0) * size / side], dim=-1)
    got = project(points, out.K, w2c, size) * size
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-5)
    # crop_intrinsics is the same map for any window
    K2 = crop_intrinsics(original_K(), 5.0, -3.0, 20.0, 10)
    got2 = project(points, K2, w2c, 10) * 10
    torch.testing.assert_close(got2, torch.stack([(pix[:, 0] - 5) * 0.5, (pix[:, 1] + 3) * 0.5], dim=-1), atol=1e-3, rtol=1e-5)


def test_ray_embedding_hits_projected_points():
    size, grid = 32, 8
    cams = Cameras.orbit([0.0, 70.0], elevation_deg=20.0, distance=2.5, width=size, height=size, fov_deg=45.0)
    K, w2c = cams.K, cams.world_to_camera  # [2, 3, 3], [2, 4, 4]
    rays = ray_embedding(K, w2c, size, grid)
    assert rays.shape == (2, grid * grid, 6)
    d, m = rays[..., :3], rays[..., 3:]
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(2, grid * grid))
    origin = cams.centers  # [2, 3]
    torch.testing.assert_close(m, torch.cross(origin[:, None].expand_as(d), d, dim=-1), atol=1e-5, rtol=1e-5)

    points = torch.tensor([[0.1, -0.2, 0.05], [-0.25, 0.1, 0.2], [0.03, -0.02, 0.04]])  # off the cell edges
    fx = float(K[0, 0, 0])
    for c in range(2):
        uv = project(points, K[c], w2c[c], size)  # crop-side units
        cam = points @ w2c[c, :3, :3].T + w2c[c, :3, 3]
        for p, (u, v), z in zip(points, uv, cam[:, 2]):
            assert 0 < u < 1 and 0 < v < 1
            cell = int(v * grid) * grid + int(u * grid)
            # Plücker distance from the point to each ray: |p × d − m|
            dist = torch.linalg.cross(p.expand_as(d[c]), d[c], dim=-1).sub(m[c]).norm(dim=-1)
            cell_world = (size / grid) * float(z) / fx  # cell side at the point's depth
            assert dist[cell] < 0.75 * cell_world  # within half a cell diagonal
            assert int(dist.argmin()) == cell  # and no other cell's ray is closer
    # the cell centres really are row-major (x, y)
    centres = cell_centres(grid)
    assert centres[1].tolist() == [1.5 / grid, 0.5 / grid] and centres[grid].tolist() == [0.5 / grid, 1.5 / grid]


# ------------------------------------------------------------------------------ errors
def test_blank_video_has_no_object():
    frames = np.full((4, 32, 32, 3), 255, np.uint8)
    with pytest.raises(VideoInputError, match="no object found"):
        prepare_video(frames, original_K(), 16, source="blank.mp4")


def test_object_filling_the_frame_is_refused():
    frames = np.full((3, 128, 128, 3), 255, np.uint8)
    frames[:, 2:-2, 2:-2] = (30, 60, 200)  # 94% of the frame; only the 2-px border is background
    with pytest.raises(VideoInputError, match="fills .* of every frame"):
        prepare_video(frames, original_K(), 16)
    rgba = np.zeros((3, 64, 64, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, :2, :, 3] = 0  # alpha marks nearly everything as object
    with pytest.raises(VideoInputError, match="cannot be told from the background"):
        prepare_video(rgba, original_K(), 16)


def test_noisy_background_is_refused():
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(VideoInputError, match="not a plain background") as info:
        prepare_video(frames, original_K(), 16, source="noise.mp4")
    assert "noise.mp4" in str(info.value) and "RGBA" in str(info.value)


def test_single_frame_and_bad_shapes_are_refused():
    frames, _ = square_frames()
    with pytest.raises(VideoInputError, match="at least 2 frames"):
        prepare_video(frames[:1], original_K(), 16)
    with pytest.raises(VideoInputError, match=r"expected frames \[T, H, W, 3 or 4\]"):
        prepare_video(frames[..., :2], original_K(), 16)
