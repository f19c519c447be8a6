"""Storage layer of the data engine: shards, manifest, splits, datasets (fast CPU tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gvf_core.data.dataset import VARIABLE_KEYS, GVFDataset, GVFMapDataset, collate
from gvf_core.data.shards import (
    SAMPLE_SCHEMA,
    CorruptShardError,
    Manifest,
    ShardReader,
    read_shard,
    shard_info,
    write_shard,
)
from gvf_core.data.splits import (
    TEST_SEEDS,
    VAL_SEEDS,
    shard_file_name,
    shard_plan,
    split_of_seed,
    split_seeds,
)


def make_sample(seed: int, *, V=None, F=None, N=None, T=3, H=6, W=5, E=2, Fe=None, P=7):
    """A random sample with every schema array (sizes drawn from the seed unless given)."""
    rng = np.random.default_rng(seed)
    V = V or int(rng.integers(4, 12))
    F = F or int(rng.integers(2, 9))
    N = N or int(rng.integers(1, 20))
    Fe = int(rng.integers(0, 3)) if Fe is None else Fe
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    a = {
        "rest_vertices": f32(V, 3),
        "faces": rng.integers(0, V, (F, 3)).astype(np.int32),
        "vertices": f32(T, V, 3),
        "gs_face_idx": rng.integers(0, F, N).astype(np.int32),
        "gs_bary": f32(N, 3),
        "gs_offset": f32(N),
        "gs_local_angle": f32(N),
        "gs_local_log_scales": f32(N, 3),
        "gs_opacity_logits": f32(N),
        "gs_sh0": f32(N, 3),
        "pts_face_idx": rng.integers(0, F, P).astype(np.int32),
        "pts_bary": f32(P, 3),
        "motion_magnitude": np.array(rng.random(), dtype=np.float32),
        "video": rng.integers(0, 256, (T, H, W, 4), dtype=np.uint8),
        "camera_K": f32(3, 3),
        "camera_w2c": f32(4, 4),
        "extra_K": f32(E, 3, 3),
        "extra_w2c": f32(E, 4, 4),
        "extra_frames": rng.integers(0, T, Fe).astype(np.int32),
        "extra_images": rng.integers(0, 256, (Fe, E, H + 1, W, 4), dtype=np.uint8),
    }
    meta = {"seed": seed, "shape": "capsule", "params": {"k": [1, 2.5]}}
    return a, meta


def assert_same(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), k


# ------------------------------------------------------------------------------ shards


def test_round_trip_all_keys_bit_exact(tmp_path):
    samples = [make_sample(s) for s in (3, 4, 5)]
    samples[1][0]["extra_frames"] = np.zeros(0, np.int32)  # no extra images at all
    samples[1][0]["extra_images"] = np.zeros((0, 2, 7, 5, 4), np.uint8)
    samples[2][0]["gray"] = np.arange(2 * 6 * 5, dtype=np.uint8).reshape(2, 6, 5, 1)  # extra array, 1 channel
    samples[2][0]["rgb"] = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    path = tmp_path / "train-000000003.safetensors"
    write_shard(path, samples)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left

    back = read_shard(path)
    assert len(back) == 3
    for (a, m), (b, n) in zip(samples, back):
        assert_same(a, b)
        assert m == n

    r = ShardReader(path)
    assert len(r) == 3 and r.meta(2) == samples[2][1]
    assert_same(r[1][0], samples[1][0])
    assert_same(r[-1][0], samples[2][0])
    with pytest.raises(IndexError):
        r[3]


def test_images_are_png_compressed(tmp_path):
    from safetensors import safe_open

    a, m = make_sample(0, T=4, H=64, W=64)
    a["video"] = np.zeros_like(a["video"])
    a["video"][:, 10:20, 10:30] = (255, 0, 0, 255)
    path = tmp_path / "s.safetensors"
    write_shard(path, [(a, m)])
    with safe_open(str(path), "np") as f:
        assert "0000/video#png" in f.keys() and "0000/video" not in f.keys()
        assert f.get_slice("0000/video#png").get_shape()[0] < a["video"].nbytes // 20
    assert path.stat().st_size < a["video"].nbytes // 4
    assert np.array_equal(read_shard(path)[0][0]["video"], a["video"])


def test_write_rejects_bad_samples(tmp_path):
    a, m = make_sample(1)
    bad = dict(a, vertices=a["vertices"][:, :-1])  # V disagrees with rest_vertices
    with pytest.raises(ValueError, match=r"sample 1: .*'vertices'"):
        write_shard(tmp_path / "x.safetensors", [(a, m), (bad, m)])
    with pytest.raises(ValueError, match="dtype int64"):
        write_shard(tmp_path / "x.safetensors", [(dict(a, faces=a["faces"].astype(np.int64)), m)])
    with pytest.raises(ValueError, match="missing arrays"):
        write_shard(tmp_path / "x.safetensors", [({k: v for k, v in a.items() if k != "gs_sh0"}, m)])
    with pytest.raises(ValueError, match="gs_face_idx"):
        write_shard(tmp_path / "x.safetensors", [(dict(a, gs_face_idx=a["gs_face_idx"] + 100), m)])
    with pytest.raises(ValueError, match="JSON"):
        write_shard(tmp_path / "x.safetensors", [(a, {"seed": np.int64(3)})])
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.numpy

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a shard")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", broken)
    with pytest.raises(KeyboardInterrupt):
        write_shard(tmp_path / "a.safetensors", [make_sample(0)])
    assert list(tmp_path.iterdir()) == []


def _rewrite(path, drop=None, replace=None):
    """Re-save a shard's tensors with the same header, dropping or replacing tensors."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), "np") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys() if k != drop}
    t.update(replace or {})
    save_file(t, str(path), metadata=meta)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "missing_key", "bad_png", "bad_index", "shape"])
