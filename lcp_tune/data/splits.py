"""Seeded train / validation / test splits and their loaders.

The validation split is carved out of the training data: the search scores candidates on it
and only on it; the test split is touched once, by the final report.

Real datasets (cifar10, cifar100, imagenet, cub200 in `images.py`; mnist, fashion-mnist in
`idx.py`) are read from `data_dir` in their usual on-disk formats (see docs/datasets.md); nothing
is ever downloaded. What is checked, and when:

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

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from lcp_tune.errors import LcpTuneError

from .tensor_augment import TensorAugment


MAX_AUTO_WORKERS = 8   # beyond this a loader rarely keeps up better, and each worker holds memory
MIN_ITEMS_FOR_WORKERS = 2048   # below, a pass is over before workers have started (every pass restarts them)


@dataclass(frozen=True)
class DataSplits:
    """The three splits of one dataset plus what a model factory needs to know about it."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]  # (channels, height, width) of one sample
    classes: tuple[str, ...] = ()      # class names, index = label, where the dataset has them
    workers: Optional[int] = None      # loader worker processes (0: in the main process; None: auto)
    decodes: bool = False              # items are decoded / transformed on access (images): workers pay
    # the training augmentation on tensors: set where train and val are ImageSplits whose items
    # the search can decode once and share (search_subsets.py); None for in-memory tensors
    augment: Optional[TensorAugment] = None

    def loader_workers(self, cpus: Optional[int] = None) -> int:
        """Loader workers for a process that owns `cpus` CPUs (default: its torch threads).

        Given ones win. Otherwise none for in-memory tensors or a small dataset, where starting
        and feeding a worker costs more than it saves, and for decoded images all CPUs but the
        one that computes (at most 8): the caller takes them from its compute threads
        (`compute_threads`).
        """
        if self.workers is not None:
            return self.workers
        if not self.decodes or len(self.train) < MIN_ITEMS_FOR_WORKERS:
            return 0
        cpus = cpus if cpus is not None else torch.get_num_threads()
        return min(MAX_AUTO_WORKERS, max(0, cpus - 1))

    def compute_threads(self, cpus: int) -> int:
        """The torch threads left to a process of `cpus` CPUs once its loader workers have theirs."""
        return max(1, cpus - self.loader_workers(cpus))

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0,
               workers: Optional[int] = None) -> DataLoader:
        """A DataLoader over one split; shuffling uses its own seeded generator.

        Workers are not persistent: each pass restarts them from the generator, so re-seeding
        `loader.generator` replays the same batches and the same augmentations.
        """
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        workers = self.loader_workers() if workers is None else workers
        dataset = getattr(self, split)
        return OneLineLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                       generator=generator,
                       # a ragged last batch only for tiny sets, where dropping it leaves nothing
                       drop_last=shuffle and split == "train" and len(dataset) >= batch_size,
                       num_workers=workers, pin_memory=torch.cuda.is_available())


class OneLineLoader(DataLoader):
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

def stratified_split(labels: np.ndarray, fraction: float, seed: int,
                     max_total: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with `fraction` of every class held out, reproducibly.

    `max_total` (0: none) caps the held-out rows at that many, the same number per class: 15% of
    ImageNet is 190,000 images a validation pass, where 10 per class rank candidates as well.
    A capped split is the first rows of the uncapped one, so a model trained without the
    uncapped held-out rows never saw the capped ones either.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, max_total // max(1, len(classes))) if max_total else None
    held_out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        count = max(1, int(round(fraction * len(idx))))
        held_out.append(idx[: count if per_class is None else min(count, per_class)])
    held = np.sort(np.concatenate(held_out))
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return rest, held

def labels_of(dataset: Dataset) -> np.ndarray:
    """Every label of a split: from its tensors or `targets`, else by reading each sample once."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].numpy()
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[np.asarray(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets)
    return np.array([_plain(dataset[i][1]) for i in range(len(dataset))])


def select(dataset: Dataset, keep: np.ndarray) -> Dataset:
    """The rows `keep` of a split, in the cheapest form its type allows."""
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[keep] for t in dataset.tensors))
    if hasattr(dataset, "select"):
        return dataset.select(keep)
    return Subset(dataset, [int(i) for i in keep])


def _plain(label):
    return label.item() if isinstance(label, torch.Tensor) else label
