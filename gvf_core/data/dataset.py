"""Torch datasets over the shards of a dataset directory (see :mod:`gvf_core.data.shards`).

- :class:`GVFDataset` streams one split for training: deterministic in ``seed + epoch``,
  and split across DDP ranks and DataLoader workers without duplication.
- :class:`GVFMapDataset` indexes every sample (``index -> (shard, i)``) for evaluation.
- :func:`collate` batches samples of different mesh and Gaussian counts.

A yielded sample is a dict of torch tensors named as in
:data:`~gvf_core.data.shards.SAMPLE_SCHEMA` (images as ``uint8`` tensors ``[..., H, W, 4]``),
plus ``"meta"`` (the sample's meta dict) and ``"key"`` (``"<shard file>:<index>"``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from gvf_core.data.shards import SAMPLE_SCHEMA, Manifest, ShardInfo, ShardReader

__all__ = ["GVFDataset", "GVFMapDataset", "collate", "VARIABLE_KEYS", "to_torch"]

VARIABLE_KEYS: frozenset[str] = frozenset(
    k for k, (dims, _) in SAMPLE_SCHEMA.items() if {"V", "F", "N"} & {d for d in dims if isinstance(d, str)}
)
"""Arrays whose size varies per sample (vertex, face, Gaussian counts): :func:`collate` always lists them."""

Transform = Callable[[dict[str, Any]], dict[str, Any]]


def to_torch(arrays: dict[str, np.ndarray], meta: dict[str, Any], key: str) -> dict[str, Any]:
    """``(arrays, meta)`` of a shard → dict of torch tensors plus ``"meta"`` and ``"key"``."""
    out: dict[str, Any] = {}
    for name, a in arrays.items():
        out[name] = torch.from_numpy(a if a.flags.writeable else a.copy())
    out["meta"] = meta
    out["key"] = key
    return out


def _shards(root: Path, split: str | None) -> tuple[ShardInfo, ...]:
    manifest = Manifest.load(root)
    shards = manifest.shards if split is None else manifest.shards_of(split)
    if not shards:
        have = sorted({s.split for s in manifest.shards})
        raise ValueError(f"{root}: the dataset has no shards of split {split!r} (it has {have}); make them with `gvf data make`")
    for s in shards:
        p = root / s.file
        if not p.is_file():
            raise FileNotFoundError(f"{p}: listed in the manifest but missing; re-run `gvf data make` (it is resumable)")
        if p.stat().st_size != s.num_bytes:
            raise ValueError(
                f"{p}: {p.stat().st_size} bytes, the manifest says {s.num_bytes}; delete it and re-run `gvf data make`"
            )
    return shards


class _Readers:
    """A few open :class:`ShardReader` per process (least recently used closed first)."""

    def __init__(self, root: Path, max_open: int):
        self.root, self.max_open = root, max_open
        self._open: OrderedDict[str, ShardReader] = OrderedDict()

    def get(self, file: str) -> ShardReader:
        r = self._open.pop(file, None)
        if r is None:
            r = ShardReader(self.root / file)
        self._open[file] = r
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return r


class GVFDataset(IterableDataset):
    """Stream the samples of one split, shuffled deterministically and split across workers.

    Each epoch visits every sample of the split once. With ``shuffle``, a
    ``torch.Generator`` seeded with ``seed + epoch`` permutes the shard order and, inside
    each shard, the sample order; the resulting list is dealt round-robin first to the DDP
    ranks (``order[rank::world_size]``) and then to the DataLoader workers of each rank, so
    ranks and workers never duplicate a sample, and rank sizes differ by at most one
    (pass ``drop_uneven=True`` to trim them equal, as DDP training needs equal step counts).
    Workers read only their own samples of each shard (tensors are read lazily from a
    memory map), and visit the shards in the epoch's shard order.

    Call :meth:`set_epoch` before each epoch. DataLoader copies the dataset into its workers
    when an epoch's iterator starts, so this works with the default
    ``persistent_workers=False``; with persistent workers the epoch would stay frozen.

    Args:
        root: dataset directory (holds ``manifest.json``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: base seed of the shuffle.
        shuffle: ``False`` streams in manifest order (shards by first seed, samples in file order).
        rank, world_size: this process's DDP rank and the number of ranks; ``None`` reads them
            from ``torch.distributed`` when it is initialized (else 0 and 1).
        drop_uneven: trim the epoch to a multiple of ``world_size`` samples.
        transform: optional function applied to each yielded sample dict.
        max_open: shard files each worker keeps open at once.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        drop_uneven: bool = False,
        transform: Transform | None = None,
        max_open: int = 2,
    ):
        super().__init__()
        self.root = Path(root)
        self.split = split
        self.shards = _shards(self.root, split)
        self.seed = int(seed)
        self.shuffle = shuffle
        if rank is None or world_size is None:
            dist = torch.distributed
            ddp = dist.is_available() and dist.is_initialized()
            rank = (dist.get_rank() if ddp else 0) if rank is None else rank
            world_size = (dist.get_world_size() if ddp else 1) if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"GVFDataset: rank {rank} not in [0, world_size={world_size})")
        self.rank, self.world_size = int(rank), int(world_size)
        self.drop_uneven = drop_uneven
        self.transform = transform
        self.max_open = max_open
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Samples of the split (all ranks)."""
        return sum(s.count for s in self.shards)

    def __len__(self) -> int:
        """Samples this rank yields per epoch (over all its DataLoader workers)."""
        m, w = self.num_samples, self.world_size
        if self.drop_uneven:
            return m // w
        return math.ceil((m - self.rank) / w) if m > self.rank else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_order(self, epoch: int | None = None) -> list[tuple[int, int]]:
        """All ``(shard number, sample index)`` of the split in this epoch's order (every rank agrees)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return [(k, i) for k, s in enumerate(self.shards) for i in range(s.count)]
        g = torch.Generator().manual_seed(self.seed + epoch)
        order = []
        for k in torch.randperm(len(self.shards), generator=g).tolist():
            order += [(k, i) for i in torch.randperm(self.shards[k].count, generator=g).tolist()]
        return order

    def rank_order(self, epoch: int | None = None) -> list[tuple[int, int]]:
        """This rank's share of :meth:`epoch_order`."""
        order = self.epoch_order(epoch)
        if self.drop_uneven:
            order = order[: len(order) // self.world_size * self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        mine = self.rank_order()
        info = get_worker_info()
        if info is not None:
            mine = mine[info.id :: info.num_workers]
        readers = _Readers(self.root, self.max_open)
        for k, i in mine:
            file = self.shards[k].file
            arrays, meta = readers.get(file)[i]
            sample = to_torch(arrays, meta, f"{file}:{i}")
            yield self.transform(sample) if self.transform is not None else sample


class GVFMapDataset(Dataset):
    """Every sample of a split (or of all splits), by index, in manifest order.

    ``dataset[j]`` is the sample dict of :class:`GVFDataset`; ``dataset.locate(j)`` gives its
    ``(ShardInfo, index in shard)``. Readers are opened lazily per process.
    """

    def __init__(
        self, root: str | Path, split: str | None = "val", *, transform: Transform | None = None, max_open: int = 8
    ):
        self.root = Path(root)
        self.split = split
        self.shards = _shards(self.root, split)
        self.index: list[tuple[int, int]] = [(k, i) for k, s in enumerate(self.shards) for i in range(s.count)]
        self.transform = transform
        self.max_open = max_open
        self._readers: _Readers | None = None

    def __len__(self) -> int:
        return len(self.index)

    def locate(self, j: int) -> tuple[ShardInfo, int]:
        k, i = self.index[j]
        return self.shards[k], i

    def seeds(self) -> list[int]:
        """Seed of every sample, by index (from the manifest)."""
        return [self.shards[k].seeds[i] for k, i in self.index]

    def __getitem__(self, j: int) -> dict[str, Any]:
        if self._readers is None:
            self._readers = _Readers(self.root, self.max_open)
        info, i = self.locate(j)
        arrays, meta = self._readers.get(info.file)[i]
        sample = to_torch(arrays, meta, f"{info.file}:{i}")
        return self.transform(sample) if self.transform is not None else sample

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = None
        return state


def collate(batch: list[dict[str, Any]], variable_keys: frozenset[str] | set[str] = VARIABLE_KEYS) -> dict[str, Any]:
    """Batch sample dicts.

    Keys in ``variable_keys`` (meshes and Gaussians, whose sizes vary) are always lists of
    tensors, so their type does not depend on the batch. Other tensors are stacked along a
    new first axis when their shapes match across the batch, else listed (e.g.
    ``extra_images`` with different frame counts). Non-tensors (``meta``, ``key``) are lists.
    Every sample must have the same keys.
    """
    if not batch:
        raise ValueError("collate: empty batch")
    keys = list(batch[0])
    for b in batch[1:]:
        if set(b) != set(keys):
            raise ValueError(f"collate: samples have different keys ({sorted(set(b) ^ set(keys))})")
    out: dict[str, Any] = {}
    for k in keys:
        vals = [b[k] for b in batch]
        if (
            k not in variable_keys
            and all(isinstance(v, torch.Tensor) for v in vals)
            and all(v.shape == vals[0].shape and v.dtype == vals[0].dtype for v in vals)
        ):
            out[k] = torch.stack(vals)
        else:
            out[k] = vals
    return out
