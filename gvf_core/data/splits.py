"""Train / validation / test splits of the data engine, by seed range.

Every sample of the data engine is a pure function of one integer seed, so a split is a
set of seeds, and splits are disjoint because their seed ranges are:

- ``train``: seeds ``[TRAIN_SEED_START, TRAIN_SEED_END)``, used from the start up
  (``split_seeds("train", count)`` gives ``0 .. count-1``);
- ``val``: the fixed 64 seeds ``VAL_SEEDS`` — every issue, run and report evaluates on
  exactly these, so numbers stay comparable;
- ``test``: the fixed 256 held-out seeds ``TEST_SEEDS``, looked at rarely.

Shards hold consecutive seeds (:func:`shard_plan`), named after their first seed
(:func:`shard_file_name`), so a resumed ``gvf data make`` knows which files it still owes.
"""

from __future__ import annotations

__all__ = [
    "SPLITS",
    "TRAIN_SEED_START",
    "TRAIN_SEED_END",
    "VAL_SEEDS",
    "TEST_SEEDS",
    "split_range",
    "split_seeds",
    "split_of_seed",
    "shard_plan",
    "shard_file_name",
]

TRAIN_SEED_START = 0
"""First training seed."""
TRAIN_SEED_END = 1_000_000
"""Training seeds stop before this (exclusive), so they never reach the validation seeds."""
VAL_SEEDS = range(1_000_000, 1_000_064)
"""The fixed validation set: 64 seeds, the same in every issue and run."""
TEST_SEEDS = range(2_000_000, 2_000_256)
"""The held-out test set: 256 seeds."""

SPLITS: dict[str, range] = {
    "train": range(TRAIN_SEED_START, TRAIN_SEED_END),
    "val": VAL_SEEDS,
    "test": TEST_SEEDS,
}


def split_range(split: str) -> range:
    """The full seed range of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}") from None


def split_seeds(split: str, count: int | None = None, start: int | None = None) -> list[int]:
    """Consecutive seeds of ``split``.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        count: how many seeds; ``None`` means all of them up to the end of the split
            (required for ``"train"``, whose range is a million seeds long).
        start: first seed (absolute, not an offset); defaults to the start of the split.
            Must lie inside the split's range, and so must the last seed.

    Returns:
        ``[start, start + count)`` as a list. Deterministic; the same arguments always give
        the same seeds.
    """
    r = split_range(split)
    first = r.start if start is None else int(start)
    if first not in r:
        raise ValueError(f"split {split!r}: start seed {first} lies outside its seed range [{r.start}, {r.stop})")
    if count is None:
        if split == "train":
            raise ValueError("split_seeds('train') needs a count: the training range holds a million seeds")
        count = r.stop - first
    count = int(count)
    if count < 0:
        raise ValueError(f"split_seeds: count must be >= 0, got {count}")
    if first + count > r.stop:
        raise ValueError(
            f"split {split!r}: seeds [{first}, {first + count}) run past the end of its range [{r.start}, {r.stop}); "
            f"ask for at most {r.stop - first} seeds from {first}"
        )
    return list(range(first, first + count))


def split_of_seed(seed: int) -> str:
    """The split a seed belongs to; raises ``ValueError`` for seeds outside every split."""
    for name, r in SPLITS.items():
        if seed in r:
            return name
    raise ValueError(f"seed {seed} belongs to no split ({', '.join(f'{k}: [{r.start}, {r.stop})' for k, r in SPLITS.items())})")


def shard_plan(seeds: list[int] | range, shard_size: int) -> list[tuple[int, list[int]]]:
    """Cut ``seeds`` into shards of ``shard_size`` in the given order (the last may be short).

    Returns ``[(first_seed, seeds_of_shard), ...]``. Deterministic: the plan depends only on
    the arguments, so a resumed run plans the same shards (see :func:`shard_file_name`).
    """
    if shard_size < 1:
        raise ValueError(f"shard_plan: shard_size must be >= 1, got {shard_size}")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError("shard_plan: seeds contain duplicates")
    return [(chunk[0], chunk) for chunk in (seeds[i : i + shard_size] for i in range(0, len(seeds), shard_size))]


def shard_file_name(split: str, first_seed: int) -> str:
    """File name of the shard of ``split`` starting at ``first_seed``, e.g. ``train-000000128.safetensors``."""
    split_range(split)
    return f"{split}-{int(first_seed):09d}.safetensors"
