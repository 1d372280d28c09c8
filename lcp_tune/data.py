"""Dataset registry with seeded train / validation / test splits.

The validation split is carved out of the training data: the search scores candidates on it
and only on it; the test split is touched once, by the final report.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .registry import Registry

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

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        """A DataLoader over one split; shuffling uses its own seeded generator."""
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(getattr(self, split), batch_size=batch_size, shuffle=shuffle,
                          generator=generator, drop_last=shuffle and split == "train")


def load_data(name: str, seed: int = 0, val_fraction: float = 0.15,
              data_dir: Optional[str] = None) -> DataSplits:
    """Load a registered dataset with a seeded validation split."""
    factory = DATASETS.get(name)
    return factory(seed=seed, val_fraction=val_fraction, data_dir=data_dir)


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
                       data_dir: Optional[str] = None) -> DataSplits:
    """scikit-learn's 1,797 handwritten digits (8x8, 10 classes), shipped with the package.

    Kept at 8x8: the ResNets adapt to any size and the whole default search then fits in a few
    minutes on 2 cores. The test split (20%) is fixed, independent of `seed`, so every run of
    every method is tested on the same 360 images; the validation split varies with `seed`.
    """
    from sklearn.datasets import load_digits

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
