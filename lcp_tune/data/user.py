"""A user's own data: a factory that returns torch Datasets, checked before any Ray worker starts.

The factory is named "package.module:factory" on the command line (every Ray worker imports it
by that name), or registered from Python with `register_factory` (lcp_tune.search(data=fn)
does this, and ships the function to the workers). It is called with `data_dir=` when it
accepts that keyword and returns one of

    (train, test)  |  (train, test, val)  |  (train, test, val, classes)
    {"train": ..., "test": ..., "val": ... (optional), "classes": [...] (optional)}

Samples must be (image tensor of shape (C, H, W), integer label). Without a validation set one
is carved from the training set, class-stratified and seeded, as for built-in data; the input
shape is read from the first training sample and the class count from `classes` or the labels.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lcp_tune.errors import LcpTuneError, first_line
from lcp_tune.trust import call_factory, import_factory

from .splits import DataSplits, labels_of, select, stratified_split

# Factories registered from Python (a notebook's function), by the name the config records.
_FACTORIES: dict[str, Callable[..., Any]] = {}


def register_factory(factory: Callable[..., Any]) -> str:
    """Make a data factory callable known under a name a config can hold; returns the name.

    A function importable by its module and name keeps "module:name" (Ray workers import it);
    any other (defined in a notebook or __main__) gets "python:name", and the search ships it
    to the workers itself.
    """
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if module and module != "__main__" and "<" not in qualname:
        return f"{module}:{qualname}"
    name = f"python:{qualname.replace('<', '').replace('>', '') or 'data'}"
    _FACTORIES[name] = factory
    return name


def registered_factories(name: str) -> dict[str, Callable[..., Any]]:
    """The in-process factory behind `name`, if any, to ship to Ray workers."""
    return {name: _FACTORIES[name]} if name in _FACTORIES else {}


def is_user_data(name: str) -> bool:
    return name in _FACTORIES or (":" in name and not name.startswith("python:"))


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The function registered from Python under `spec`, or the one it names, once trusted."""
    if spec in _FACTORIES:
        return _FACTORIES[spec]
    return import_factory(spec, f"--data {spec!r}", "--data")


def user_splits(spec: str, seed: int = 0, val_fraction: float = 0.15, data_dir: Optional[str] = None,
                image_size: Optional[int] = None, val_max: int = 0) -> DataSplits:
    """Call the factory named `spec`, check what it returned, and carve the validation split."""
    if image_size is not None:
        raise LcpTuneError(f"--image-size applies to built-in datasets; resize inside the factory {spec!r}")
    returned = call_factory(resolve_factory(spec), f"--data {spec!r}", data_dir=data_dir)
    train, test, val, classes = _unpack(spec, returned)
    shape = _sample_shape(spec, "train", train)
    for name, split in (("test", test), ("val", val)):
        if split is not None and _sample_shape(spec, name, split) != shape:
            raise LcpTuneError(f"--data {spec!r}: {name} samples have shape {_sample_shape(spec, name, split)}, "
                               f"training samples {shape}; every split must have one image shape")
    train_labels = _labels(spec, "train", train)
    num_classes = len(classes) if classes else int(train_labels.max()) + 1
    for name, split in (("train", train), ("test", test), ("val", val)):
        if split is not None:
            _check_range(spec, name, train_labels if split is train else _labels(spec, name, split), num_classes)
    if val is None:
        rest, held = stratified_split(train_labels, val_fraction, seed, val_max)
        train, val = select(train, rest), select(train, held)
    return DataSplits(train, val, test, num_classes, shape, tuple(str(c) for c in classes or ()))


def _unpack(spec: str, returned: Any):
    if isinstance(returned, dict):
        unknown = sorted(set(returned) - {"train", "test", "val", "classes"})
        if unknown or "train" not in returned or "test" not in returned:
            raise LcpTuneError(f"--data {spec!r}: the factory's dict must have keys train and test "
                               f"(val and classes optional), got {sorted(returned)}")
        parts = [returned["train"], returned["test"], returned.get("val"), returned.get("classes")]
    elif isinstance(returned, (tuple, list)) and 2 <= len(returned) <= 4:
        parts = list(returned) + [None] * (4 - len(returned))
    else:
        raise LcpTuneError(f"--data {spec!r}: the factory must return (train, test[, val[, classes]]) "
                           f"torch Datasets, got {type(returned).__name__}")
    train, test, val, classes = parts
    for name, split in (("train", train), ("test", test), ("val", val)):
        if split is None and name == "val":
            continue
        if isinstance(split, (list, tuple, str, dict)) or not (
                isinstance(split, Dataset) or (hasattr(split, "__getitem__") and hasattr(split, "__len__"))):
            raise LcpTuneError(f"--data {spec!r}: {name} must be a torch.utils.data.Dataset, "
                               f"got {type(split).__name__}")
        if len(split) == 0:
            raise LcpTuneError(f"--data {spec!r}: the {name} dataset is empty")
    if classes is not None and (isinstance(classes, str) or not hasattr(classes, "__len__") or not len(classes)):
        raise LcpTuneError(f"--data {spec!r}: classes must be a non-empty list of class names")
    return train, test, val, classes


def _sample_shape(spec: str, name: str, split: Dataset) -> tuple[int, int, int]:
    try:
        sample = split[0]
    except Exception as exc:
        raise LcpTuneError(f"--data {spec!r}: reading {name}[0] raised {first_line(exc)}") from None
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise LcpTuneError(f"--data {spec!r}: {name} samples must be (image, label) pairs, "
                           f"got {type(sample).__name__}")
    image = sample[0]
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or not image.is_floating_point():
        what = f"a {image.dim()}-d {image.dtype} tensor" if isinstance(image, torch.Tensor) else type(image).__name__
        raise LcpTuneError(f"--data {spec!r}: {name} images must be float tensors of shape (C, H, W), got {what}")
    return tuple(int(s) for s in image.shape)


def _labels(spec: str, name: str, split: Dataset) -> np.ndarray:
    try:
        labels = labels_of(split)
    except Exception as exc:
        raise LcpTuneError(f"--data {spec!r}: reading the {name} labels raised {first_line(exc)}") from None
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or
                                (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)))):
        raise LcpTuneError(f"--data {spec!r}: {name} labels must be integers (class indices), "
                           f"got {labels.dtype} values")
    return labels.astype(np.int64)


def _check_range(spec: str, name: str, labels: np.ndarray, num_classes: int) -> None:
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise LcpTuneError(f"--data {spec!r}: {name} label {int(bad[0])} is outside [0, {num_classes}) "
                           f"for {num_classes} classes")

