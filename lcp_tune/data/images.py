"""The real image datasets: CIFAR-10/100 pickles, ImageNet folders, CUB-200-2011.

Each loader checks the folder's structure (not checksums) and fails with one `LcpTuneError`
line naming the path and the expected layout; images are decoded only when read, and one that
fails to decode stops the run naming the file (see lcp_tune/data/splits.py for why).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from .registry import DATASETS
from .splits import DataSplits, stratified_split
from .tensor_augment import TensorAugment
from lcp_tune.errors import LcpTuneError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


# --- splits, readers, transforms ------------------------------------------------------------

class ImageSplit(Dataset):
    """One split of an image dataset: rows of a reader (index -> PIL image), labels, a transform.

    The train and validation splits share one reader over the training files and differ in
    their rows and transform: validation uses the eval transform, never augmentation. `store`
    is the part of the transform kept when the search decodes a split once into uint8 tensors
    (search_subsets.py): the resize and crop before augmentation for training, the whole eval
    transform but ToTensor and Normalize for validation.
    """

    def __init__(self, read: Callable, rows: np.ndarray, targets: np.ndarray, transform: Callable,
                 store: Optional[Callable] = None):
        self.read, self.rows, self.targets, self.transform, self.store = read, rows, targets, transform, store

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return self.transform(self.read(int(self.rows[i]))), int(self.targets[i])

    def select(self, keep: np.ndarray) -> "ImageSplit":
        return ImageSplit(self.read, self.rows[keep], self.targets[keep], self.transform, self.store)

    def stored(self, i: int) -> np.ndarray:
        """Item `i` decoded and resized for a shared subset: uint8 (channels, height, width)."""
        image = self.read(int(self.rows[i]))
        if self.store is not None:
            image = self.store(image)
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


class _ArrayReader:
    """Images held in memory as one (N, H, W, 3) uint8 array (CIFAR)."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __call__(self, i: int):
        from PIL import Image
        return Image.fromarray(self.images[i])


class _FileReader:
    """Image files under `root`; relative paths kept as one bytes array (no per-worker copies)."""

    def __init__(self, root: Path, rel_paths: Sequence[str]):
        self.root = str(root)
        self.paths = np.array([os.fsencode(p) for p in rel_paths])

    def __call__(self, i: int):
        from PIL import Image
        path = os.path.join(self.root, os.fsdecode(self.paths[i]))
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise LcpTuneError(f"image {path} cannot be decoded ({reason}); replace or delete it "
                               "(bad images are not skipped, so every run sees the same data)") from None


@dataclass(frozen=True)
class ImageRecipe:
    """A dataset's transforms: PIL ones for loaders, and the same split in two for the search's
    decoded subsets (what is stored as uint8, and the augmentation redone on tensors)."""

    train: Callable
    eval: Callable
    train_store: Callable
    eval_store: Callable
    augment: TensorAugment


def _cifar_transforms(mean, std, size: int) -> ImageRecipe:
    from torchvision import transforms as T
    resize = [T.Resize(size)] if size != 32 else []
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    padding = max(1, size // 8)
    train = T.Compose(resize + [T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip()] + tail)
    store = T.Compose(resize)
    return ImageRecipe(train, T.Compose(resize + tail), store, store,
                       TensorAugment("pad_crop", size, tuple(mean), tuple(std), padding=padding))


def _imagenet_transforms(size: int) -> ImageRecipe:
    """torchvision's reference recipe: RandomResizedCrop + flip; Resize 256 + CenterCrop 224.

    The decoded training subset keeps the centre 256 x 256 square (for 224) of each image,
    where RandomResizedCrop then draws its boxes on tensors."""
    from torchvision import transforms as T
    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    resized = round(size * 256 / 224)
    train = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()] + tail)
    crop = [T.Resize(resized), T.CenterCrop(size)]
    return ImageRecipe(train, T.Compose(crop + tail), T.Compose([T.Resize(resized), T.CenterCrop(resized)]),
                       T.Compose(crop), TensorAugment("resized_crop", size, IMAGENET_MEAN, IMAGENET_STD))


