"""PLY export/import of Gaussians in the common 3DGS layout (gvf_core/ply.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gvf_core.gaussians import Gaussians
from gvf_core.ply import ply_property_names, read_ply, write_ply, write_ply_sequence

# The original 3DGS GaussianModel.save_ply order (SH degree 0); gsplat's export_splats writes
# the same without nx ny nz.
EXPECTED_3DGS = [
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
]
EXPECTED_GSPLAT = [n for n in EXPECTED_3DGS if n not in ("nx", "ny", "nz")]


def random_gaussians(*lead: int, n: int = 37, seed: int = 0, dtype=torch.float32) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*lead, n, *s, generator=g, dtype=dtype)  # noqa: E731
    return Gaussians(means=r(3), quats=r(4), log_scales=r(3) - 4, opacity_logits=r(), sh0=r(3))


def header_of(path) -> list[str]:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].decode("ascii").splitlines()


def assert_same(a: Gaussians, b: Gaussians) -> None:
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh0"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == torch.float32, name
        assert torch.equal(x, y), name


def write_custom_ply(path, names, rows, fmt="binary_little_endian", prefix_elements=(), type_="float"):
    """A PLY written 'by another tool': arbitrary property list, format and leading elements."""
    rows = np.asarray(rows, dtype=np.float32)
    head = ["ply", f"format {fmt} 1.0", "comment made by a test"]
    for name, count, props in prefix_elements:
        head.append(f"element {name} {count}")
        head += [f"property float {p}" for p in props]
    head.append(f"element vertex {len(rows)}")
    head += [f"property {type_} {n}" for n in names]
    head.append("end_header")
    body = b""
    for name, count, props in prefix_elements:
        fill = np.full((count, len(props)), 7.0, dtype=np.float32)
        if fmt == "ascii":
            body += "".join(" ".join(map(str, r)) + "\n" for r in fill).encode()
        else:
            body += fill.astype("<f4").tobytes()
    if fmt == "ascii":
        body += "".join(" ".join(repr(float(v)) for v in r) + "\n" for r in rows).encode()
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        np_type = {"float": "f4", "double": "f8"}[type_]
        body += rows.astype(order + np_type).tobytes()
    path.write_bytes(("\n".join(head) + "\n").encode() + body)


def columns_for(g: Gaussians, names: list[str]) -> np.ndarray:
    """[N, len(names)] values for 3DGS names; anything else gets random filler."""
    rng = np.random.default_rng(1)
    known = {
        **{k: g.means[:, i] for i, k in enumerate("xyz")},
        **{f"f_dc_{i}": g.sh0[:, i] for i in range(3)},
        "opacity": g.opacity_logits,
        **{f"scale_{i}": g.log_scales[:, i] for i in range(3)},
        **{f"rot_{i}": g.quats[:, i] for i in range(4)},
    }
    return np.stack([known[n].numpy() if n in known else rng.normal(size=g.num).astype(np.float32) for n in names], 1)


# ---------------------------------------------------------------------------------- writing
@pytest.mark.parametrize("normals", [True, False])
def test_round_trip_is_exact(tmp_path, normals):
    g = random_gaussians(n=101)
    path = write_ply(tmp_path / "g.ply", g, normals=normals)
    back = read_ply(path)
    assert_same(g, back)
    n_props = len(EXPECTED_3DGS) if normals else len(EXPECTED_GSPLAT)
    assert path.stat().st_size == len("\n".join(header_of(path)) + "\n") + 101 * n_props * 4


def test_round_trip_casts_float64_to_float32(tmp_path):
    g64 = random_gaussians(n=8, dtype=torch.float64)
    back = read_ply(write_ply(tmp_path / "g.ply", g64))
    assert_same(g64.to(torch.float32), back)


def test_empty_round_trip(tmp_path):
    back = read_ply(write_ply(tmp_path / "empty.ply", random_gaussians(n=0)))
    assert back.num == 0 and back.means.shape == (0, 3) and back.opacity_logits.shape == (0,)


def test_header_property_order(tmp_path):
    write_ply(tmp_path / "a.ply", random_gaussians(n=5))
    write_ply(tmp_path / "b.ply", random_gaussians(n=5), normals=False)
    for name, expected in (("a.ply", EXPECTED_3DGS), ("b.ply", EXPECTED_GSPLAT)):
        head = header_of(tmp_path / name)
        assert head[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 5"]
        assert head[3:-1] == [f"property float {p}" for p in expected]
        assert head[-1] == "end_header"
    assert ply_property_names() == EXPECTED_3DGS
    assert ply_property_names(normals=False) == EXPECTED_GSPLAT
    assert ply_property_names(num_rest=2)[9:11] == ["f_rest_0", "f_rest_1"]


def test_normals_are_zero_and_layout_is_row_major(tmp_path):
    g = random_gaussians(n=3)
    path = write_ply(tmp_path / "g.ply", g)
    data = path.read_bytes()
    rows = np.frombuffer(data[data.index(b"end_header\n") + 11 :], dtype="<f4").reshape(3, 17)
    np.testing.assert_array_equal(rows[:, 3:6], 0)
    np.testing.assert_array_equal(rows[:, 0:3], g.means.numpy())
    np.testing.assert_array_equal(rows[:, 13:17], g.quats.numpy())  # rot_0 is w


def test_batched_gaussians_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unbatched"):
        write_ply(tmp_path / "g.ply", random_gaussians(2, n=4))
    assert not (tmp_path / "g.ply").exists()


def test_non_finite_values_are_refused(tmp_path):
    g = random_gaussians(n=4)
    g.means[2, 1] = float("nan")
    with pytest.raises(ValueError, match="1 of 4"):
        write_ply(tmp_path / "g.ply", g)


def test_sequence(tmp_path):
    g = random_gaussians(3, n=11)
    out = tmp_path / "seq" / "nested"
    paths = write_ply_sequence(out, g)
    assert [p.name for p in paths] == ["frame_0000.ply", "frame_0001.ply", "frame_0002.ply"]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in paths]
    for t, p in enumerate(paths):
        assert_same(g[t], read_ply(p))
    assert write_ply_sequence(tmp_path / "other", g[:1], prefix="splat_")[0].name == "splat_0000.ply"
    with pytest.raises(ValueError, match=r"\[T, N, C\]"):
        write_ply_sequence(tmp_path / "bad", random_gaussians(n=5))
    with pytest.raises(ValueError, match=r"\[T, N, C\]"):
        write_ply_sequence(tmp_path / "bad", random_gaussians(2, 2, n=5))


# ---------------------------------------------------------------------------------- reading
def test_truncated_file_raises_naming_the_file(tmp_path):
    path = write_ply(tmp_path / "cut.ply", random_gaussians(n=20))
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match="truncated") as info:
        read_ply(path)
    assert str(path) in str(info.value)
    head_only = tmp_path / "head.ply"
    head_only.write_bytes(data[: data.index(b"end_header")])
    with pytest.raises(ValueError, match="end_header") as info:
        read_ply(head_only)
    assert str(head_only) in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a PLY"),
        (b"solid cube\nfacet normal 0 0 1\n", "not a PLY"),
        (b"ply\nformat binary_middle_endian 1.0\nelement vertex 0\nend_header\n", "unsupported PLY format"),
        (b"ply\nelement vertex 0\nend_header\n", "no 'format'"),
        (b"ply\nformat ascii 1.0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n", "no 'vertex'"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n", "lacks the 3DGS properties"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n1\n", "unsupported PLY property"),
    ],
)
def test_malformed_files_raise_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_ply(path)
    assert str(path) in str(info.value)


def test_compressed_ply_is_refused_clearly(tmp_path):
    path = tmp_path / "c.ply"
    head = "ply\nformat binary_little_endian 1.0\nelement chunk 1\nproperty float min_x\n"
    head += "element vertex 1\nproperty uint packed_position\nproperty uint packed_rotation\nend_header\n"
    path.write_bytes(head.encode() + b"\0" * 12)
    with pytest.raises(ValueError, match="compressed"):
        read_ply(path)


def test_reads_full_sh_file_with_extra_properties(tmp_path):
    """A degree-3 3DGS file (45 f_rest, normals) reads; extras are ignored."""
    g = random_gaussians(n=9)
    names = ply_property_names(num_rest=45)
    write_custom_ply(tmp_path / "sh3.ply", names, columns_for(g, names))
    assert_same(g, read_ply(tmp_path / "sh3.ply"))


def test_reads_gsplat_layout_with_f_rest(tmp_path):
    g = random_gaussians(n=9)
    names = ply_property_names(normals=False, num_rest=9)
    write_custom_ply(tmp_path / "gs.ply", names, columns_for(g, names))
    assert_same(g, read_ply(tmp_path / "gs.ply"))


def test_reads_properties_in_any_order_and_unknown_extras(tmp_path):
    g = random_gaussians(n=6)
    names = list(reversed(EXPECTED_GSPLAT)) + ["red", "confidence"]
    write_custom_ply(tmp_path / "shuffled.ply", names, columns_for(g, names))
    assert_same(g, read_ply(tmp_path / "shuffled.ply"))


@pytest.mark.parametrize("fmt", ["ascii", "binary_big_endian"])
def test_reads_ascii_and_big_endian(tmp_path, fmt):
    g = random_gaussians(n=7)
    write_custom_ply(tmp_path / "g.ply", EXPECTED_3DGS, columns_for(g, EXPECTED_3DGS), fmt=fmt)
    assert_same(g, read_ply(tmp_path / "g.ply"))


def test_reads_double_properties_and_leading_elements(tmp_path):
    g = random_gaussians(n=5)
    lead = [("camera", 2, ["fx", "fy"])]
    rows = columns_for(g, EXPECTED_GSPLAT)
    write_custom_ply(tmp_path / "d.ply", EXPECTED_GSPLAT, rows, type_="double", prefix_elements=lead)
    assert_same(g, read_ply(tmp_path / "d.ply"))
    write_custom_ply(tmp_path / "a.ply", EXPECTED_GSPLAT, rows, fmt="ascii", prefix_elements=lead)
    assert_same(g, read_ply(tmp_path / "a.ply"))


def test_truncated_ascii_raises(tmp_path):
    g = random_gaussians(n=4)
    path = tmp_path / "a.ply"
    write_custom_ply(path, EXPECTED_3DGS, columns_for(g, EXPECTED_3DGS), fmt="ascii")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    with pytest.raises(ValueError, match="truncated") as info:
        read_ply(path)
    assert str(path) in str(info.value)
