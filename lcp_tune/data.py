"""Dataset registry with seeded train / validation / test splits.

The validation split is carved out of the training data: the search scores candidates on it
and only on it; the test split is touched once, by the final report.

Real datasets (cifar10, cifar100, imagenet, cub200, in `image_data.py`) are read from
`data_dir` in their usual on-disk formats (see docs/datasets.md); nothing is ever downloaded. What is checked, and when:

* At load time, the structure: folders and index files exist and parse, every listed image file
  exists, no class folder is empty, labels are in range. A failure is one `LcpTuneError` line
  naming the path and the expected layout. Checksums are not checked, so a folder in the right
  format with other contents (a relabelled copy, a tiny test fixture) loads.
* Image contents are decoded only when a sample is read. An image that fails to decode stops
  the run with one `LcpTuneError` line naming the file; it is not skipped, because a silently
  shrunk dataset makes runs incomparable, and decoding a million images up front would cost
  minutes on every start. Fix or delete the file and run again.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .registry import LcpTuneError, Registry, drop_none

DATASETS: Registry[Callable[..., "DataSplits"]] = Registry("dataset")


def list_datasets() -> list[str]:
    return DATASETS.names()


@dataclass(frozen=True)
class DataSplits:
    """The three splits of one dataset plus what a model factory needs to know about it."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]  # (channels, height, width) of one sample
    classes: tuple[str, ...] = ()      # class names, index = label, where the dataset has them
    workers: int = 0                   # loader worker processes (0: load in the main process)

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0,
               workers: Optional[int] = None) -> DataLoader:
        """A DataLoader over one split; shuffling uses its own seeded generator.

        Workers are not persistent: each pass restarts them from the generator, so re-seeding
        `loader.generator` replays the same batches and the same augmentations.
        """
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        workers = self.workers if workers is None else workers
        dataset = getattr(self, split)
        return _Loader(dataset, batch_size=batch_size, shuffle=shuffle,
                       generator=generator,
                       # a ragged last batch only for tiny sets, where dropping it leaves nothing
                       drop_last=shuffle and split == "train" and len(dataset) >= batch_size,
                       num_workers=workers, pin_memory=torch.cuda.is_available())


class _Loader(DataLoader):
    """A DataLoader whose worker errors stay one line (torch wraps them in a traceback)."""

    def __iter__(self):
        batches = super().__iter__()
        try:
            yield from batches
            return
        except LcpTuneError as exc:
            message = str(exc).strip().splitlines()[-1].split("LcpTuneError: ", 1)[-1]
        # Stop the workers now: left to a later garbage collection, each waits 5 s to exit.
        getattr(batches, "_shutdown_workers", lambda: None)()
        del batches
        raise LcpTuneError(message)


def load_experiment_data(config) -> "DataSplits":
    """The data of an ExperimentConfig (name, seed, validation split, subset, size, workers)."""
    return load_data(config.data, config.seed, config.val_fraction, config.data_dir, config.subset,
                     config.workers, config.image_size)


def load_data(name: str, seed: int = 0, val_fraction: float = 0.15,
              data_dir: Optional[str] = None, subset: float = 1.0, workers: int = 0,
              image_size: Optional[int] = None) -> DataSplits:
    """Load a registered dataset with a seeded, class-stratified validation split.

    Args:
        name: a registered dataset (`list_datasets()`).
        seed: seeds the validation split and the subset; the test split never depends on it.
        val_fraction: share of every training class held out for validation, in (0, 1).
        data_dir: folder holding the dataset (real datasets only).
        subset: share of every class of the remaining training data kept, in (0, 1]; the
            validation split is carved first, so runs with different subsets score on the
            same images (LeGR searches ImageNet on a subset).
        workers: loader worker processes.
        image_size: side of the square input, to override the dataset's standard size.

    Example::

        splits = load_data("digits", seed=0)
        x, y = next(iter(splits.loader("train", 32, shuffle=True)))
    """
    factory = DATASETS.get(name)
    if not 0 < val_fraction < 1:
        raise LcpTuneError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 < subset <= 1:
        raise LcpTuneError(f"subset must be in (0, 1], got {subset}")
    if workers < 0:
        raise LcpTuneError(f"workers must be 0 or more, got {workers}")
    if image_size is not None and image_size < 8:
        raise LcpTuneError(f"image_size must be at least 8 pixels, got {image_size}")
    splits = factory(seed=seed, val_fraction=val_fraction, data_dir=data_dir,
                     **drop_none(image_size=image_size))
    if subset < 1:
        _, keep = stratified_split(_labels_of(splits.train), subset, seed)
        splits = dataclasses.replace(splits, train=_select(splits.train, keep))
    return dataclasses.replace(splits, workers=workers)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with `fraction` of every class held out, reproducibly."""
    rng = np.random.default_rng(seed)
    held_out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        held_out.append(idx[: max(1, int(round(fraction * len(idx))))])
    held = np.sort(np.concatenate(held_out))
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return rest, held


@DATASETS.register("digits")
def load_digits_splits(seed: int = 0, val_fraction: float = 0.15,
                       data_dir: Optional[str] = None, image_size: Optional[int] = None) -> DataSplits:
    """scikit-learn's 1,797 handwritten digits (8x8, 10 classes), shipped with the package.

    Kept at 8x8: the ResNets adapt to any size and the whole default search then fits in a few
    minutes on 2 cores. The test split (20%) is fixed, independent of `seed`, so every run of
    every method is tested on the same 360 images; the validation split varies with `seed`.
    """
    from sklearn.datasets import load_digits

    if image_size is not None:
        raise LcpTuneError(f"digits images are 8x8 and cannot be resized, got image_size={image_size}")
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    trainval_idx, test_idx = stratified_split(labels, 0.2, seed=12345)
    train_sub, val_sub = stratified_split(labels[trainval_idx], val_fraction, seed=seed)
    train_idx, val_idx = trainval_idx[train_sub], trainval_idx[val_sub]
    mean, std = images[train_idx].mean(), images[train_idx].std()
    x = torch.from_numpy((images - mean) / std).unsqueeze(1)
    y = torch.from_numpy(labels)

    def subset(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(x[idx], y[idx])

    return DataSplits(subset(train_idx), subset(val_idx), subset(test_idx), 10, (1, 8, 8))


def _labels_of(dataset: Dataset) -> np.ndarray:
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].numpy()
    return np.asarray(dataset.targets)


def _select(dataset: Dataset, keep: np.ndarray) -> Dataset:
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[keep] for t in dataset.tensors))
    return dataset.select(keep)


# Registers cifar10, cifar100, imagenet and cub200 (imported last: it uses the names above).
from . import image_data as _image_data  # noqa: E402,F401
