"""The search's fixed data, decoded once: what every trial trains and validates on, as uint8.

Every trial recovers its candidate on the same images (the first `(bn_batches + tau_hat) x
batch_size` of a seeded shuffle of the training split) and scores it on the whole validation
split. Through a DataLoader each trial decodes those JPEGs again, and on ImageNet that is most
of a trial. Here they are decoded once, in parallel, into two uint8 arrays: the training subset
stored before its augmentation (resized and centre-cropped), redone on tensors per batch
(tensor_augment.py, on the trial's GPU when it has one), and the validation split stored
exactly as its eval transform leaves it, so validation sees the loader's images (to float rounding). The
arrays are numpy so that Ray's object store shares one read-only copy per node among all the
trials there (the tune layer ships them; nothing here knows Ray).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lcp_tune.progress import TrainingProgress

from .splits import MAX_AUTO_WORKERS, DataSplits, OneLineLoader
from .tensor_augment import TensorAugment

DECODE_BATCH = 64
MIN_IMAGES_FOR_WORKERS = 512   # below, starting worker processes costs more than decoding


@dataclass(frozen=True)
class SearchSubsets:
    """The recovery training subset and the validation split, decoded: uint8 (N, C, H, W)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    augment: TensorAugment

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.train_images, self.train_labels, self.val_images, self.val_labels))

    def train_batches(self, batch_size: int, seed: int, device: torch.device) -> "TensorBatches":
        return TensorBatches(self.train_images, self.train_labels, batch_size, self.augment, True, seed, device)

    def val_batches(self, batch_size: int, device: torch.device) -> "TensorBatches":
        return TensorBatches(self.val_images, self.val_labels, batch_size, self.augment, False, 0, device)


class TensorBatches:
    """A DataLoader's stand-in over decoded images, for the search's loops.

    Like the loader it replaces, one iteration is one pass (shuffled by `generator` when
    training, which callers reseed for common random numbers) and a ragged last training batch
    is dropped. Each batch goes to `device` as uint8 (a quarter of the bytes of floats) and is
    augmented and normalised there.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, augment: TensorAugment,
                 train: bool, seed: int, device: torch.device):
        with warnings.catch_warnings():   # arrays from Ray's object store are read-only: never written here
            warnings.simplefilter("ignore", UserWarning)
            self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        self.batch_size, self.augment, self.train, self.device = batch_size, augment, train, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.drop_last = train and len(self.images) >= batch_size

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        cuda = self.device.type == "cuda"
        for b in range(len(self)):
            if self.train:
                rows = order[b * self.batch_size:(b + 1) * self.batch_size]
                x, y = self.images[rows], self.labels[rows]
            else:                 # in order: a view, no copy of the uint8 images
                x, y = self.images[b * self.batch_size:(b + 1) * self.batch_size], \
                    self.labels[b * self.batch_size:(b + 1) * self.batch_size]
            if cuda:
                x, y = x.pin_memory().to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            x = self.augment(x, self.generator) if self.train else self.augment.normalize(x)
            yield (x.contiguous(memory_format=torch.channels_last) if cuda else x), y


def recovery_size(batch_size: int, bn_batches: int, tau_hat: int) -> int:
    """Training images one trial can draw: its BN recalibration batches and its SGD steps."""
    return batch_size * (bn_batches + max(tau_hat, 1))


def supports_subsets(data: DataSplits) -> bool:
    """Whether the data can be decoded once: image splits with a tensor augmentation."""
    return data.augment is not None and all(hasattr(s, "stored") for s in (data.train, data.val))


def search_subsets(config, data: DataSplits, log: Optional[Callable[[str], None]] = None,
                   cpus: Optional[int] = None) -> Optional[SearchSubsets]:
    """The decoded subsets of an ExperimentConfig's search, or None where they do not apply
    (`search.shared_data` off, or data that is not image files)."""
    if not config.search.shared_data or not supports_subsets(data):
        return None
    search = config.search
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    steps = max((search.tau_hat, *search.race_steps()))   # the race's longest recovery reads the most
    return decode_search_subsets(data, recovery_size(search.batch_size, search.bn_batches, steps),
                                 config.seed, decode_workers(data, cpus), log)


def decode_search_subsets(data: DataSplits, train_count: int, seed: int, workers: int,
                          log: Optional[Callable[[str], None]] = None) -> SearchSubsets:
    """Decode `train_count` training images (a seeded shuffle's first) and the validation split."""
    if not supports_subsets(data):
        raise ValueError("these splits hold no image files to decode (in-memory tensors or a user's dataset)")
    rows = np.sort(np.random.default_rng(seed).permutation(len(data.train))[:train_count])
    total = len(rows) + len(data.val)
    workers = workers if total >= MIN_IMAGES_FOR_WORKERS else 0
    say = log or (lambda line: None)
    say(f"decoding the search's data once: {len(rows):,} training and {len(data.val):,} validation images "
        f"({workers} worker{'s' * (workers != 1)}), shared by every trial")
    batches = -(-len(rows) // DECODE_BATCH) + -(-len(data.val) // DECODE_BATCH)
    progress = TrainingProgress("decode", 1, batches, DECODE_BATCH, say,
                                interactive=None if log else False)
    progress.start(0)
    start = time.monotonic()
    steps = [0]
    try:
        train = _decode(_Stored(data.train, rows), workers, progress, steps)
        val = _decode(_Stored(data.val, np.arange(len(data.val))), workers, progress, steps)
    finally:
        progress.close()
    subsets = SearchSubsets(train[0], train[1], val[0], val[1], data.augment)
    elapsed = time.monotonic() - start
    say(f"decoded {total:,} images in {elapsed:.1f}s ({total / max(elapsed, 1e-9):,.0f} img/s): "
        f"{subsets.nbytes / 2 ** 20:,.0f} MiB")
    return subsets


def decode_workers(data: DataSplits, cpus: int) -> int:
    """Decoding processes for a driver of `cpus` CPUs: the given --workers, else all but one."""
    if data.workers is not None:
        return data.workers
    return min(MAX_AUTO_WORKERS, max(0, cpus - 1))


class _Stored(Dataset):
    """Rows of an ImageSplit as stored uint8 arrays with their labels."""

    def __init__(self, split, rows: np.ndarray):
        self.split, self.rows = split, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = int(self.rows[i])
        return torch.from_numpy(self.split.stored(row)), int(self.split.targets[row])


def _decode(view: _Stored, workers: int, progress: TrainingProgress, steps: list[int]):
    images: Optional[np.ndarray] = None
    labels = np.empty(len(view), dtype=np.int64)
    done = 0
    # a bad file stops the run in one line naming it, as in any loader of these splits
    loader = OneLineLoader(view, batch_size=DECODE_BATCH, num_workers=workers)
    for x, y in loader:
        if images is None:
            images = np.empty((len(view), *x.shape[1:]), dtype=np.uint8)
        images[done:done + len(x)] = x.numpy()
        labels[done:done + len(y)] = y.numpy()
        done += len(x)
        progress.step(steps[0])
        steps[0] += 1
    if images is None:
        raise ValueError("nothing to decode: the split is empty")
    return images, labels
