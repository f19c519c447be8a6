"""Point Cache 2 files for Blender's Mesh Cache modifier (gvf_core/pc2.py)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from gvf_core.pc2 import PC2_SIGNATURE, PC2Error, read_pc2, write_pc2


def random_vertices(T: int = 5, V: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(T, V, 3)).astype(np.float32)


def test_round_trip_exact(tmp_path):
    verts = random_vertices()
    path = write_pc2(tmp_path / "anim.pc2", verts, start_frame=3.0, sample_rate=0.5)
    out, start, rate = read_pc2(path)
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, verts)
    assert (start, rate) == (3.0, 0.5)
    out[0, 0, 0] = 1.0  # a writable copy, not a view of read-only bytes


def test_round_trip_float64_and_torch(tmp_path):
    verts = random_vertices(T=2, V=3).astype(np.float64) + 1e-9
    write_pc2(tmp_path / "a.pc2", verts)
    np.testing.assert_array_equal(read_pc2(tmp_path / "a.pc2")[0], verts.astype(np.float32))
    write_pc2(tmp_path / "b.pc2", torch.from_numpy(verts).requires_grad_())
    np.testing.assert_array_equal(read_pc2(tmp_path / "b.pc2")[0], verts.astype(np.float32))


def test_header_byte_layout(tmp_path):
    verts = random_vertices(T=4, V=6)
    path = write_pc2(tmp_path / "anim.pc2", verts, start_frame=1.5, sample_rate=2.0)
    data = path.read_bytes()
    assert len(data) == 32 + 4 * 6 * 3 * 4
    assert data[:12] == b"POINTCACHE2\0" == PC2_SIGNATURE
    assert struct.unpack("<i", data[12:16]) == (1,)  # version
    assert struct.unpack("<i", data[16:20]) == (6,)  # num_points
    assert struct.unpack("<f", data[20:24]) == (1.5,)  # start_frame
    assert struct.unpack("<f", data[24:28]) == (2.0,)  # sample_rate
    assert struct.unpack("<i", data[28:32]) == (4,)  # num_samples
    # body: float32 little-endian, sample-major, x y z per point
    assert struct.unpack("<3f", data[32:44]) == tuple(verts[0, 0].tolist())
    assert struct.unpack("<3f", data[32 + 6 * 12 : 44 + 6 * 12]) == tuple(verts[1, 0].tolist())
    np.testing.assert_array_equal(np.frombuffer(data[32:], "<f4").reshape(4, 6, 3), verts)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "anim.pc2"
    write_pc2(path, random_vertices())
    with pytest.raises(PC2Error):
        write_pc2(path, np.full((2, 3, 3), np.nan, np.float32))
    np.testing.assert_array_equal(read_pc2(path)[0], random_vertices())  # old file intact
    assert [p.name for p in path.parent.iterdir()] == ["anim.pc2"]


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 2), (1, 2, 3, 3), (0, 4, 3), (2, 0, 3)])
def test_wrong_shape(tmp_path, shape):
    path = tmp_path / "bad.pc2"
    with pytest.raises(PC2Error, match="bad.pc2"):
        write_pc2(path, np.zeros(shape, np.float32))
    assert not path.exists()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39])
def test_non_finite_values(tmp_path, value):
    verts = random_vertices()
    verts = verts.astype(np.float64)
    verts[3, 2, 1] = value
    with pytest.raises(PC2Error, match=r"1 of 5 samples.*sample 3.*bad\.pc2"):
        write_pc2(tmp_path / "bad.pc2", verts)


def test_bad_header_values(tmp_path):
    with pytest.raises(PC2Error, match="sample_rate must be positive"):
        write_pc2(tmp_path / "a.pc2", random_vertices(), sample_rate=0.0)
    with pytest.raises(PC2Error, match="finite"):
        write_pc2(tmp_path / "a.pc2", random_vertices(), start_frame=float("nan"))


def test_truncated_file(tmp_path):
    path = write_pc2(tmp_path / "anim.pc2", random_vertices())
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(PC2Error, match=r"anim\.pc2: truncated PC2 file: header says 5 samples x 7 points"):
        read_pc2(path)
    path.write_bytes(data[:20])
    with pytest.raises(PC2Error, match=r"anim\.pc2: truncated PC2 file: 20 bytes"):
        read_pc2(path)


def test_trailing_bytes(tmp_path):
    path = write_pc2(tmp_path / "anim.pc2", random_vertices())
    path.write_bytes(path.read_bytes() + b"\0" * 12)
    with pytest.raises(PC2Error, match="12 extra bytes"):
        read_pc2(path)


def test_bad_signature(tmp_path):
    path = write_pc2(tmp_path / "anim.pc2", random_vertices())
    path.write_bytes(b"POINTCACHE3\0" + path.read_bytes()[12:])
    with pytest.raises(PC2Error, match=r"anim\.pc2 is not a PC2 file"):
        read_pc2(path)


def test_bad_version(tmp_path):
    path = write_pc2(tmp_path / "anim.pc2", random_vertices())
    data = bytearray(path.read_bytes())
    data[12:16] = struct.pack("<i", 2)
    path.write_bytes(bytes(data))
    with pytest.raises(PC2Error, match="unsupported PC2 version 2"):
        read_pc2(path)


def test_errors_are_value_errors():
    assert issubclass(PC2Error, ValueError)
