"""Shards of the 4D data engine: safetensors files of K samples, and the dataset manifest.

A *sample* is a ``dict[str, np.ndarray]`` (the arrays of :data:`SAMPLE_SCHEMA`, plus any
extra arrays) and a JSON-able ``meta`` dict. A *shard* is one ``.safetensors`` file holding
K samples (see :func:`write_shard`):

- array ``name`` of sample ``i`` is the tensor ``"{i:04d}/{name}"``, stored as-is;
- image arrays (``uint8``, shape ``[..., H, W, C]`` with ``C`` in 1, 3, 4: the driving
  ``video`` and the ``extra_images``) are stored PNG-compressed, one PNG per image, as a flat
  ``uint8`` tensor ``"{i:04d}/{name}#png"`` of the concatenated PNG files and an ``int64``
  tensor ``"{i:04d}/{name}#png_offsets"`` of ``n + 1`` byte offsets; they are decoded back
  bit-exact on read;
- the safetensors metadata header holds ``format = "gvf-shard"``, ``format_version``,
  ``count`` and ``index``: a JSON list with, per sample, its ``meta`` and, per array, its
  ``shape``, ``dtype`` and whether it is stored as ``png``.

Shards are written atomically (temporary file, fsync, ``os.replace``), so an interrupted
run never leaves a half shard under the final name. Reading (:class:`ShardReader`,
:func:`read_shard`) validates the header, the tensors it promises and every sample against
the schema; any problem raises :class:`CorruptShardError`, whose message names the file and
says to delete it and re-run ``gvf data make``.

The dataset directory holds the shards and ``manifest.json`` (:class:`Manifest`): format
version, the generating config, and one :class:`ShardInfo` per finished shard (file, split,
first seed, count, seeds as ``seed_ranges`` ``[[start, stop), ...]``, byte size, sha256,
creation info), one JSON line per shard. **Resuming**: the manifest is the
single record of finished shards. It is rewritten atomically by the *single parent process*
after each shard completes (workers write shard files and return their :class:`ShardInfo`;
only the parent calls :meth:`Manifest.save`), so there are no sidecars to merge. A shard
counts as done when it is listed and its file exists with the recorded size
(:meth:`Manifest.is_done`); a shard file without a manifest entry (the run stopped between
``os.replace`` and the manifest save) is simply written again — samples are deterministic
in their seed.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from gvf_core.atomic_write import atomic_path

__all__ = [
    "SHARD_FORMAT",
    "SHARD_FORMAT_VERSION",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "SAMPLE_SCHEMA",
    "CorruptShardError",
    "check_sample",
    "write_shard",
    "read_shard",
    "ShardReader",
    "ShardInfo",
    "shard_info",
    "Manifest",
    "sha256_file",
]

SHARD_FORMAT = "gvf-shard"
SHARD_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

Sample = tuple[dict[str, np.ndarray], dict[str, Any]]

# name -> (shape with symbolic sizes, dtype). Sizes with the same symbol must agree within a sample.
SAMPLE_SCHEMA: dict[str, tuple[tuple[str | int, ...], str]] = {
    "rest_vertices": (("V", 3), "float32"),  # rest mesh, model frame
    "faces": (("F", 3), "int32"),
    "vertices": (("T", "V", 3), "float32"),  # posed mesh per frame, model frame
    "gs_face_idx": (("N",), "int32"),  # canonical Gaussians (BoundGaussians.to_dict layout)
    "gs_bary": (("N", 3), "float32"),
    "gs_offset": (("N",), "float32"),
    "gs_local_angle": (("N",), "float32"),
    "gs_local_log_scales": (("N", 3), "float32"),
    "gs_opacity_logits": (("N",), "float32"),
    "gs_sh0": (("N", 3), "float32"),
    "pts_face_idx": (("P",), "int32"),  # VAE point samples, index-correspondent across frames
    "pts_bary": (("P", 3), "float32"),
    "motion_magnitude": ((), "float32"),
    "video": (("T", "H", "W", 4), "uint8"),  # driving video, RGBA
    "camera_K": ((3, 3), "float32"),
    "camera_w2c": ((4, 4), "float32"),
    "extra_K": (("E", 3, 3), "float32"),  # extra views
    "extra_w2c": (("E", 4, 4), "float32"),
    "extra_frames": (("Fe",), "int32"),
    "extra_images": (("Fe", "E", "He", "We", 4), "uint8"),
}
"""Arrays every sample must hold, with symbolic shapes and dtypes (extra arrays are allowed)."""

# (index array, symbol its values index into)
_INDEX_RANGES = (("faces", "V"), ("gs_face_idx", "F"), ("pts_face_idx", "F"), ("extra_frames", "T"))

_PNG = "#png"
_PNG_OFFSETS = "#png_offsets"


class CorruptShardError(ValueError):
    """A shard file is missing, truncated, unparsable or inconsistent."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"{self.path}: corrupt or incomplete shard ({reason}). Delete this file and re-run "
            f"`gvf data make` with the same arguments; it is resumable and rewrites only the missing shards."
        )


