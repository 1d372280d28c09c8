"""MNIST and Fashion-MNIST from the official IDX files (gzipped or not), parsed with numpy.

The four files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte, each optionally .gz) are found in `data_dir` itself, in torchvision's
layout `data_dir/<Name>/raw/`, or in `data_dir/raw/` when `data_dir` is the `<Name>` folder.
Each file's header is checked (magic number, sizes, byte count) and the labels' range; a
failure is one `LcpTuneError` line naming the file. Nothing is unpickled and nothing is
downloaded. Without `data_dir`, fashion-mnist reads Debian's `dataset-fashion-mnist` package.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from lcp_tune.errors import LcpTuneError

from .registry import DATASETS
from .splits import DataSplits, stratified_split

# where Debian's dataset-fashion-mnist package installs the four .gz files
FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3 dims / 1 dim
SIDE = 28
CROP_PADDING = 2


# --- reading and checking one IDX file -----------------------------------------------------

def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """The uint8 array of one IDX file (big-endian header: magic, then one uint32 per dim)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except EOFError:
        raise LcpTuneError(f"{path} is truncated: its gzip stream ends early") from None
    except (OSError, zlib.error) as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:80]
        raise LcpTuneError(f"{path} cannot be read ({reason}); expected an IDX file, gzipped if .gz") from None
    header = 4 + 4 * ndim
    if len(data) < header:
        raise LcpTuneError(f"{path} is truncated: {len(data)} bytes, shorter than the {header}-byte IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise LcpTuneError(f"{path} has magic number 0x{found:08x}, expected 0x{magic:08x} "
                           f"(IDX {'images' if ndim == 3 else 'labels'}: unsigned bytes, {ndim} dims)")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    need, have = math.prod(dims), len(data) - header
    if have != need:
        raise LcpTuneError(f"{path} is {'truncated' if have < need else 'too long'}: its header promises "
                           f"{'x'.join(map(str, dims))} = {need} data bytes, it holds {have}")
    return np.frombuffer(data, np.uint8, need, offset=header).reshape(dims)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(images_path, IMAGES_MAGIC, 3)
    labels = _read_idx(labels_path, LABELS_MAGIC, 1).astype(np.int64)
    if images.shape[1:] != (SIDE, SIDE):
        raise LcpTuneError(f"{images_path} holds {images.shape[1]}x{images.shape[2]} images, "
                           f"expected {SIDE}x{SIDE}")
    if len(images) != len(labels):
        raise LcpTuneError(f"{labels_path} holds {len(labels)} labels but {images_path.name} holds "
                           f"{len(images)} images; expected one label per image")
    if len(labels) == 0:
        raise LcpTuneError(f"{labels_path} holds no labels; expected the official IDX files")
    if labels.min() < 0 or labels.max() > 9:
        raise LcpTuneError(f"{labels_path} has labels in {labels.min()}-{labels.max()}, expected 0-9")
    return images, labels


# --- finding the files ---------------------------------------------------------------------

