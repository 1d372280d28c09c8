"""Dataset registry: name -> factory(seed, val_fraction, data_dir, [image_size], val_max) -> DataSplits.

Registered names load built-in data; "package.module:factory" (or a factory registered from
Python) loads a user's own datasets through user.py. `load_data` applies the settings every
dataset shares: validation fraction, subset and loader workers.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from lcp_tune.config import default_of
from lcp_tune.errors import LcpTuneError
from lcp_tune.registry import Registry, drop_none

from .splits import DataSplits, labels_of, select, stratified_split
from .user import is_user_data, user_splits


class DatasetRegistry(Registry):
    """The registered names, plus user factories ("module:factory") resolved on demand."""

    def get(self, name: str) -> Callable[..., DataSplits]:
        if name in self._items:
            return self._items[name]
        if is_user_data(name):
            return lambda **kwargs: user_splits(name, **kwargs)
        raise LcpTuneError(f"unknown dataset {name!r}: must be one of {', '.join(self.names())} "
                           f"or package.module:factory")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or is_user_data(name))


DATASETS: DatasetRegistry = DatasetRegistry("dataset")


def list_datasets() -> list[str]:
    return DATASETS.names()


def load_experiment_data(config) -> "DataSplits":
    """The data of an ExperimentConfig (name, seed, validation split, subset, size, workers)."""
    return load_data(config.data, config.seed, config.val_fraction, config.data_dir, config.subset,
                     config.workers, config.image_size, config.val_max)


def load_data(name: str, seed: int = 0, val_fraction: float = 0.15,
              data_dir: Optional[str] = None, subset: float = 1.0, workers: Optional[int] = None,
              image_size: Optional[int] = None, val_max: Optional[int] = None) -> DataSplits:
    """Load a registered dataset with a seeded, class-stratified validation split.

    Args:
        name: a registered dataset (`list_datasets()`).
        seed: seeds the validation split and the subset; the test split never depends on it.
        val_fraction: share of every training class held out for validation, in (0, 1).
        data_dir: folder holding the dataset (real datasets only).
        subset: share of every class of the remaining training data kept, in (0, 1]; the
            validation split is carved first, so runs with different subsets score on the
            same images (LeGR searches ImageNet on a subset).
        workers: loader worker processes (None: DataSplits.loader_workers decides).
        image_size: side of the square input, to override the dataset's standard size.
        val_max: at most this many validation images, the same number per class (0: no cap;
            None: the config's default, 10,000).

    Example::

        splits = load_data("digits", seed=0)
        x, y = next(iter(splits.loader("train", 32, shuffle=True)))
    """
    factory = DATASETS.get(name)
    if not 0 < val_fraction < 1:
        raise LcpTuneError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 < subset <= 1:
        raise LcpTuneError(f"subset must be in (0, 1], got {subset}")
    if workers is not None and workers < 0:
        raise LcpTuneError(f"workers must be 0 or more, got {workers}")
    if image_size is not None and image_size < 8:
        raise LcpTuneError(f"image_size must be at least 8 pixels, got {image_size}")
    if val_max is None:
        val_max = default_of("val_max")
    if val_max < 0:
        raise LcpTuneError(f"val_max must be 0 (no cap) or more, got {val_max}")
    splits = factory(seed=seed, val_fraction=val_fraction, data_dir=data_dir, val_max=val_max,
                     **drop_none(image_size=image_size))
    if splits.num_classes < 2:   # every accuracy would be 100%: nothing to tell methods apart
        raise LcpTuneError(f"--data {name!r} has {splits.num_classes} class; classification needs at least 2")
    if subset < 1:
        _, keep = stratified_split(labels_of(splits.train), subset, seed)
        splits = dataclasses.replace(splits, train=select(splits.train, keep))
    return dataclasses.replace(splits, workers=workers)
