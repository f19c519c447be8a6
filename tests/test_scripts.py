"""The scripts in scripts/: the shell ones parse (they run on machines CI never sees: the GPU
checks), the Python ones compile, the probes' rules pick the documented errors and the centroid-depth
probe moves a shape along its centroid's ray."""

import importlib.util
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "scripts"
SCRIPTS = sorted(SCRIPTS_DIR.glob("*.sh"))
PYTHON_SCRIPTS = sorted(SCRIPTS_DIR.glob("*.py"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_device_scripts_are_there():
    assert {"device_prepare.sh", "device_checks.sh"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", PYTHON_SCRIPTS, ids=lambda p: p.name)
def test_python_script_compiles(script, tmp_path):
    py_compile.compile(str(script), cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def _probe(name: str, monkeypatch):
    """The probe script ``scripts/NAME.py`` as a module."""
    monkeypatch.syspath_prepend(str(SCRIPTS_DIR))  # the probes import probe_clips from their folder
    spec = importlib.util.spec_from_file_location(name, SCRIPTS_DIR / f"{name}.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe


def test_rigid_depth_probe_rule(monkeypatch):
    probe = _probe("rigid_depth_probe", monkeypatch)
    row = {"unrefined": 1.0, "off": 0.9, "on_new": 0.5, "on_new_rays": 0.7, "on_new_ratio": 0.12,
           "on_old": 0.8, "on_old_ratio": 0.14}
    assert probe.rule(row, used_below=0.1, own_depth_below=0.1) == 0.9  # the transform not used
    assert probe.rule(row, used_below=0.15, own_depth_below=0.115) == 0.7  # used, the sample's depth
    assert probe.rule(row, used_below=0.15, own_depth_below=0.13) == 0.5  # used, its own depth
    figures = probe.summary([row])
    assert figures["old_fit_sample_depth_below_0.15"] == 80.0
    assert figures["used_below_0.15"]["own_depth_below_0.115"] == 70.0


def test_rigid_blend_probe_rule(monkeypatch):
    probe = _probe("rigid_blend_probe", monkeypatch)
    row = {"unrefined": 1.0, "static": 2.0, "fast": 0.9, "rigid": 1.2, "ratio": 0.3, "rigid_used": False,
           "disagreement": 1.0, **{f"blend{w}": 0.9 - 0.01 * w for w in probe.WEIGHTS}}
    assert probe.rule(row, 5, below=0.4, disagreement=2.0) == 0.85  # mixed
    assert probe.rule(row, 5, below=0.25, disagreement=2.0) == 0.9  # the fit leaves too much
    assert probe.rule(row, 5, below=0.4, disagreement=0.5) == 0.9  # the transform too far from fast
    assert probe.rule({**row, "rigid_used": True}, 5, below=0.4, disagreement=2.0) == 0.9  # fast starts from it
    figures = probe.summary([row])
    assert figures["fast"] == 90.0 and figures["rigid"] == 120.0
    assert figures["below_0.4_disagreement_2.0"]["blend5"] == 85.0


def test_centroid_depth_probe_moves_along_the_centroid_ray(monkeypatch):
    probe = _probe("centroid_depth_probe", monkeypatch)
    generator = torch.Generator().manual_seed(0)
    vertices = torch.randn(3, 50, 3, generator=generator) * 0.3
    angle = torch.tensor(0.4)
    world_to_camera = torch.eye(4)
    world_to_camera[:3, :3] = torch.tensor([[torch.cos(angle), 0, torch.sin(angle)], [0, 1, 0],
                                            [-torch.sin(angle), 0, torch.cos(angle)]])
    world_to_camera[:3, 3] = torch.tensor([0.1, -0.2, 3.0])
    depth = torch.tensor([2.5, 3.0, 3.6])
    moved = probe.at_centroid_depth(vertices, depth, world_to_camera)
    assert torch.allclose(probe.centroid_depth(moved, world_to_camera), depth, atol=1e-5)
    shift = moved - vertices  # one translation per frame: the shape kept
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)

    def pixel(v):  # the centroid's projection
        c = (v @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]).mean(1)
        return c[:, :2] / c[:, 2:]
    assert torch.allclose(pixel(moved), pixel(vertices), atol=1e-5)
    assert probe.depth_travel(moved, world_to_camera) == pytest.approx((0.5 + 1.1) / 3, abs=1e-5)  # 0, 0.5, 1.1 from 2.5
    row = {"unrefined": 0.04, "static": 0.08, "refined": 0.03, "unrefined_true_depth": 0.02, "refined_true_depth": 0.01,
           "travel": {"truth": 0.02, "unrefined": 0.005, "refined": 0.01, "rigid": 0.04}}
    figures = probe.summary([row])
    assert figures["refined"] == 75.0 and figures["refined_true_depth"] == 25.0
    assert figures["travel_over_truth"] == {"truth": 1.0, "unrefined": 0.25, "refined": 0.5, "rigid": 2.0}


def test_refine_preset_probe_lbfgs_rigid_fit_recovers_a_shift(monkeypatch):
    """The probe's L-BFGS drop-in for the rigid fit (``--rigid-opt lbfgs``) fits a known move."""
    from gvf_core.models.rigid_motion import RootTransform
    from gvf_core.models.video_inputs import project

    probe = _probe("refine_preset_probe", monkeypatch)
    T, size = 5, 64
    points = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    K = torch.tensor([[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]])
    w2c = torch.eye(4)
    w2c[2, 3] = 3.0
    shifts = torch.stack([torch.tensor([0.04 * t, -0.02 * t, 0.0]) for t in range(T)])
    positions = torch.stack([project(points + s, K, w2c, size) for s in shifts])
    root = RootTransform(T, points)
    fit = probe.fit_rigid_lbfgs(100)(root, points, positions, torch.ones(T, len(points)), K, w2c, size, size,
                                     0, 0.0, 0.0)
    assert fit["residual_px"] < 0.02 * fit["motion_px"], fit
