"""atomic_path: the target appears whole or not at all."""

import pytest

from gvf_core.atomic_write import atomic_path


def test_writes_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "weights.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing under the target until the body is done
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["weights.bin"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_each_call_gets_its_own_temporary(tmp_path):
    target = tmp_path / "cache.safetensors"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second  # parallel writers (evaluation parts, DDP ranks) never share one
        first.write_text("a")
        second.write_text("b")
    assert target.read_text() == "a"  # the last rename wins, whole