def _image_splits(train_read, train_labels, test_read, test_labels, recipe: ImageRecipe, seed: int,
                  val_fraction: float, num_classes: int, size: int, classes, val_max: int = 0) -> DataSplits:
    """Carve the validation split from the training files; it gets the eval transform."""
    rest, val = stratified_split(train_labels, val_fraction, seed, val_max)
    return DataSplits(ImageSplit(train_read, rest, train_labels[rest], recipe.train, recipe.train_store),
                      ImageSplit(train_read, val, train_labels[val], recipe.eval, recipe.eval_store),
                      ImageSplit(test_read, np.arange(len(test_labels)), test_labels, recipe.eval, recipe.eval_store),
                      num_classes, (3, size, size), tuple(classes), decodes=True, augment=recipe.augment)


def _root(data_dir: Optional[str], name: str, layout: str, inner: str) -> Path:
    """The dataset folder: `data_dir` itself or its `inner` child, whichever has the layout."""
    if not data_dir:
        raise LcpTuneError(f"dataset {name!r} needs a data folder (--data-dir) laid out as {layout}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise LcpTuneError(f"data folder {root} does not exist or is not a folder; {name} expects {layout}")
    return root / inner if (root / inner).is_dir() else root


def _need(path: Path, layout: str, folder: bool = False) -> Path:
    if not (path.is_dir() if folder else path.is_file()):
        kind = "folder" if folder else "file"
        raise LcpTuneError(f"missing {kind} {path}: expected {layout}")
    return path


# --- CIFAR-10 / CIFAR-100: torchvision's python pickles -----------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and lists only: a data folder must not run code."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles from Python 3
            return super().find_class(module, name)
        if module.split(".")[0] == "numpy" and name in {"_reconstruct", "ndarray", "dtype", "_frombuffer", "scalar"}:
            if module.startswith("numpy.core") and hasattr(np, "_core"):
                module = "numpy._core" + module[len("numpy.core"):]
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, not only numpy arrays and lists")


def _unpickle(path: Path, layout: str) -> dict:
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # any unpickling failure is a malformed file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise LcpTuneError(f"{path} is not a CIFAR python pickle ({reason}); expected {layout}") from None
    if not isinstance(entry, dict):
        raise LcpTuneError(f"{path} holds a {type(entry).__name__}, not a dict; expected {layout}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int, layout: str) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path, layout)
    data, labels = entry.get("data"), entry.get(label_key)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels is None:
        raise LcpTuneError(f"{path} must hold 'data' (N x 3072 uint8 array) and '{label_key}' "
                           f"(N labels); expected {layout}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise LcpTuneError(f"{path}: '{label_key}' must be {len(data)} labels in [0, {num_classes}), "
                           f"got {labels.size} in [{labels.min(initial=0)}, {labels.max(initial=0)}]")
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _cifar(data_dir, folder, train_files, test_file, meta_file, label_key, names_key,
           num_classes, stats, seed, val_fraction, image_size, val_max) -> DataSplits:
    name = "cifar10" if num_classes == 10 else "cifar100"
    layout = (f"{folder}/ with {', '.join(train_files + [test_file, meta_file])} "
              "(torchvision's python format, as extracted from the official tar.gz)")
    root = _root(data_dir, name, layout, folder)
    paths = [_need(root / f, f"{root} to hold {layout}") for f in train_files + [test_file, meta_file]]
    meta = _unpickle(paths[-1], layout)
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(names_key, [])]
    if len(classes) != num_classes:
        raise LcpTuneError(f"{paths[-1]} must hold '{names_key}', a list of {num_classes} class names; "
                           f"got {len(classes)}")
    batches = [_cifar_batch(p, label_key, num_classes, layout) for p in paths[:-1]]
    train_x = np.concatenate([b[0] for b in batches[:-1]])
    train_y = np.concatenate([b[1] for b in batches[:-1]])
    size = image_size or 32
    return _image_splits(_ArrayReader(train_x), train_y, _ArrayReader(batches[-1][0]), batches[-1][1],
                         _cifar_transforms(*stats, size), seed, val_fraction, num_classes, size, classes, val_max)


@DATASETS.register("cifar10")
def load_cifar10(seed: int = 0, val_fraction: float = 0.15, data_dir: Optional[str] = None,
                 image_size: Optional[int] = None, val_max: int = 0) -> DataSplits:
    """CIFAR-10 from `data_dir`/cifar-10-batches-py (32x32, 10 classes, 50,000 + 10,000 images).

    Training: random crop 32 with 4 pixels of padding + horizontal flip; all splits normalised
    with the CIFAR-10 mean and std. The test split is `test_batch`.
    """
    return _cifar(data_dir, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                  "batches.meta", "labels", "label_names", 10, (CIFAR10_MEAN, CIFAR10_STD),
                  seed, val_fraction, image_size, val_max)


@DATASETS.register("cifar100")
def load_cifar100(seed: int = 0, val_fraction: float = 0.15, data_dir: Optional[str] = None,
                  image_size: Optional[int] = None, val_max: int = 0) -> DataSplits:
    """CIFAR-100 from `data_dir`/cifar-100-python (fine labels, 100 classes), as CIFAR-10."""
    return _cifar(data_dir, "cifar-100-python", ["train"], "test", "meta", "fine_labels",
                  "fine_label_names", 100, (CIFAR100_MEAN, CIFAR100_STD), seed, val_fraction, image_size,
                  val_max)


# --- ImageNet: ImageFolder train/ and val/ ------------------------------------------------

IMAGENET_LAYOUT = ("train/<class>/<image> and val/<class>/<image>, one folder per class with the "
                   "same class names in both (sort the official flat val/ into class folders first)")


def _scan_class_folders(folder: Path, classes: Optional[list[str]] = None):
    """(classes, relative paths, labels) of an ImageFolder tree; empty class folders are errors."""
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise LcpTuneError(f"{folder} has no class folders: expected {IMAGENET_LAYOUT}")
    classes = classes or found
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for c in found:
        if c not in index:
            raise LcpTuneError(f"class folder {folder / c} is not a class of the training set; "
                               f"expected {IMAGENET_LAYOUT}")
        files = sorted(os.path.relpath(os.path.join(d, f), folder)
                       for d, _, names in os.walk(folder / c, followlinks=True)
                       for f in names if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise LcpTuneError(f"class folder {folder / c} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                               "add images or delete the folder")
        paths += files
        labels += [index[c]] * len(files)
    return classes, paths, np.array(labels, dtype=np.int64)


@DATASETS.register("imagenet")
def load_imagenet(seed: int = 0, val_fraction: float = 0.15, data_dir: Optional[str] = None,
                  image_size: Optional[int] = None, val_max: int = 0) -> DataSplits:
    """ImageNet (or any ImageFolder tree) from `data_dir`/train and `data_dir`/val.

    Classes are the sorted folder names of train/. Training: RandomResizedCrop 224 + flip; eval
    (validation carved from train/, and test = val/): Resize 256 + CenterCrop 224; ImageNet
    mean and std. On the full set `val_max` (10,000 by default) caps the validation split at
    10 images per class; 15% of it would be 190,000 images a pass.
    """
    root = _root(data_dir, "imagenet", IMAGENET_LAYOUT, ".")
    train_dir = _need(root / "train", f"{root} to hold {IMAGENET_LAYOUT}", folder=True)
    test_dir = _need(root / "val", f"{root} to hold {IMAGENET_LAYOUT}", folder=True)
    classes, train_paths, train_y = _scan_class_folders(train_dir)
    _, test_paths, test_y = _scan_class_folders(test_dir, classes)
    size = image_size or 224
    return _image_splits(_FileReader(train_dir, train_paths), train_y, _FileReader(test_dir, test_paths),
                         test_y, _imagenet_transforms(size), seed, val_fraction, len(classes), size, classes,
                         val_max)


# --- CUB-200-2011 --------------------------------------------------------------------------

CUB_LAYOUT = ("CUB_200_2011/ with images/, images.txt ('<id> <path under images/>'), "
              "image_class_labels.txt ('<id> <class, 1-based>') and train_test_split.txt ('<id> <1=train, 0=test>')")


def _read_id_table(path: Path) -> dict[int, str]:
    """'<image id> <value>' per line, as the CUB index files are; anything else is named."""
    table: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) in table:
            raise LcpTuneError(f"{path}, line {lineno}: expected '<image id> <value>' with a new "
                               f"integer id, got {line.strip()[:80]!r}")
        table[int(parts[0])] = parts[1].strip()
    return table


def _int_column(path: Path, table: dict[int, str], ids: list[int], allowed: Callable[[int], bool],
                rule: str) -> np.ndarray:
    if set(table) != set(ids):
        missing = sorted(set(ids) ^ set(table))[0]
        raise LcpTuneError(f"{path} and images.txt list different image ids (first difference: {missing}); "
                           f"expected {CUB_LAYOUT}")
    for i in ids:
        if not (table[i].lstrip("-").isdigit() and allowed(int(table[i]))):
            raise LcpTuneError(f"{path}: image {i} has value {table[i]!r}, expected {rule}")
    return np.array([int(table[i]) for i in ids], dtype=np.int64)


@DATASETS.register("cub200")
def load_cub200(seed: int = 0, val_fraction: float = 0.15, data_dir: Optional[str] = None,
                image_size: Optional[int] = None, val_max: int = 0) -> DataSplits:
    """CUB-200-2011 (Bird-200) from the CUB_200_2011 folder (`data_dir` or its child).

    The official train/test split of train_test_split.txt; the 1-based class ids of
    image_class_labels.txt become labels 0..K-1, K the largest id (200). Bounding boxes are not
    used. Transforms as ImageNet: RandomResizedCrop 224 + flip; Resize 256 + CenterCrop 224.
    """
    root = _root(data_dir, "cub200", CUB_LAYOUT, "CUB_200_2011")
    where = f"{root} to be {CUB_LAYOUT}"
    images_dir = _need(root / "images", where, folder=True)
    files = {n: _read_id_table(_need(root / n, where))
             for n in ("images.txt", "image_class_labels.txt", "train_test_split.txt")}
    ids = sorted(files["images.txt"])
    if not ids:
        raise LcpTuneError(f"{root / 'images.txt'} lists no images; expected {CUB_LAYOUT}")
    labels = _int_column(root / "image_class_labels.txt", files["image_class_labels.txt"], ids,
                         lambda v: v >= 1, "a class id >= 1") - 1
    is_train = _int_column(root / "train_test_split.txt", files["train_test_split.txt"], ids,
                           lambda v: v in (0, 1), "1 (train) or 0 (test)").astype(bool)
    paths = [files["images.txt"][i] for i in ids]
    for p in paths:
        if not (images_dir / p).is_file():
            raise LcpTuneError(f"image {images_dir / p} listed in {root / 'images.txt'} does not exist")
    if not is_train.any():
        raise LcpTuneError(f"{root / 'train_test_split.txt'} marks no image as training (1); expected {CUB_LAYOUT}")
    num_classes = int(labels.max()) + 1
    names = root / "classes.txt"
    classes = list(_read_id_table(names).values()) if names.is_file() else []
    size = image_size or 224
    train_paths, test_paths = [p for p, t in zip(paths, is_train) if t], [p for p, t in zip(paths, is_train) if not t]
    return _image_splits(_FileReader(images_dir, train_paths), labels[is_train],
                         _FileReader(images_dir, test_paths), labels[~is_train], _imagenet_transforms(size),
                         seed, val_fraction, num_classes, size, classes if len(classes) == num_classes else (),
                         val_max)