def _find(folder: Path, stem: str) -> Optional[Path]:
    """`stem` or `stem.gz` in `folder`, the uncompressed one first (no gunzip on every start)."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_paths(data_dir: Optional[str], name: str, folder_name: str, default_dir: Optional[str]) -> list[Path]:
    """The four files, from the first candidate folder that holds all of them."""
    if not data_dir:
        if default_dir is None:
            raise LcpTuneError(f"dataset {name!r} needs a data folder (--data-dir) holding the 4 official "
                               f"IDX files ({IDX_FILES[0]}, ...), flat or in {folder_name}/raw/")
        if not Path(default_dir).is_dir():
            raise LcpTuneError(f"{name}: no --data-dir and no {default_dir}; pass --data-dir or run "
                               "`sudo apt-get install dataset-fashion-mnist`")
        data_dir = default_dir
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise LcpTuneError(f"data folder {root} does not exist or is not a folder; {name} expects "
                           f"the 4 official IDX files in it or in {folder_name}/raw/")
    candidates = [root, root / folder_name / "raw", root / "raw"]
    found = [[_find(c, stem) for stem in IDX_FILES] for c in candidates]
    for paths in found:
        if all(paths):
            return paths  # type: ignore[return-value]
    best = max(range(len(candidates)), key=lambda i: sum(p is not None for p in found[i]))  # first on ties
    missing = next(stem for stem, p in zip(IDX_FILES, found[best]) if p is None)
    raise LcpTuneError(f"missing {candidates[best] / missing}[.gz]; {name} reads "
                       f"{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz], flat or in {folder_name}/raw/")


# --- the splits ----------------------------------------------------------------------------

class IdxSplit(Dataset):
    """One split held in memory as uint8 (N, 28, 28) images, converted a batch at a time.

    uint8 keeps the 60,000 training images at 47 MB (188 MB as float, more once resized), and
    the DataLoader fetches a whole batch through `__getitems__`, so the crop and normalisation
    are a few tensor operations per batch rather than Python work per image. `padding` > 0
    takes a random 28x28 crop of the image zero-padded (black, the background of both datasets)
    by that many pixels, as torchvision's RandomCrop(28, padding) does; `size` != 28 resizes
    after the crop (bilinear, antialiased).
    """

    def __init__(self, images: torch.Tensor, targets: np.ndarray, mean: float, std: float,
                 padding: int = 0, size: int = SIDE):
        self.images, self.targets = images, targets
        self.mean, self.std, self.padding, self.size = mean, std, padding, size

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list:
        """A whole batch at once (DataLoader calls this): crops and conversion in a few tensor ops."""
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index]
        if self.padding:
            p = self.padding
            padded = F.pad(images, (p, p, p, p))
            top, left = torch.randint(0, 2 * p + 1, (2, len(index), 1))
            span = torch.arange(SIDE)
            images = padded[torch.arange(len(index))[:, None, None], (top + span)[:, :, None],
                            (left + span)[:, None, :]]
        x = images.float().div_(255).sub_(self.mean).div_(self.std).unsqueeze(1)
        if self.size != SIDE:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                              align_corners=False)
        return list(zip(x, self.targets[index.numpy()].tolist()))

    def select(self, keep: np.ndarray) -> "IdxSplit":
        return IdxSplit(self.images[torch.as_tensor(keep)], self.targets[keep], self.mean, self.std,
                        self.padding, self.size)


def _eval_split(images: np.ndarray, labels: np.ndarray, mean: float, std: float, size: int) -> Dataset:
    """Evaluation splits at the native size: one normalised float TensorDataset (fastest)."""
    if size != SIDE:
        return IdxSplit(torch.from_numpy(images), labels, mean, std, 0, size)
    x = torch.from_numpy(images).float().div_(255).sub_(mean).div_(std).unsqueeze(1)
    return TensorDataset(x, torch.from_numpy(labels))


def _idx_splits(data_dir: Optional[str], name: str, folder_name: str, default_dir: Optional[str],
                mean: float, std: float, classes: tuple[str, ...], seed: int, val_fraction: float,
                image_size: Optional[int], val_max: int = 0) -> DataSplits:
    paths = _idx_paths(data_dir, name, folder_name, default_dir)
    train_x, train_y = _read_pair(paths[0], paths[1])
    test_x, test_y = _read_pair(paths[2], paths[3])
    size = image_size or SIDE
    rest, val = stratified_split(train_y, val_fraction, seed, val_max)
    # fancy indexing and copy() give writable arrays (np.frombuffer's are read-only views)
    train = IdxSplit(torch.from_numpy(train_x[rest]), train_y[rest], mean, std, CROP_PADDING, size)
    return DataSplits(train, _eval_split(train_x[val], train_y[val], mean, std, size),
                      _eval_split(test_x.copy(), test_y, mean, std, size), 10, (1, size, size), classes)


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(seed: int = 0, val_fraction: float = 0.15, data_dir: Optional[str] = None,
                       image_size: Optional[int] = None, val_max: int = 0) -> DataSplits:
    """Fashion-MNIST (Zalando; 28x28 grey, 10 classes, 60,000 + 10,000 images) from IDX files.

    `data_dir` holds the four official files, flat or in torchvision's FashionMNIST/raw/; without
    it, Debian's package folder /usr/share/datasets/fashion-mnist. Validation: `val_fraction` of
    every class of the 60,000 training images, chosen by `seed`; test: all 10,000 t10k images.
    Training takes a random crop with 2 pixels of padding: it is nearly free, keeps the CIFAR
    recipe's spirit at this scale, and curbs the overfitting a ResNet shows on 51,000 images in
    15 epochs (no flip: shoes and digits are not mirror-symmetric in the data). Evaluation splits
    are plain normalised tensors (mean 0.2860, std 0.3530).
    """
    return _idx_splits(data_dir, "fashion-mnist", "FashionMNIST", FASHION_MNIST_DEFAULT_DIR,
                       FASHION_MNIST_MEAN, FASHION_MNIST_STD, FASHION_MNIST_CLASSES, seed, val_fraction,
                       image_size, val_max)


@DATASETS.register("mnist")
def load_mnist(seed: int = 0, val_fraction: float = 0.15, data_dir: Optional[str] = None,
               image_size: Optional[int] = None, val_max: int = 0) -> DataSplits:
    """MNIST (LeCun et al.; 28x28 handwritten digits) from `data_dir`, as fashion-mnist.

    `data_dir` is required (flat or torchvision's MNIST/raw/); normalised with mean 0.1307, std 0.3081.
    """
    return _idx_splits(data_dir, "mnist", "MNIST", None, MNIST_MEAN, MNIST_STD,
                       tuple(str(c) for c in range(10)), seed, val_fraction, image_size, val_max)