# ---------------------------------------------------------------------------------- schema


def check_sample(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Check one sample against :data:`SAMPLE_SCHEMA`; raise ``ValueError`` listing every problem.

    Checks that the schema's arrays are present, numpy arrays of the right dtype and rank,
    that symbolic sizes agree (``vertices`` is ``[T, V, 3]`` with the ``V`` of
    ``rest_vertices``, ...), that index arrays are in range, and that ``meta`` is JSON-able.
    Returns the sizes ``{"V": ..., "F": ..., "T": ..., "N": ..., ...}``.
    """
    problems: list[str] = []
    sizes: dict[str, int] = {}
    missing = [k for k in SAMPLE_SCHEMA if k not in arrays]
    if missing:
        problems.append(f"missing arrays {missing}")
    for name, a in arrays.items():
        if not isinstance(name, str) or "#" in name or not name:
            problems.append(f"array name {name!r} must be a non-empty str without '#'")
        if not isinstance(a, np.ndarray):
            problems.append(f"{name!r} is a {type(a).__name__}, expected a numpy array")
    for name, (dims, dtype) in SAMPLE_SCHEMA.items():
        a = arrays.get(name)
        if not isinstance(a, np.ndarray):
            continue
        if a.dtype != np.dtype(dtype):
            problems.append(f"{name!r} has dtype {a.dtype}, expected {dtype}")
        if a.ndim != len(dims):
            problems.append(f"{name!r} has shape {list(a.shape)}, expected {_fmt_dims(dims)}")
            continue
        for d, n in zip(dims, a.shape):
            if isinstance(d, int):
                if n != d:
                    problems.append(f"{name!r} has shape {list(a.shape)}, expected {_fmt_dims(dims)}")
                    break
            elif sizes.setdefault(d, n) != n:
                problems.append(f"{name!r} has shape {list(a.shape)}, expected {_fmt_dims(dims)} with {d}={sizes[d]}")
                break
    if not problems:
        for name, sym in _INDEX_RANGES:
            a = arrays[name]
            if a.size and (int(a.min()) < 0 or int(a.max()) >= sizes[sym]):
                problems.append(f"{name!r} has values in [{int(a.min())}, {int(a.max())}], expected [0, {sym}={sizes[sym]})")
    if meta is not None:
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as e:
            problems.append(f"meta is not JSON-able ({e})")
    if problems:
        raise ValueError("; ".join(problems))
    return sizes


def _fmt_dims(dims: tuple) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _is_image(a: np.ndarray) -> bool:
    return a.dtype == np.uint8 and a.ndim >= 3 and a.shape[-1] in (1, 3, 4) and a.shape[-3] > 0 and a.shape[-2] > 0


# ------------------------------------------------------------------------------ PNG codec


def _encode_images(a: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """``[..., H, W, C]`` uint8 → (concatenated PNG bytes [B] uint8, offsets [n + 1] int64)."""
    import cv2

    h, w, c = a.shape[-3:]
    flat = a.reshape(-1, h, w, c)
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    chunks = []
    for img in flat:
        if c == 4:
            img = img[..., [2, 1, 0, 3]]  # RGBA -> BGRA (cv2 order), so the PNG is right in any viewer
        elif c == 3:
            img = img[..., ::-1]
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img), params)
        if not ok:
            raise RuntimeError(f"cv2.imencode failed on a {h}x{w}x{c} image")
        chunks.append(buf.reshape(-1))
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    if chunks:
        offsets[1:] = np.cumsum([len(b) for b in chunks])
        data = np.concatenate(chunks)
    else:
        data = np.zeros(0, dtype=np.uint8)
    return data, offsets


def _decode_images(data: np.ndarray, offsets: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`_encode_images`; raises ``ValueError`` on any mismatch."""
    import cv2

    h, w, c = shape[-3:]
    n = int(np.prod(shape[:-3], dtype=np.int64))
    if offsets.shape != (n + 1,) or offsets.dtype != np.int64:
        raise ValueError(f"png offsets have shape {list(offsets.shape)} ({offsets.dtype}), expected [{n + 1}] int64")
    if n and (offsets[0] != 0 or offsets[-1] != data.size or np.any(np.diff(offsets) <= 0)):
        raise ValueError("png offsets do not cover the png buffer")
    out = np.empty((n, h, w, c), dtype=np.uint8)
    for j in range(n):
        img = cv2.imdecode(data[offsets[j] : offsets[j + 1]], cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"png {j} does not decode")
        if img.ndim == 2:
            img = img[..., None]
        if img.shape != (h, w, c) or img.dtype != np.uint8:
            raise ValueError(f"png {j} decodes to {list(img.shape)} {img.dtype}, expected [{h}, {w}, {c}] uint8")
        if c == 4:
            img = img[..., [2, 1, 0, 3]]
        elif c == 3:
            img = img[..., ::-1]
        out[j] = img
    return out.reshape(shape)


# ---------------------------------------------------------------------------------- write


def write_shard(path: str | os.PathLike, samples: Sequence[Sample], *, png_level: int = 3) -> None:
    """Write ``samples`` (a list of ``(arrays, meta)``) to one safetensors shard, atomically.

    Every sample is checked with :func:`check_sample` first (``ValueError`` naming the sample
    and the problem). Image arrays are PNG-compressed (``png_level`` 0-9, lossless); other
    arrays are stored as-is. The file appears under ``path`` only when complete: it is
    written to a temporary file beside it, fsynced and renamed (:func:`~gvf_core.atomic_write.atomic_path`).
    """
    from safetensors.numpy import save_file

    path = Path(path)
    if not samples:
        raise ValueError(f"write_shard({path}): no samples to write")
    if len(samples) > 10_000:
        raise ValueError(f"write_shard({path}): {len(samples)} samples; at most 10000 per shard")
    tensors: dict[str, np.ndarray] = {}
    index = []
    for i, sample in enumerate(samples):
        try:
            arrays, meta = sample
            check_sample(arrays, meta)
        except (ValueError, TypeError) as e:
            raise ValueError(f"write_shard({path}): sample {i}: {e}") from None
        entry: dict[str, dict] = {}
        for name, a in arrays.items():
            key = f"{i:04d}/{name}"
            if _is_image(a):
                tensors[key + _PNG], tensors[key + _PNG_OFFSETS] = _encode_images(a, png_level)
            else:
                tensors[key] = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
            entry[name] = {"shape": list(a.shape), "dtype": a.dtype.name, "png": _is_image(a)}
        index.append({"meta": meta, "arrays": entry})
    metadata = {
        "format": SHARD_FORMAT,
        "format_version": str(SHARD_FORMAT_VERSION),
        "count": str(len(samples)),
        "index": json.dumps(index, allow_nan=False),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


# ----------------------------------------------------------------------------------- read


class ShardReader:
    """Lazy reader of one shard: ``len(reader)``, ``reader[i] -> (arrays, meta)``.

    Opening parses and validates the header and checks that every tensor the index promises
    is present with the right shape and dtype (no tensor data is read). ``reader[i]`` reads
    and decodes sample ``i`` only, and validates it with :func:`check_sample`. Any problem
    raises :class:`CorruptShardError`. The file handle (a memory map) is opened on first use
    and dropped on pickling, so readers can be handed to DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None
        handle = self._open()
        try:
            meta = handle.metadata() or {}
            if meta.get("format") != SHARD_FORMAT:
                raise ValueError(f"header format is {meta.get('format')!r}, expected {SHARD_FORMAT!r}")
            version = int(meta.get("format_version", "-1"))
            if version != SHARD_FORMAT_VERSION:
                raise ValueError(f"format version {version}, this code reads version {SHARD_FORMAT_VERSION}")
            index = json.loads(meta["index"])
            count = int(meta["count"])
            if not isinstance(index, list) or len(index) != count:
                raise ValueError(f"index lists {len(index) if isinstance(index, list) else '?'} samples, header says {count}")
            keys = set(handle.keys())
            expected: set[str] = set()
            for i, entry in enumerate(index):
                if not isinstance(entry.get("meta"), dict) or not isinstance(entry.get("arrays"), dict):
                    raise ValueError(f"index entry {i} is malformed")
                missing_schema = [k for k in SAMPLE_SCHEMA if k not in entry["arrays"]]
                if missing_schema:
                    raise ValueError(f"sample {i} lacks arrays {missing_schema}")
                for name, spec in entry["arrays"].items():
                    key = f"{i:04d}/{name}"
                    if spec["png"]:
                        n = int(np.prod(spec["shape"][:-3], dtype=np.int64))
                        want = {key + _PNG: ("U8", None), key + _PNG_OFFSETS: ("I64", [n + 1])}
                    else:
                        want = {key: (_ST_DTYPES.get(spec["dtype"], spec["dtype"]), spec["shape"])}
                    for k, (dt, shape) in want.items():
                        expected.add(k)
                        if k not in keys:
                            raise ValueError(f"tensor {k!r} is missing")
                        sl = handle.get_slice(k)
                        if sl.get_dtype() != dt or (shape is not None and list(sl.get_shape()) != list(shape)):
                            raise ValueError(
                                f"tensor {k!r} is {sl.get_dtype()} {sl.get_shape()}, the index says {dt} {shape}"
                            )
            extra = keys - expected
            if extra:
                raise ValueError(f"{len(extra)} tensors not in the index, e.g. {sorted(extra)[0]!r}")
        except CorruptShardError:
            raise
        except Exception as e:  # noqa: BLE001 - any parse problem means a bad file
            raise CorruptShardError(self.path, f"{type(e).__name__}: {e}") from None
        self._index: list[dict] = index

    def _open(self):
        if self._file is None:
            from safetensors import safe_open

            if not self.path.is_file():
                raise CorruptShardError(self.path, "file does not exist")
            try:
                self._file = safe_open(str(self.path), framework="np")
            except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...
                raise CorruptShardError(self.path, f"{type(e).__name__}: {e}") from None
        return self._file

    def __len__(self) -> int:
        return len(self._index)

    def meta(self, i: int) -> dict[str, Any]:
        """Meta dict of sample ``i`` (from the header; reads no tensor data)."""
        return json.loads(json.dumps(self._index[i]["meta"]))

    @property
    def metas(self) -> list[dict[str, Any]]:
        return [self.meta(i) for i in range(len(self))]

    def array_names(self, i: int) -> list[str]:
        return list(self._index[i]["arrays"])

    def __getitem__(self, i: int) -> Sample:
        n = len(self._index)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: sample {i} out of range [0, {n})")
        i %= n
        handle = self._open()
        arrays: dict[str, np.ndarray] = {}
        try:
            for name, spec in self._index[i]["arrays"].items():
                key = f"{i:04d}/{name}"
                if spec["png"]:
                    arrays[name] = _decode_images(
                        handle.get_tensor(key + _PNG), handle.get_tensor(key + _PNG_OFFSETS), tuple(spec["shape"])
                    )
                else:
                    arrays[name] = handle.get_tensor(key)
            check_sample(arrays)
        except Exception as e:  # noqa: BLE001
            raise CorruptShardError(self.path, f"sample {i}: {type(e).__name__}: {e}") from None
        return arrays, self.meta(i)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        self._file = None

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def __repr__(self) -> str:
        return f"ShardReader({str(self.path)!r}, {len(self)} samples)"


_ST_DTYPES = {
    "float32": "F32", "float64": "F64", "float16": "F16", "int8": "I8", "int16": "I16", "int32": "I32",
    "int64": "I64", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL",
}  # fmt: skip


def read_shard(path: str | os.PathLike) -> list[Sample]:
    """All samples of a shard, decoded and validated (:class:`CorruptShardError` on any problem)."""
    with ShardReader(path) as reader:
        return list(reader)


# -------------------------------------------------------------------------------- manifest


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard, as recorded in the manifest."""

    file: str
    """File name, relative to the dataset directory."""
    split: str
    """``"train"``, ``"val"`` or ``"test"`` (see :mod:`gvf_core.data.splits`)."""
    first_seed: int
    """Seed of the shard's first sample; shards are named and ordered by it."""
    seeds: tuple[int, ...]
    """Seeds of the samples, in file order."""
    num_bytes: int
    """File size; a resumed run or a loader treats a file of another size as unfinished."""
    sha256: str | None = None
    """Hex digest of the file (``None`` if not computed); checked by :meth:`Manifest.verify`."""
    created: dict[str, Any] = field(default_factory=dict, compare=False)
    """Creation info: UTC ``time``, ``host``, ``seconds`` it took, ``gvf_version``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.seeds or self.seeds[0] != self.first_seed:
            raise ValueError(f"ShardInfo({self.file}): first_seed {self.first_seed} != seeds[0] of {list(self.seeds)[:3]}")
        if "/" in self.file or "\\" in self.file or self.file.startswith("."):
            raise ValueError(f"ShardInfo: file {self.file!r} must be a plain file name inside the dataset directory")

    @property
    def count(self) -> int:
        return len(self.seeds)

    def to_json(self) -> dict[str, Any]:
        """JSON form; the seeds are stored as ``seed_ranges``, a list of ``[start, stop)`` runs."""
        d = dataclasses.asdict(self)
        del d["seeds"]
        d["count"] = self.count
        d["seed_ranges"] = _to_ranges(self.seeds)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ShardInfo":
        d = dict(d)
        count = d.pop("count", None)
        d["seeds"] = tuple(s for a, b in d.pop("seed_ranges") for s in range(a, b))
        info = cls(**d)
        if count is not None and count != info.count:
            raise ValueError(f"shard {info.file}: count {count} != {info.count} seeds")
        return info


def shard_info(
    path: str | os.PathLike, split: str, seeds: Sequence[int], *, seconds: float | None = None, with_hash: bool = True
) -> ShardInfo:
    """The :class:`ShardInfo` of a shard just written to ``path`` (stats and, with ``with_hash``, hashes the file).

    Call it where the shard was written (a worker) and hand the result to the parent, which
    records it with :meth:`Manifest.add_shard` and :meth:`Manifest.save`.
    """
    from gvf_core import __version__

    path = Path(path)
    created = {"time": _now(), "host": platform.node(), "gvf_version": __version__}
    if seconds is not None:
        created["seconds"] = round(float(seconds), 3)
    return ShardInfo(
        file=path.name,
        split=split,
        first_seed=int(seeds[0]),
        seeds=tuple(seeds),
        num_bytes=path.stat().st_size,
        sha256=sha256_file(path) if with_hash else None,
        created=created,
    )


def _to_ranges(seeds: Sequence[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for s in seeds:
        if runs and runs[-1][1] == s:
            runs[-1][1] = s + 1
        else:
            runs.append([s, s + 1])
    return runs


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, allow_nan=False))


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a dataset directory: config and finished shards.

    Immutable: :meth:`add_shard` returns a new manifest. The parent process of
    ``gvf data make`` is the only writer; it calls ``manifest = manifest.add_shard(info)``
    and :meth:`save` after each finished shard.
    """

    config: dict[str, Any]
    """The generating config (JSON-able); a resumed run must pass the same one."""
    shards: tuple[ShardInfo, ...] = ()
    """Finished shards, ordered by split and first seed."""
    format_version: int = MANIFEST_VERSION
    """Version of this manifest layout."""
    created: str = field(default_factory=_now)
    """UTC time the dataset was started."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "config", _jsonable(self.config))
        except (TypeError, ValueError) as e:
            raise ValueError(f"Manifest: config is not JSON-able ({e})") from None
        object.__setattr__(self, "shards", tuple(sorted(self.shards, key=lambda s: (s.split, s.first_seed, s.file))))
        names = [s.file for s in self.shards]
        if len(set(names)) != len(names):
            raise ValueError("Manifest: a shard file is listed twice")

    # -- edit
    def add_shard(self, info: ShardInfo) -> "Manifest":
        """A new manifest with ``info`` added (replacing an entry of the same file name)."""
        return dataclasses.replace(self, shards=tuple(s for s in self.shards if s.file != info.file) + (info,))

    def remove_shard(self, file: str) -> "Manifest":
        return dataclasses.replace(self, shards=tuple(s for s in self.shards if s.file != file))

    # -- query
    def shards_of(self, split: str) -> tuple[ShardInfo, ...]:
        """Shards of ``split``, ordered by first seed."""
        return tuple(s for s in self.shards if s.split == split)

    def seeds_of(self, split: str) -> list[int]:
        return [seed for s in self.shards_of(split) for seed in s.seeds]

    def get(self, file: str) -> ShardInfo | None:
        return next((s for s in self.shards if s.file == file), None)

    def is_done(self, root: str | os.PathLike, file: str, *, check_hash: bool = False) -> bool:
        """Whether shard ``file`` is finished: listed, present, of the recorded size (and hash)."""
        info = self.get(file)
        if info is None:
            return False
        p = Path(root) / file
        if not p.is_file() or p.stat().st_size != info.num_bytes:
            return False
        return not (check_hash and info.sha256 is not None and sha256_file(p) != info.sha256)

    def verify(self, root: str | os.PathLike, *, check_hash: bool = True, open_shards: bool = False) -> list[str]:
        """Problems with the listed shards (missing, wrong size or hash, unreadable); empty if none."""
        problems = []
        for info in self.shards:
            p = Path(root) / info.file
            if not p.is_file():
                problems.append(f"{p}: missing")
            elif p.stat().st_size != info.num_bytes:
                problems.append(f"{p}: {p.stat().st_size} bytes, the manifest says {info.num_bytes}")
            elif check_hash and info.sha256 is not None and sha256_file(p) != info.sha256:
                problems.append(f"{p}: sha256 differs from the manifest")
            elif open_shards:
                try:
                    with ShardReader(p) as r:
                        if len(r) != info.count:
                            problems.append(f"{p}: {len(r)} samples, the manifest says {info.count}")
                except CorruptShardError as e:
                    problems.append(str(e))
        return problems

    # -- (de)serialize
    def to_json(self) -> dict[str, Any]:
        return {
            "format": "gvf-dataset",
            "format_version": self.format_version,
            "created": self.created,
            "config": self.config,
            "shards": [s.to_json() for s in self.shards],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Manifest":
        if d.get("format") != "gvf-dataset":
            raise ValueError(f"format is {d.get('format')!r}, expected 'gvf-dataset'")
        if d.get("format_version") != MANIFEST_VERSION:
            raise ValueError(f"format_version {d.get('format_version')}, this code reads {MANIFEST_VERSION}")
        return cls(
            config=d["config"],
            shards=tuple(ShardInfo.from_json(s) for s in d["shards"]),
            format_version=d["format_version"],
            created=d["created"],
        )

    @classmethod
    def load(cls, root: str | os.PathLike) -> "Manifest":
        """Read ``root/manifest.json``; ``FileNotFoundError``/``ValueError`` naming the file otherwise."""
        p = Path(root) / MANIFEST_NAME
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no dataset manifest; make the dataset with `gvf data make --out {root}`")
        try:
            return cls.from_json(json.loads(p.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{p}: unreadable dataset manifest ({type(e).__name__}: {e}). Delete it and re-run `gvf data make`; "
                f"finished shards are written again"
            ) from None

    @classmethod
    def open(cls, root: str | os.PathLike, config: Mapping[str, Any]) -> "Manifest":
        """Load ``root``'s manifest to resume with ``config``, or start a new one if there is none.

        Raises ``ValueError`` if the directory was made with a different config.
        """
        p = Path(root) / MANIFEST_NAME
        if not p.exists():
            return cls(config=dict(config))
        m = cls.load(root)
        config = _jsonable(dict(config))
        if m.config != config:
            diff = sorted(k for k in set(m.config) | set(config) if m.config.get(k) != config.get(k))
            raise ValueError(
                f"{p}: the dataset was made with another config (differs in {diff}); "
                f"use a new output directory, or pass the same config to resume"
            )
        return m

    def save(self, root: str | os.PathLike) -> Path:
        """Write ``root/manifest.json`` atomically (temporary file, fsync, ``os.replace``)."""
        p = Path(root) / MANIFEST_NAME
        d = self.to_json()
        shards = d.pop("shards")
        # one line per shard: the file is rewritten after every shard, so keep it compact
        text = json.dumps(d, indent=1)[:-2] + ',\n "shards": ['
        text += ",".join("\n  " + json.dumps(s, separators=(",", ":")) for s in shards) + "\n ]\n}\n"
        with atomic_path(p) as tmp:
            tmp.write_text(text)
        return p
