"""Procedural shapes, skeletons and motion families of the data engine (fast, CPU).

Smoothness bound. Every motion is a smooth function of time, so the second difference of a
vertex track is its acceleration times dt^2: |x[t+1] - 2 x[t] + x[t-1]| ~= |a| dt^2. We bound
the acceleration by ``ACCEL_BOUND = 57.6`` bbox diagonals / s^2, which is exactly
``0.1 * diag`` per frame^2 at 24 fps (a vertex may not change its per-frame velocity by more
than a tenth of the object's size between two frames) and tightens as dt^2 at higher frame
rates: at 96 fps the same motions must stay within 0.1 / 16 diag, which jittery or
discontinuous motions (second difference ~ first difference, not ~ dt^2) cannot.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gvf_core.data.motions import MOTION_FAMILIES, motion_quality, random_motion
from gvf_core.data.shapes import KINDS, asset_from_mesh, random_asset
from gvf_core.data.skeleton import Skeleton, axis_angle_to_matrix, linear_blend_skinning
from gvf_core.geometry import face_areas
from gvf_core.mesh import mesh_from_arrays

ACCEL_BOUND = 57.6  # diag / s^2  (= 0.1 diag per frame^2 at 24 fps)
FPS = 24
TIMES = np.arange(24) / FPS

_ASSETS: dict = {}


def asset(kind: str, seed: int = 0):
    """Cached assets (building is cheap, but tests reuse them across families)."""
    key = (kind, seed)
    if key not in _ASSETS:
        if kind == "user":
            box = random_asset(np.random.default_rng(seed), "primitive").mesh
            _ASSETS[key] = asset_from_mesh(box, np.random.default_rng(seed), skeleton="chain", num_joints=4)
        else:
            _ASSETS[key] = random_asset(np.random.default_rng(seed), kind)
    return _ASSETS[key]


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_within_budget_with_colours_and_weights(kind):
    for seed in range(3):
        a = random_asset(np.random.default_rng(seed), kind, max_vertices=2000)
        m = a.mesh
        assert a.kind == kind
        assert 100 <= m.num_vertices <= 2000
        assert m.vertex_colors is not None or (m.texture is not None and m.uvs is not None)
        if m.vertex_colors is not None:
            assert m.vertex_colors.min() >= 0 and m.vertex_colors.max() <= 1
        assert a.parts.shape == (m.num_vertices,)
        assert face_areas(m.vertices, m.faces).min() > 0
        assert len(np.unique(m.faces)) == m.num_vertices  # no unused vertices
        json.dumps(a.info)
        if kind == "primitive":
            assert a.skeleton is None and a.weights is None
        else:
            J = a.skeleton.num_joints
            assert a.weights.shape == (m.num_vertices, J)
            np.testing.assert_allclose(a.weights.sum(1), 1.0, atol=1e-9)
            assert a.weights.min() >= 0
            assert a.skeleton.chains, "assembled bodies name their chains"
            np.testing.assert_allclose(a.frame @ a.frame.T, np.eye(3), atol=1e-12)


def test_small_budget_is_respected():
    for kind in KINDS:
        a = random_asset(np.random.default_rng(5), kind, max_vertices=600)
        assert a.mesh.num_vertices <= 600


def test_expected_chains_per_kind():
    roles = {"quadruped": "leg", "biped": "arm", "bird": "wing", "insect": "antenna", "fish": "spine", "snake": "spine", "plant": "stem"}
    for kind, role in roles.items():
        assert role in asset(kind).skeleton.chains, kind
    legs = asset("quadruped").skeleton.chains["leg"]
    assert len(legs) == 4 and all(len(c) == 3 for c in legs)
    assert len(asset("insect").skeleton.chains["leg"]) == 6


def test_same_seed_same_asset_different_seed_different():
    for kind in ("quadruped", "plant", "primitive"):
        a = random_asset(np.random.default_rng(3), kind)
        b = random_asset(np.random.default_rng(3), kind)
        c = random_asset(np.random.default_rng(4), kind)
        np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
        np.testing.assert_array_equal(a.mesh.faces, b.mesh.faces)
        assert a.info == b.info
        assert a.mesh.vertices.shape != c.mesh.vertices.shape or not np.allclose(a.mesh.vertices, c.mesh.vertices)


def test_random_kind_draw_is_deterministic():
    kinds = [random_asset(np.random.default_rng(s)).kind for s in range(20)]
    assert kinds == [random_asset(np.random.default_rng(s)).kind for s in range(20)]
    assert len(set(kinds)) >= 5


def test_asset_from_mesh_chain_skeleton():
    box = random_asset(np.random.default_rng(0), "primitive").mesh
    plain = asset_from_mesh(box, np.random.default_rng(0), skeleton="none")
    assert plain.skeleton is None and plain.kind == "user"
    a = asset_from_mesh(box, np.random.default_rng(0), skeleton="chain", num_joints=5)
    assert a.skeleton.num_joints == 5 and a.skeleton.chains == {"chain": [[0, 1, 2, 3, 4]]}
    np.testing.assert_allclose(a.weights.sum(1), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="skeleton must be"):
        asset_from_mesh(box, np.random.default_rng(0), skeleton="bones")


# --------------------------------------------------------------------------- skeleton
def _toy_skeleton():
    pos = np.array([[0.0, 0, 0], [0, 0, 1], [0, 0, 2], [1, 0, 1]])
    return Skeleton(positions=pos, parents=np.array([-1, 0, 1, 1]), names=("root", "mid", "tip", "side"))


def test_lbs_identity_returns_rest():
    for kind in ("quadruped", "bird", "machine"):
        a = asset(kind)
        J = a.skeleton.num_joints
        R = np.broadcast_to(np.eye(3), (3, J, 3, 3))
        G = a.skeleton.forward_kinematics(R)
        np.testing.assert_allclose(G, np.broadcast_to(np.eye(4), G.shape), atol=1e-15)
        X = linear_blend_skinning(a.mesh.vertices, a.weights, a.skeleton, G)
        np.testing.assert_allclose(X, np.broadcast_to(a.mesh.vertices, X.shape), atol=1e-12)


def test_root_transform_moves_everything_rigidly():
    a = asset("quadruped")
    skel = a.skeleton
    J, T = skel.num_joints, 4
    rng = np.random.default_rng(0)
    rv = rng.normal(size=(T, 3))
    R = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
    R[:, 0] = axis_angle_to_matrix(rv)
    shift = rng.normal(size=(T, 3))
    X = linear_blend_skinning(a.mesh.vertices, a.weights, skel, skel.forward_kinematics(R, shift))
    p0 = skel.positions[0]
    want = np.einsum("tab,vb->tva", R[:, 0], a.mesh.vertices - p0) + p0 + shift[:, None]
    np.testing.assert_allclose(X, want, atol=1e-10)


def test_forward_kinematics_composes_along_the_chain():
    skel = _toy_skeleton()
    R = np.broadcast_to(np.eye(3), (1, 4, 3, 3)).copy()
    R[0, 1] = axis_angle_to_matrix(np.array([0.0, np.pi / 2, 0.0]))  # bend "mid" 90 deg about +y
    G = skel.forward_kinematics(R)
    tip = G[0, 2] @ np.array([0, 0, 2, 1.0])
    np.testing.assert_allclose(tip[:3], [1, 0, 1], atol=1e-12)  # (0,0,2) swings about (0,0,1) to (1,0,1)
    np.testing.assert_allclose(G[0, 0], np.eye(4), atol=1e-15)  # the root does not move
    W = np.zeros((2, 4))
    W[0, 2] = 1
    W[1, [0, 2]] = 0.5  # halfway blend
    v = np.array([[0, 0, 2.0], [0, 0, 2.0]])
    X = linear_blend_skinning(v, W, skel, G)
    np.testing.assert_allclose(X[0, 0], [1, 0, 1], atol=1e-12)
    np.testing.assert_allclose(X[0, 1], [0.5, 0, 1.5], atol=1e-12)


def test_skeleton_validation():
    with pytest.raises(ValueError, match="parents"):
        Skeleton(positions=np.zeros((2, 3)), parents=np.array([-1, 1]), names=("a", "b"))
    with pytest.raises(ValueError, match="unique"):
        Skeleton(positions=np.zeros((2, 3)), parents=np.array([-1, 0]), names=("a", "a"))
    with pytest.raises(ValueError, match="local_rotations"):
        _toy_skeleton().forward_kinematics(np.zeros((2, 3, 3, 3)))


def test_axis_angle_matches_rodrigues():
    rv = np.random.default_rng(0).normal(size=(20, 3))
    R = axis_angle_to_matrix(rv)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("nab,nb->na", R, rv), rv, atol=1e-12)  # the axis is fixed
    np.testing.assert_allclose(axis_angle_to_matrix(np.zeros(3)), np.eye(3))


# --------------------------------------------------------------------------- motions
MOTION_KINDS = ("primitive", "quadruped", "bird", "fish", "plant", "machine", "user")


def _check_motion(a, X, times, fps=None):
    V = a.mesh.num_vertices
    diag = a.mesh.bbox_diagonal
    assert X.shape == (len(times), V, 3)
    assert np.isfinite(X).all()
    np.testing.assert_array_equal(X[0], a.mesh.vertices)  # frame 0 is the rest mesh
    dt = float(np.mean(np.diff(times)))
    d2 = np.abs(X[2:] - 2 * X[1:-1] + X[:-2]).max()
    assert d2 <= ACCEL_BOUND * diag * dt**2, f"second difference {d2 / diag:.4f} diag > bound {ACCEL_BOUND * dt**2:.4f}"
    mag = np.linalg.norm(X - X[:1], axis=-1).mean() / diag
    assert mag >= 0.005, f"motion too small: {mag:.4f}"
    ratio = face_areas(X, a.mesh.faces) / face_areas(a.mesh.vertices, a.mesh.faces)
    assert ratio.min() > 1e-3, f"a face collapsed: area ratio {ratio.min():.2e}"
    return mag


@pytest.mark.parametrize("family", list(MOTION_FAMILIES))
def test_every_family_is_finite_smooth_and_non_degenerate(family):
    for kind in MOTION_KINDS:
        a = asset(kind)
        if family == "articulated" and a.skeleton is None:
            with pytest.raises(ValueError, match="skeleton"):
                MOTION_FAMILIES[family](a, np.random.default_rng(0), TIMES)
            continue
        for seed in range(2):
            info: dict = {}
            X = MOTION_FAMILIES[family](a, np.random.default_rng(seed), TIMES, info)
            mag = _check_motion(a, X, TIMES)
            assert info["family"] == family and "fallback_for" not in info["params"]
            assert info["quality"]["magnitude"] == pytest.approx(mag, rel=1e-9)
            json.dumps(info)


@pytest.mark.parametrize("family", ["rigid", "bend", "wave", "random_field", "articulated", "combo"])
def test_smoothness_scales_with_dt_squared_at_a_high_frame_rate(family):
    """Same clip length at 4x the frame rate: the second difference must shrink ~16x."""
    times = np.arange(93) / 96.0  # the same 23/24 s as TIMES
    for kind in ("quadruped", "snake"):
        a = asset(kind)
        X = MOTION_FAMILIES[family](a, np.random.default_rng(1), times)
        _check_motion(a, X, times)


def test_motion_does_not_depend_on_sampling_rate():
    """A motion is a function of time: 96 fps frames at the 24 fps times equal the 24 fps clip."""
    fine = np.arange(93) / 96.0
    compared = 0
    for family in ("rigid", "twist", "articulated"):
        a = asset("quadruped")
        i1, i2 = {}, {}
        coarse = MOTION_FAMILIES[family](a, np.random.default_rng(2), TIMES, i1)
        dense = MOTION_FAMILIES[family](a, np.random.default_rng(2), fine, i2)
        if i1["tries"] == i2["tries"]:  # the same draw was accepted
            np.testing.assert_allclose(dense[::4], coarse, atol=1e-9 * a.mesh.bbox_diagonal)
            compared += 1
    assert compared >= 2


def test_same_seed_same_motion_different_seed_different():
    a = asset("quadruped")
    for family in MOTION_FAMILIES:
        x1, info1 = random_motion(a, np.random.default_rng(11), TIMES, family=family)
        x2, info2 = random_motion(a, np.random.default_rng(11), TIMES, family=family)
        x3, _ = random_motion(a, np.random.default_rng(12), TIMES, family=family)
        np.testing.assert_array_equal(x1, x2)
        assert json.dumps(info1, sort_keys=True) == json.dumps(info2, sort_keys=True)
        assert not np.allclose(x1, x3)


def test_random_motion_picks_families_and_labels_magnitude():
    prim, quad = asset("primitive"), asset("quadruped")
    seen = set()
    mags = []
    for s in range(40):
        a = prim if s % 2 else quad
        X, info = random_motion(a, np.random.default_rng(s), TIMES)
        seen.add(info["family"])
        mags.append(info["quality"]["magnitude"])
        if a is prim:
            assert info["family"] != "articulated"
    assert len(seen) >= 6
    assert min(mags) >= 0.005 and max(mags) > 0.05  # a spread of small and large motions
    X, info = random_motion(prim, np.random.default_rng(0), TIMES, weights={"twist": 1.0})
    assert info["family"] == "twist"


def test_random_motion_errors_and_single_frame():
    prim = asset("primitive")
    with pytest.raises(ValueError, match="unknown family"):
        random_motion(prim, np.random.default_rng(0), TIMES, family="dance")
    with pytest.raises(ValueError, match="skeleton"):
        random_motion(prim, np.random.default_rng(0), TIMES, family="articulated")
    with pytest.raises(ValueError, match="increasing"):
        random_motion(prim, np.random.default_rng(0), TIMES[::-1], family="rigid")
    X, info = random_motion(prim, np.random.default_rng(0), np.array([0.5]), family="bend")
    np.testing.assert_array_equal(X, prim.mesh.vertices[None])


def test_motion_quality_flags_collapse_and_jitter():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    f = np.array([[0, 1, 2]])
    X = np.stack([v, v * [1, 1, 0.5], v * [1, 1e-6, 1]])
    q = motion_quality(v, f, X, np.arange(3) / 24)
    assert q["min_area_ratio"] < 1e-5 and q["magnitude"] > 0
    jitter = np.stack([v, v + 0.1, v, v + 0.1])
    assert motion_quality(v, f, jitter, np.arange(4) / 24)["max_accel"] > ACCEL_BOUND


def test_articulated_on_a_user_mesh_chain():
    a = asset("user")
    info: dict = {}
    X = MOTION_FAMILIES["articulated"](a, np.random.default_rng(3), TIMES, info)
    _check_motion(a, X, TIMES)
    assert "chain" in info["params"]["components"] or "pose" in info["params"]["components"]


def test_mesh_from_arrays_asset_without_colours_is_fine():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    a = asset_from_mesh(mesh_from_arrays(v, f), np.random.default_rng(0), skeleton="none")
    X, info = random_motion(a, np.random.default_rng(0), TIMES)
    assert X.shape == (24, 4, 3) and np.isfinite(X).all()
