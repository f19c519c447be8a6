"""The scripts in scripts/: the shell ones parse (they run on machines CI never sees: the GPU
checks), the Python ones compile, and the rigid-depth probe's rule picks the documented errors."""

import importlib.util
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

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


def test_rigid_depth_probe_rule(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS_DIR))  # the probes import probe_clips from their folder
    spec = importlib.util.spec_from_file_location("rigid_depth_probe", SCRIPTS_DIR / "rigid_depth_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    row = {"unrefined": 1.0, "off": 0.9, "on_new": 0.5, "on_new_rays": 0.7, "on_new_ratio": 0.12,
           "on_old": 0.8, "on_old_ratio": 0.14}
    assert probe.rule(row, used_below=0.1, own_depth_below=0.1) == 0.9  # the transform not used
    assert probe.rule(row, used_below=0.15, own_depth_below=0.115) == 0.7  # used, the sample's depth
    assert probe.rule(row, used_below=0.15, own_depth_below=0.13) == 0.5  # used, its own depth
    figures = probe.summary([row])
    assert figures["old_fit_sample_depth_below_0.15"] == 80.0
    assert figures["used_below_0.15"]["own_depth_below_0.115"] == 70.0


def test_rigid_blend_probe_rule(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS_DIR))
    spec = importlib.util.spec_from_file_location("rigid_blend_probe", SCRIPTS_DIR / "rigid_blend_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    row = {"unrefined": 1.0, "static": 2.0, "fast": 0.9, "rigid": 1.2, "ratio": 0.3, "rigid_used": False,
           "disagreement": 1.0, **{f"blend{w}": 0.9 - 0.01 * w for w in probe.WEIGHTS}}
    assert probe.rule(row, 5, below=0.4, disagreement=2.0) == 0.85  # mixed
    assert probe.rule(row, 5, below=0.25, disagreement=2.0) == 0.9  # the fit leaves too much
    assert probe.rule(row, 5, below=0.4, disagreement=0.5) == 0.9  # the transform too far from fast
    assert probe.rule({**row, "rigid_used": True}, 5, below=0.4, disagreement=2.0) == 0.9  # fast starts from it
    figures = probe.summary([row])
    assert figures["fast"] == 90.0 and figures["rigid"] == 120.0
    assert figures["below_0.4_disagreement_2.0"]["blend5"] == 85.0
