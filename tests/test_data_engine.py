"""The data engine end to end: samples, determinism, resumable parallel make, preview, CLI."""

import json

import numpy as np
import pytest

from gvf_core.canonical import surface_points
from gvf_core.cli import main
from gvf_core.data.dataset import GVFMapDataset
from gvf_core.data.make import make_dataset, make_sample
from gvf_core.data.preview import gaussian_states
from gvf_core.data.sample import SampleConfig
from gvf_core.data.shards import CorruptShardError, Manifest, read_shard

def assert_same_shard(path_a, path_b):
    """Same samples (arrays bit-exact, same meta); file bytes may differ in header key order."""
    a, b = read_shard(path_a), read_shard(path_b)
    assert len(a) == len(b)
    for (arrays_a, meta_a), (arrays_b, meta_b) in zip(a, b):
        assert meta_a == meta_b
        assert arrays_a.keys() == arrays_b.keys()
        for key in arrays_a:
            assert np.array_equal(arrays_a[key], arrays_b[key]), key


SMALL = SampleConfig(frames=8, num_gaussians=512, num_points=1024, image_size=48, extra_views=2, extra_frames=2)


def test_same_seed_same_sample_and_seeds_differ():
    a, meta_a = make_sample(11, SMALL)
    b, meta_b = make_sample(11, SMALL)
    assert meta_a == meta_b
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    c, _ = make_sample(12, SMALL)
    assert a["vertices"].shape != c["vertices"].shape or not np.array_equal(a["vertices"], c["vertices"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sample_contents(seed):
    arrays, meta = make_sample(seed, SMALL)
    T, V = SMALL.frames, meta["num_vertices"]
    assert arrays["vertices"].shape == (T, V, 3)
    # model frame of the first frame: bbox centred, longest side 1; frame 0 is the rest pose
    rest = arrays["rest_vertices"]
    assert np.allclose(rest, arrays["vertices"][0])
    assert np.isclose((rest.max(0) - rest.min(0)).max(), 1.0, atol=1e-5)
    assert np.allclose((rest.max(0) + rest.min(0)) / 2, 0.0, atol=1e-5)
    assert arrays["gs_face_idx"].shape == (SMALL.num_gaussians,)
    assert arrays["pts_face_idx"].shape == (SMALL.num_points,)
    assert 0.0 < float(arrays["motion_magnitude"]) < 2.0
    assert arrays["video"].shape == (T, 48, 48, 4) and arrays["video"].dtype == np.uint8
    alpha = arrays["video"][..., 3]
    if meta["background"] == "white":
        assert (alpha == 255).all()
    else:
        assert alpha.min() == 0 and alpha.max() > 200  # object on a transparent background
    assert arrays["extra_images"].shape == (2, 2, 48, 48, 4)
    assert (arrays["extra_images"][..., 3] > 0).any()  # the object is seen from the extra views
    assert meta["source"] == "procedural"


def test_gaussians_follow_the_mesh_exactly():
    arrays, _ = make_sample(5, SMALL)
    states = gaussian_states(arrays)  # [T, N] from the stored bindings
    expected = surface_points(arrays["vertices"].astype(np.float64), arrays["faces"], arrays["gs_face_idx"],
                              arrays["gs_bary"].astype(np.float64))
    offsets = arrays["gs_offset"]
    assert np.abs(offsets).max() == 0  # sampled on the surface
    assert np.abs(states.means.numpy() - expected).max() < 1e-5


def test_make_is_resumable_and_detects_corrupt_shards(tmp_path):
    out = tmp_path / "ds"
    manifest = make_dataset(out, split="train", count=4, start=0, config=SMALL, workers=1, shard_size=2)
    assert sorted(manifest.seeds_of("train")) == [0, 1, 2, 3]
    files = sorted(out.glob("train-*.safetensors"))
    assert len(files) == 2
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    # resume: nothing to redo
    make_dataset(out, split="train", count=4, start=0, config=SMALL, workers=1, shard_size=2)
    assert {f.name: f.stat().st_mtime_ns for f in files} == stamps
    # a lost shard is regenerated, identically
    before = tmp_path / "before.safetensors"
    before.write_bytes(files[1].read_bytes())
    files[1].unlink()
    make_dataset(out, split="train", count=4, start=0, config=SMALL, workers=1, shard_size=2)
    assert files[0].stat().st_mtime_ns == stamps[files[0].name]
    assert_same_shard(files[1], before)
    # another config in the same folder is refused
    with pytest.raises(ValueError, match="another config"):
        make_dataset(out, split="train", count=4, start=0, config=SampleConfig(), workers=1, shard_size=2)
    # a corrupt shard gives a clear error naming the file
    files[0].write_bytes(files[0].read_bytes()[:1000])
    with pytest.raises(ValueError, match=files[0].name):  # the manifest's size check
        GVFMapDataset(out, split="train")[0]
    with pytest.raises(CorruptShardError, match=files[0].name):  # the shard's own checks
        read_shard(files[0])
    assert len(Manifest.load(out).shards_of("train")) == 2


def test_make_in_parallel_matches_serial(tmp_path):
    make_dataset(tmp_path / "a", split="train", count=4, start=20, config=SMALL, workers=1, shard_size=2)
    make_dataset(tmp_path / "b", split="train", count=4, start=20, config=SMALL, workers=2, shard_size=2)
    for f in sorted((tmp_path / "a").glob("*.safetensors")):
        assert_same_shard(f, tmp_path / "b" / f.name)


def test_cli_make_show_and_bench(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "make", "--out", str(out), "--count", "2", "--seed", "7", "--workers", "1",
                 "--frames", "6", "--image-size", "32", "--gaussians", "512", "--points", "1024", "--no-val"]) == 0
    assert main(["data", "show", str(out), "--index", "1"]) == 0
    assert (out / "preview" / "train_1.gif").stat().st_size > 0
    assert (out / "preview" / "train_1.png").stat().st_size > 0
    assert main(["data", "show", str(out), "--index", "5"]) == 2
    capsys.readouterr()
    assert main(["bench", "data", "--json", "--samples", "1", "--parallel-samples", "2", "--workers", "1"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["parallel_samples_per_min"] > 0
    assert "stage_render_video_s" in figures


def test_blender_rendered_driving_video():
    from gvf_core.data.imported import bpy_available

    if not bpy_available():
        pytest.skip("needs Blender's bpy module (pip install -e '.[blender]')")
    from dataclasses import replace

    splat, meta = make_sample(3, SMALL)
    blender, meta_b = make_sample(3, replace(SMALL, renderer="workbench"))
    assert meta_b["camera"] == meta["camera"]
    assert blender["video"].shape == splat["video"].shape
    # the same object seen from the same camera: the silhouettes agree
    if meta["background"] == "transparent":
        a, b = splat["video"][..., 3] > 128, blender["video"][..., 3] > 128
    else:
        a, b = splat["video"][..., :3].min(-1) < 240, blender["video"][..., :3].min(-1) < 240
    iou = (a & b).sum() / max(1, (a | b).sum())
    assert iou > 0.7, iou


SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "assets"


def test_user_static_meshes_and_imported_clips_feed_samples(tmp_path):
    import trimesh

    from gvf_core.data.imported import bpy_available
    from gvf_core.data.make import AssetPool, load_asset_pool

    assets = tmp_path / "assets"
    assets.mkdir()
    trimesh.creation.capsule(height=1.0, radius=0.3, count=[16, 16]).export(assets / "capsule.obj")
    animated = SHARED / "AnimatedMorphCube"
    if animated.exists() and bpy_available():
        import shutil

        shutil.copytree(animated, assets / "cube")
    pool = load_asset_pool(assets, fps=24.0)
    assert len(pool.meshes) == 1
    config = __import__("dataclasses").replace(SMALL, asset_prob=1.0)
    sources = set()
    for seed in range(6):
        arrays, meta = make_sample(seed, config, pool)
        assert np.isfinite(arrays["vertices"]).all()
        sources.add(meta["source"])
    assert "user_mesh" in sources
    if pool.clips:
        assert "imported" in sources
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .glb"):
        load_asset_pool(empty, fps=24.0)
    assert not AssetPool()  # an empty pool means procedural only
