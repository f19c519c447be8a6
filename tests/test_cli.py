"""The ``gvf`` command line: JSON contract of benchmarks, the canonical job, errors."""

import json

import numpy as np
import trimesh

from gvf_core.cli import main
from gvf_core.ply import read_ply


def test_bench_render_json_prints_exactly_one_object(capsys):
    code = main(["bench", "render", "--json", "--gaussians", "256", "--size", "32", "--repeats", "1"])
    assert code == 0
    out = capsys.readouterr().out
    figures = json.loads(out)  # the whole stdout is one JSON object
    assert out.strip().count("\n") == 0
    assert figures["num_gaussians"] == 256
    for key in ("torch_cpu_forward_s", "torch_cpu_forward_backward_s", "dense_cpu_forward_s", "speedup_forward_backward_vs_dense"):
        assert figures[key] > 0


def test_canonical_writes_ply_in_file_frame_and_turntable(tmp_path, capsys):
    mesh = trimesh.creation.box(extents=(2.0, 4.0, 1.0))
    mesh.apply_translation((10.0, 0.0, -3.0))
    path = tmp_path / "box.obj"
    mesh.export(path)
    out = tmp_path / "out"
    code = main(["canonical", str(path), "--out", str(out), "--gaussians", "500", "--frames", "4", "--size", "48"])
    assert code == 0
    g = read_ply(out / "canonical.ply")
    assert g.num == 500
    means = g.means.numpy()
    lo, hi = mesh.bounds
    # the PLY is in the file's own axes and units: every Gaussian lies on the box surface
    assert np.all(means >= lo - 1e-4) and np.all(means <= hi + 1e-4)
    assert (out / "turntable.gif").stat().st_size > 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_gaussians"] == 500


def test_missing_mesh_is_a_clear_error(tmp_path, capsys):
    code = main(["canonical", str(tmp_path / "nope.obj"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.obj" in err
    assert not (tmp_path / "o").exists()  # nothing written half-way


def test_eval_counts_are_checked_before_anything_loads(capsys):
    import pytest

    for argv in (["eval", "animate", "--limit", "0"], ["eval", "animate", "--skip", "-1"], ["eval", "vae", "--limit", "-2"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv + ["--data", "/nonexistent/never-made"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert ("--limit" in err or "--skip" in err) and "must be at least" in err


def test_the_step_sweep_refuses_options_it_would_ignore():
    import pytest

    from gvf_core.eval.animate import evaluate_animate

    for kw in ({"refine": "fast"}, {"per_clip": True}):
        with pytest.raises(ValueError, match="sweep-steps"):
            evaluate_animate("/nonexistent/never-made", sweep=True, **kw)