def test_corrupt_shard_named_in_error(tmp_path, damage):
    path = tmp_path / "val-001000000.safetensors"
    write_shard(path, [make_sample(0, Fe=1), make_sample(1, Fe=1)])
    raw = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) - 100])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif damage == "missing_key":
        _rewrite(path, drop="0001/gs_bary")
    elif damage == "bad_png":
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            buf = f.get_tensor("0001/video#png")
        _rewrite(path, replace={"0001/video#png": np.zeros_like(buf)})
    elif damage == "bad_index":
        _rewrite(path, replace={"0001/gs_face_idx": np.full(make_sample(1)[0]["gs_face_idx"].shape, 999, np.int32)})
    elif damage == "shape":
        _rewrite(path, replace={"0000/faces": np.zeros((1, 3), np.int32)})
    with pytest.raises(CorruptShardError) as e:
        read_shard(path)
    msg = str(e.value)
    assert str(path) in msg and "delete" in msg.lower() and "gvf data make" in msg
    assert isinstance(e.value, ValueError) and e.value.path == path


# ---------------------------------------------------------------------------- manifest


def test_manifest_save_load_resume(tmp_path):
    config = {"frames": 24, "size": (64, 64), "shapes": ["capsule"]}
    m = Manifest.open(tmp_path, config)
    assert m.shards == ()
    files = []
    for first, seeds in shard_plan(split_seeds("train", 5), 2):
        p = tmp_path / shard_file_name("train", first)
        write_shard(p, [make_sample(s) for s in seeds])
        m = m.add_shard(shard_info(p, "train", seeds, seconds=0.25))
        m.save(tmp_path)
        files.append(p.name)
    assert files == ["train-000000000.safetensors", "train-000000002.safetensors", "train-000000004.safetensors"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

    back = Manifest.load(tmp_path)
    assert back == m and back.config["size"] == [64, 64]
    assert back.seeds_of("train") == [0, 1, 2, 3, 4] and back.shards_of("val") == ()
    assert back.shards[1].count == 2 and back.shards[1].created["seconds"] == 0.25
    assert json.loads((tmp_path / "manifest.json").read_text())["shards"][0]["seed_ranges"] == [[0, 2]]
    assert all(back.is_done(tmp_path, f, check_hash=True) for f in files)
    assert back.verify(tmp_path, open_shards=True) == []

    # resuming with the same config continues; another config is refused
    assert Manifest.open(tmp_path, dict(config, size=[64, 64])) == back
    with pytest.raises(ValueError, match=r"another config .*frames"):
        Manifest.open(tmp_path, dict(config, frames=12))

    # a damaged file is no longer "done"; re-adding replaces the entry
    p = tmp_path / files[1]
    p.write_bytes(p.read_bytes()[:-1])
    assert not back.is_done(tmp_path, files[1]) and len(back.verify(tmp_path)) == 1
    assert not back.is_done(tmp_path, "train-000000006.safetensors")
    write_shard(p, [make_sample(s) for s in (2, 3)])
    again = back.add_shard(shard_info(p, "train", [2, 3]))
    assert len(again.shards) == 3 and again.is_done(tmp_path, files[1], check_hash=True)

    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json"):
        Manifest.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="gvf data make"):
        Manifest.load(tmp_path / "nowhere")


# ------------------------------------------------------------------------------ splits


def test_split_seeds_deterministic_and_disjoint():
    train = split_seeds("train", 1000)
    assert train == split_seeds("train", 1000) == list(range(1000))
    val, test = split_seeds("val"), split_seeds("test")
    assert val == list(VAL_SEEDS) and len(val) == 64 and len(test) == len(TEST_SEEDS)
    assert not (set(train) & set(val)) and not (set(val) & set(test)) and not (set(train) & set(test))
    assert split_seeds("train", 3, start=10) == [10, 11, 12]
    assert split_seeds("val", 4) == val[:4]
    assert {split_of_seed(s) for s in train[:5]} == {"train"} and split_of_seed(val[0]) == "val"
    with pytest.raises(ValueError, match="count"):
        split_seeds("train")
    with pytest.raises(ValueError, match="past the end"):
        split_seeds("val", 65)
    with pytest.raises(ValueError, match="outside"):
        split_seeds("train", 1, start=VAL_SEEDS.start)
    with pytest.raises(ValueError, match="unknown split"):
        split_seeds("dev", 1)

    plan = shard_plan(range(10), 4)
    assert plan == [(0, [0, 1, 2, 3]), (4, [4, 5, 6, 7]), (8, [8, 9])] == shard_plan(list(range(10)), 4)


