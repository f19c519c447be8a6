"""One camera to and from JSON (gvf_core/cameras.py: camera_from_json, camera_to_json)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gvf_core.cameras import Cameras, camera_from_json, camera_to_json


def orbit_camera(az: float = 30.0) -> Cameras:
    return Cameras.orbit([az], elevation_deg=20.0, distance=3.0, fov_deg=45.0, width=320, height=240)


def valid_dict() -> dict:
    return camera_to_json(orbit_camera(), 320, 240)


@pytest.mark.parametrize("az", [0.0, 30.0, 135.0, -90.0])
def test_round_trip_file_exact(tmp_path, az):
    cams = orbit_camera(az)
    path = tmp_path / "cam" / "camera.json"
    d = camera_to_json(cams, 320, 240, path=path)
    assert set(d) == {"width", "height", "fx", "fy", "cx", "cy", "world_to_camera"}
    assert json.loads(path.read_text()) == d
    back, w, h = camera_from_json(path)
    assert (w, h) == (320, 240) and isinstance(w, int)
    assert len(back) == 1
    assert back.K.dtype == back.world_to_camera.dtype == torch.float32
    assert back.K.shape == (1, 3, 3) and back.world_to_camera.shape == (1, 4, 4)
    assert torch.equal(back.K, cams.K)
    assert torch.equal(back.world_to_camera, cams.world_to_camera)
    torch.testing.assert_close(back.centers, cams.centers)


def test_values_in_opencv_convention():
    d = valid_dict()
    f = 0.5 * 320 / math.tan(math.radians(45.0) / 2)
    assert d["fx"] == pytest.approx(f) and d["fy"] == pytest.approx(f)
    assert (d["cx"], d["cy"]) == (160.0, 120.0)
    assert d["world_to_camera"][3] == [0.0, 0.0, 0.0, 1.0]
    # the camera's z axis (third row of R) points from the camera towards the target (origin)
    cams, _, _ = camera_from_json(d)
    forward = cams.world_to_camera[0, 2, :3]
    torch.testing.assert_close(forward, -cams.centers[0] / cams.centers[0].norm())


def test_from_dict_ignores_extra_keys_and_accepts_ints():
    d = {"width": 64, "height": 32, "fx": 50, "fy": 60, "cx": 32, "cy": 16,
         "world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]], "note": "hand-made"}
    cams, w, h = camera_from_json(d)
    assert (w, h) == (64, 32)
    assert cams.K[0].tolist() == [[50.0, 0.0, 32.0], [0.0, 60.0, 16.0], [0.0, 0.0, 1.0]]
    assert cams.centers[0].tolist() == [0.0, 0.0, -2.0]


def write(tmp_path, d, name="cam.json"):
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


def check_error(tmp_path, d, *fragments):
    path = write(tmp_path, d)
    with pytest.raises(ValueError) as info:
        camera_from_json(path)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_keys_are_listed(tmp_path):
    d = valid_dict()
    del d["fx"], d["world_to_camera"]
    check_error(tmp_path, d, "['fx', 'world_to_camera']")


@pytest.mark.parametrize("key, value", [("width", 0), ("height", -5), ("width", 12.5), ("fx", 0.0), ("fy", -100.0)])
def test_non_positive_sizes(tmp_path, key, value):
    d = valid_dict()
    d[key] = value
    check_error(tmp_path, d, repr(key), "positive")


@pytest.mark.parametrize("key", ["fx", "cx", "height"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "12", None, True])
def test_non_finite_or_non_numbers(tmp_path, key, value):
    d = valid_dict()
    d[key] = value
    check_error(tmp_path, d, repr(key), "finite number")


def test_non_finite_in_matrix(tmp_path):
    d = valid_dict()
    d["world_to_camera"][1][3] = float("nan")
    check_error(tmp_path, d, "finite")


@pytest.mark.parametrize(
    "matrix",
    [
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]],
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]],
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0]],
        "identity",
    ],
)
def test_matrix_not_4x4(tmp_path, matrix):
    d = valid_dict()
    d["world_to_camera"] = matrix
    check_error(tmp_path, d, "4x4")


def test_last_row(tmp_path):
    d = valid_dict()
    d["world_to_camera"][3] = [0, 0, 1, 1]
    check_error(tmp_path, d, "last row", "[0, 0, 0, 1]")


def test_scaled_rotation(tmp_path):
    d = valid_dict()
    d["world_to_camera"] = [[2 * v for v in row[:3]] + [row[3]] for row in d["world_to_camera"][:3]] + [[0, 0, 0, 1]]
    check_error(tmp_path, d, "not orthonormal", "rigid transform without scale")


def test_rotation_tolerance(tmp_path):
    d = valid_dict()
    d["world_to_camera"][0][0] += 2e-5  # within 1e-4
    camera_from_json(write(tmp_path, d))
    d["world_to_camera"][0][0] += 1e-3
    check_error(tmp_path, d, "not orthonormal")


def test_reflection(tmp_path):
    d = valid_dict()
    d["world_to_camera"][0] = [-v for v in d["world_to_camera"][0][:3]] + [d["world_to_camera"][0][3]]
    check_error(tmp_path, d, "reflection", "rigid transform")


def test_not_json_and_not_object(tmp_path):
    path = tmp_path / "cam.json"
    path.write_text("{width: 3")
    with pytest.raises(ValueError, match="cam.json is not valid JSON"):
        camera_from_json(path)
    check_error(tmp_path, [1, 2, 3], "JSON object")


def test_dict_errors_say_camera_dict():
    d = valid_dict()
    d["fx"] = -1.0
    with pytest.raises(ValueError, match="camera dict: 'fx'"):
        camera_from_json(d)


def test_to_json_checks_its_input(tmp_path):
    cams = Cameras.orbit([0.0, 90.0])
    with pytest.raises(ValueError, match="one camera; got 2"):
        camera_to_json(cams, 256, 256)
    with pytest.raises(ValueError, match="'width'"):
        camera_to_json(cams[0], 0, 256, path=tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()
    skewed = Cameras(cams.K[:1].clone(), cams.world_to_camera[:1])
    skewed.K[0, 0, 1] = 0.5
    with pytest.raises(ValueError, match="no skew"):
        camera_to_json(skewed, 256, 256)
    scaled = Cameras(cams.K[:1], cams.world_to_camera[:1] * torch.tensor([2.0, 2.0, 2.0, 1.0])[:, None])
    with pytest.raises(ValueError, match="rigid transform"):
        camera_to_json(scaled, 256, 256)
