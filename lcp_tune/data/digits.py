"""scikit-learn's handwritten digits: the embedded default, shipped with a dependency."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lcp_tune.errors import LcpTuneError

from .registry import DATASETS
from .splits import DataSplits, stratified_split


@DATASETS.register("digits")
def load_digits_splits(seed: int = 0, val_fraction: float = 0.15,
                       data_dir: Optional[str] = None, image_size: Optional[int] = None,
                       val_max: int = 0) -> DataSplits:
    """scikit-learn's 1,797 handwritten digits (8x8, 10 classes), shipped with the package.

    Kept at 8x8: the ResNets adapt to any size and the whole default search then fits in a few
    minutes on 2 cores. The test split (20%) is fixed, independent of `seed`, so every run of
    every method is tested on the same 360 images; the validation split varies with `seed`.
    """
    if image_size is not None:
        raise LcpTuneError(f"digits images are 8x8 and cannot be resized, got image_size={image_size}")
    images, labels = digits_arrays()
    images = images.astype(np.float32) / 16.0
    labels = labels.astype(np.int64)
    trainval_idx, test_idx = stratified_split(labels, 0.2, seed=12345)
    train_sub, val_sub = stratified_split(labels[trainval_idx], val_fraction, seed=seed, max_total=val_max)
    train_idx, val_idx = trainval_idx[train_sub], trainval_idx[val_sub]
    mean, std = images[train_idx].mean(), images[train_idx].std()
    x = torch.from_numpy((images - mean) / std).unsqueeze(1)
    y = torch.from_numpy(labels)

    def subset(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(x[idx], y[idx])

    return DataSplits(subset(train_idx), subset(val_idx), subset(test_idx), 10, (1, 8, 8))


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits' images (1797, 8, 8) and labels, read from the file scikit-learn ships.

    Importing scikit-learn costs about 2 s, paid by the driver and again by every trial's
    worker process and every fine-tune worker; the file it ships, read here with numpy, costs
    25 ms. `load_digits` (the import and all) is the fallback where the file is not found.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")   # locates the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root, "datasets", "data", "digits.csv.gz")
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            if table.shape == (1797, 65):
                return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target