# ----------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    m = Manifest(config={"test": True})
    for split, seeds in (("train", split_seeds("train", 14)), ("val", split_seeds("val", 5))):
        for first, chunk in shard_plan(seeds, 3):
            p = root / shard_file_name(split, first)
            write_shard(p, [make_sample(s, T=2, H=4, W=4, E=1) for s in chunk])
            m = m.add_shard(shard_info(p, split, chunk))
    m.save(root)
    return root


def _seeds(it) -> list[int]:
    return [int(s["meta"]["seed"]) for s in it]


def test_dataset_deterministic_by_seed_and_epoch(dataset_dir):
    ds = GVFDataset(dataset_dir, "train", seed=7)
    e0 = _seeds(ds)
    assert sorted(e0) == list(range(14)) and len(ds) == 14
    assert _seeds(GVFDataset(dataset_dir, "train", seed=7)) == e0
    ds.set_epoch(1)
    e1 = _seeds(ds)
    assert sorted(e1) == sorted(e0) and e1 != e0
    assert _seeds(GVFDataset(dataset_dir, "train", seed=8)) != e0
    assert _seeds(GVFDataset(dataset_dir, "train", shuffle=False)) == list(range(14))

    s = next(iter(ds))
    ref = read_shard(dataset_dir / s["key"].split(":")[0])[int(s["key"].split(":")[1])][0]
    for k, v in ref.items():
        assert isinstance(s[k], torch.Tensor) and np.array_equal(s[k].numpy(), v)
    assert s["video"].dtype == torch.uint8 and s["faces"].dtype == torch.int32


def test_dataloader_workers_yield_each_sample_once(dataset_dir):
    ds = GVFDataset(dataset_dir, "train", seed=3)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    got = _seeds(loader)
    assert sorted(got) == list(range(14))
    assert _seeds(DataLoader(ds, batch_size=None, num_workers=2)) == got  # deterministic with workers too


def test_rank_sharding_disjoint_and_complete(dataset_dir):
    for world in (1, 2, 3, 5):
        parts = [_seeds(GVFDataset(dataset_dir, "train", seed=1, rank=r, world_size=world)) for r in range(world)]
        assert sorted(s for p in parts for s in p) == list(range(14))
        assert [len(p) for p in parts] == [len(GVFDataset(dataset_dir, "train", rank=r, world_size=world)) for r in range(world)]
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    even = [_seeds(GVFDataset(dataset_dir, "train", rank=r, world_size=4, drop_uneven=True)) for r in range(4)]
    assert [len(p) for p in even] == [3] * 4 and len({s for p in even for s in p}) == 12
    with pytest.raises(ValueError, match="rank"):
        GVFDataset(dataset_dir, "train", rank=2, world_size=2)


def test_map_dataset_and_collate(dataset_dir):
    ds = GVFMapDataset(dataset_dir, "val")
    assert len(ds) == 5 and ds.seeds() == list(VAL_SEEDS[:5])
    assert ds[4]["meta"]["seed"] == VAL_SEEDS[4] and ds.locate(4)[1] == 1
    assert len(GVFMapDataset(dataset_dir, None)) == 19

    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["video"].shape == (3, 2, 4, 4, 4) and batch["video"].dtype == torch.uint8
    assert batch["camera_K"].shape == (3, 3, 3)
    assert batch["motion_magnitude"].shape == (3,)
    for k in VARIABLE_KEYS:
        assert isinstance(batch[k], list) and len(batch[k]) == 3
    assert {"vertices", "faces", "gs_sh0"} <= VARIABLE_KEYS and "video" not in VARIABLE_KEYS
    assert [m["seed"] for m in batch["meta"]] == list(VAL_SEEDS[:3]) and len(batch["key"]) == 3
    fe = [s["extra_images"].shape[0] for s in (ds[0], ds[1], ds[2])]
    assert isinstance(batch["extra_images"], torch.Tensor) == (len(set(fe)) == 1)

    loader = DataLoader(ds, batch_size=2, collate_fn=collate)
    assert [m["seed"] for b in loader for m in b["meta"]] == list(VAL_SEEDS[:5])

    with pytest.raises(ValueError, match="no shards of split 'test'"):
        GVFMapDataset(dataset_dir, "test")


def test_schema_covers_brief():
    assert {"video", "extra_images", "camera_w2c", "pts_bary", "motion_magnitude"} <= set(SAMPLE_SCHEMA)
