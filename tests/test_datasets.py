"""Datasets in their real on-disk formats, written tiny into tmp folders, read through load_data.

Every image is one solid colour that encodes its class, so a label can be checked against the
pixels it comes with; the colour survives crops, flips and resizes.
"""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lcp_tune.data import DataSplits, list_datasets, load_data
from lcp_tune.data.images import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, IMAGENET_MEAN,
                                 IMAGENET_STD, ImageSplit)
from lcp_tune.errors import LcpTuneError

SIZE = 16  # image_size override for the folder datasets: tiny tensors, fast tests


def red(c: int) -> int:
    """The red channel of class c's colour (37 is odd, so 100 classes get 100 reds)."""
    return 37 * c % 256


def colour(c: int) -> tuple[int, int, int]:
    return red(c), 200 - red(c) % 200, 90


def class_of(red_value: float, num_classes: int) -> int:
    return int(np.argmin([abs(red(c) - red_value) for c in range(num_classes)]))


# --- writers of the real formats -------------------------------------------------------------

def cifar_batch(labels: list[int], label_key: bytes, rng) -> dict:
    images = np.stack([np.broadcast_to(np.array(colour(c), np.uint8)[:, None, None], (3, 32, 32))
                       for c in labels]).reshape(len(labels), -1)
    noise = rng.integers(0, 2, images.shape, dtype=np.uint8)  # not all-equal ...
    noise[:, :32 * 32] = 0                                     # ... but red, the class code, exact
    return {b"data": images + noise, label_key: labels, b"batch_label": b"tiny"}


def write_pickle(path: Path, obj, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_cifar10(root: Path, per_class_per_batch: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        labels = [c for c in range(10) for _ in range(per_class_per_batch)]
        write_pickle(folder / f"data_batch_{i}", cifar_batch(labels, b"labels", rng))
    write_pickle(folder / "test_batch", cifar_batch(list(range(10)) * 2, b"labels", rng))
    write_pickle(folder / "batches.meta", {b"label_names": [f"class{c}".encode() for c in range(10)]})
    return root


def write_cifar100(root: Path) -> Path:
    """str keys and protocol 2 here (bytes keys, the default protocol for CIFAR-10): all occur in the wild."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, per_class in (("train", 3), ("test", 1)):
        entry = cifar_batch([c for c in range(100) for _ in range(per_class)], b"fine_labels", rng)
        entry[b"coarse_labels"] = [c // 5 for c in entry[b"fine_labels"]]
        write_pickle(folder / name, {k.decode(): v for k, v in entry.items()}, protocol=2)
    write_pickle(folder / "meta", {"fine_label_names": [f"c{c}" for c in range(100)], "coarse_label_names": []},
                 protocol=2)
    return root


def write_image(path: Path, c: int, size=(20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(c)).save(path)


def write_imagenet(root: Path, train_per_class: int = 6, val_per_class: int = 2) -> Path:
    for c, wnid in enumerate(["n01", "n02", "n03"]):
        for i in range(train_per_class):
            write_image(root / "train" / wnid / f"{wnid}_{i}.{'JPEG' if i % 2 else 'png'}", c)
        for i in range(val_per_class):
            write_image(root / "val" / wnid / f"val_{c}_{i}.JPEG", c)
    (root / "train" / "README.txt").write_text("stray files beside the class folders are ignored\n")
    (root / "train" / ".ipynb_checkpoints").mkdir()                      # so are hidden folders
    return root


def write_cub(root: Path, per_class: int = 6) -> Path:
    """Ids deliberately out of folder order; class ids 1-based as in the real files."""
    cub = root / "CUB_200_2011"
    names = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    rows = [(c, i) for i in range(per_class) for c in range(3)]
    images, labels, split = [], [], []
    for image_id, (c, i) in enumerate(rows, 1):
        rel = f"{names[c]}/{names[c]}_{i}.jpg"
        write_image(cub / "images" / rel, c)
        images.append(f"{image_id} {rel}")
        labels.append(f"{image_id} {c + 1}")
        split.append(f"{image_id} {int(i < per_class - 2)}")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels),
                        ("train_test_split.txt", split),
                        ("classes.txt", [f"{c + 1} {n}" for c, n in enumerate(names)])):
        (cub / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("datasets")
    return {"cifar10": write_cifar10(base / "c10"), "cifar100": write_cifar100(base / "c100"),
            "imagenet": write_imagenet(base / "inet"), "cub200": write_cub(base / "cub")}


# (train files, test files, classes, side) of each tiny dataset
EXPECTED = {"cifar10": (100, 20, 10, 32), "cifar100": (300, 100, 100, 32),
            "imagenet": (18, 6, 3, SIZE), "cub200": (12, 6, 3, SIZE)}
MEANS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
         "cub200": (IMAGENET_MEAN, IMAGENET_STD)}


def load(name: str, root: Path, **kw) -> DataSplits:
    if name in ("imagenet", "cub200"):
        kw.setdefault("image_size", SIZE)
    return load_data(name, data_dir=str(root), **kw)


def test_all_real_datasets_are_registered():
    assert {"digits", "cifar10", "cifar100", "imagenet", "cub200"} <= set(list_datasets())


# --- good input --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EXPECTED))
def test_splits_sizes_disjoint_stratified_shapes(name, roots):
    n_train, n_test, k, side = EXPECTED[name]
    s = load(name, roots[name], seed=0, val_fraction=0.25)
    assert (s.num_classes, s.input_shape) == (k, (3, side, side))
    assert len(s.train) + len(s.val) == n_train and len(s.test) == n_test
    assert not set(s.train.rows) & set(s.val.rows)               # both index the training files
    assert set(np.unique(s.val.targets)) == set(range(k))        # every class in val ...
    assert set(np.unique(s.train.targets)) == set(range(k))      # ... and left in train
    x, y = next(iter(s.loader("train", 4, shuffle=True, seed=0)))
    assert x.shape == (4, 3, side, side) and x.dtype == torch.float32 and y.dtype == torch.int64
    x, y = next(iter(s.loader("test", 5)))
    assert x.shape == (5, 3, side, side)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_labels_match_pixels_in_every_split(name, roots):
    """Labels follow their images (CUB's 1-based ids become 0-based); eval output is exact."""
    s = load(name, roots[name])
    k = EXPECTED[name][2]
    mean, std = MEANS[name]
    for split in ("train", "val", "test"):
        for x, y in s.loader(split, 64):
            centre = x[:, 0, x.shape[2] // 2, x.shape[3] // 2] * std[0] + mean[0]
            found = [class_of(float(v) * 255, k) for v in centre]
            assert found == y.tolist(), split
    if name == "cub200":
        assert s.classes[0] == "001.Black_footed_Albatross" and s.num_classes == 3


@pytest.mark.parametrize("name", list(EXPECTED))
def test_val_split_uses_eval_transform(name, roots):
    s = load(name, roots[name])
    assert s.val.transform is s.test.transform and s.train.transform is not s.val.transform
    torch.manual_seed(0)
    assert torch.equal(s.val[0][0], s.val[0][0])                # no randomness in eval
    if name.startswith("cifar"):                                # eval = normalise only
        raw = np.asarray(s.val.read(int(s.val.rows[0])), np.float32) / 255
        mean, std = (np.array(v, np.float32) for v in MEANS[name])
        expected = torch.from_numpy(((raw - mean) / std).transpose(2, 0, 1))
        assert torch.allclose(s.val[0][0], expected, atol=1e-5)
        # the same file through the train transform: padded crops put zeros (-mean/std) at edges
        augmented = ImageSplit(s.val.read, s.val.rows[:1], s.val.targets[:1], s.train.transform)
        outs = [augmented[0][0] for _ in range(12)]
        assert any(not torch.allclose(o, expected, atol=1e-5) for o in outs)
    else:
        names = [type(t).__name__ for t in s.val.transform.transforms]
        assert names[:2] == ["Resize", "CenterCrop"]
        assert type(s.train.transform.transforms[0]).__name__ == "RandomResizedCrop"


def test_split_is_deterministic_and_seeded(roots):
    a, b = (load("cifar10", roots["cifar10"], seed=3) for _ in range(2))
    c = load("cifar10", roots["cifar10"], seed=4)
    assert np.array_equal(a.val.rows, b.val.rows) and np.array_equal(a.train.rows, b.train.rows)
    assert not np.array_equal(a.val.rows, c.val.rows)
    assert np.array_equal(a.test.rows, c.test.rows)            # the test split never moves
    batches = [next(iter(s.loader("train", 8, shuffle=True, seed=1)))[1] for s in (a, b)]
    assert torch.equal(*batches)


def test_subset_keeps_a_stratified_fraction_of_train_only(roots):
    full = load("cifar100", roots["cifar100"], seed=0, val_fraction=0.34)
    part = load("cifar100", roots["cifar100"], seed=0, val_fraction=0.34, subset=0.5)
    assert np.array_equal(full.val.rows, part.val.rows)          # same validation images
    assert set(part.train.rows) < set(full.train.rows)
    assert len(part.train) == 100 and set(part.train.targets) == set(range(100))  # 1 of 2 per class
    assert repr(part.train.transform) == repr(full.train.transform)  # still augmented
    other = load("cifar100", roots["cifar100"], seed=1, val_fraction=0.34, subset=0.5)
    assert not np.array_equal(part.train.rows, other.train.rows)


def test_digits_subset_and_workers(roots):
    digits = load_data("digits", seed=0)
    half = load_data("digits", seed=0, subset=0.5, workers=1)
    assert abs(len(half.train) - len(digits.train) / 2) <= 10 and half.workers == 1
    assert torch.equal(half.val.tensors[0], digits.val.tensors[0])
    s = load("imagenet", roots["imagenet"], workers=1)
    loader = s.loader("train", 4, shuffle=True, seed=0)
    assert loader.num_workers == 1 and loader.pin_memory == torch.cuda.is_available()
    ys = [y for _, y in loader]
    assert sum(len(y) for y in ys) == len(s.train) // 4 * 4


def test_data_dir_may_be_the_inner_folder(roots):
    s = load("cifar10", roots["cifar10"] / "cifar-10-batches-py")
    assert len(s.test) == 20
    s = load("cub200", roots["cub200"] / "CUB_200_2011")
    assert len(s.test) == 6


# --- bad input: one line naming the path ------------------------------------------------------

def one_line_error(fn, *must_name: object) -> str:
    with pytest.raises(LcpTuneError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    for part in must_name:
        assert str(part) in message, message
    return message


@pytest.mark.parametrize("name", list(EXPECTED))
def test_missing_or_unset_folder(name, tmp_path):
    missing = tmp_path / "nowhere"
    one_line_error(lambda: load(name, missing), missing, "expects")
    one_line_error(lambda: load_data(name), "--data-dir")


def test_bad_arguments():
    one_line_error(lambda: load_data("digits", val_fraction=0), "val_fraction")
    one_line_error(lambda: load_data("digits", subset=1.5), "subset")
    one_line_error(lambda: load_data("digits", image_size=32), "image_size")
    one_line_error(lambda: load_data("svhn"), "svhn", "cifar10")


def fresh(name: str, tmp_path: Path) -> Path:
    """A new copy to break (writing one is quicker than copytree on a busy disk)."""
    writers = {"cifar10": write_cifar10, "cifar100": write_cifar100, "imagenet": write_imagenet,
               "cub200": write_cub}
    return writers[name](tmp_path / name)


def test_cifar_missing_and_malformed_files(tmp_path):
    root = fresh("cifar10", tmp_path)
    folder = root / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    one_line_error(lambda: load("cifar10", root), folder / "data_batch_3", "data_batch_1")
    (folder / "data_batch_3").write_text("not a pickle")
    one_line_error(lambda: load("cifar10", root), folder / "data_batch_3", "pickle")
    write_pickle(folder / "data_batch_3", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4})
    one_line_error(lambda: load("cifar10", root), folder / "data_batch_3", "3072")
    write_pickle(folder / "data_batch_3", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    one_line_error(lambda: load("cifar10", root), folder / "data_batch_3", "[0, 10)")
    write_pickle(folder / "data_batch_3", [1, 2, 3])
    one_line_error(lambda: load("cifar10", root), folder / "data_batch_3", "dict")
    write_pickle(folder / "batches.meta", {b"label_names": [b"a", b"b"]})
    one_line_error(lambda: load("cifar10", root), folder / "batches.meta", "10 class names")


class Boom:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-lcp-tune-target",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    root = fresh("cifar100", tmp_path)
    write_pickle(root / "cifar-100-python" / "test", {"data": Boom(), "fine_labels": []})
    one_line_error(lambda: load("cifar100", root), root / "cifar-100-python" / "test", "shutil.rmtree")


def test_imagenet_bad_layouts(tmp_path):
    root = fresh("imagenet", tmp_path)
    shutil.rmtree(root / "val")
    one_line_error(lambda: load("imagenet", root), root / "val", "train/<class>")
    (root / "val").mkdir()
    write_image(root / "val" / "ILSVRC2012_val_00000001.JPEG", 0)          # the official flat val/
    one_line_error(lambda: load("imagenet", root), root / "val", "no class folders")
    write_image(root / "val" / "n99" / "x.png", 0)
    one_line_error(lambda: load("imagenet", root), root / "val" / "n99", "not a class")
    shutil.rmtree(root / "val" / "n99")
    write_image(root / "val" / "n01" / "x.png", 0)
    (root / "train" / "n02" / "empty").mkdir()                               # nested, no images
    for f in (root / "train" / "n02").glob("*.*"):
        f.unlink()
    one_line_error(lambda: load("imagenet", root), root / "train" / "n02", "no images")


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_stops_the_run_naming_the_file(tmp_path, workers):
    root = fresh("imagenet", tmp_path)
    bad = root / "val" / "n02" / "val_1_0.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    s = load("imagenet", root, workers=workers)                     # structure is fine: loads
    assert len(s.test) == 6
    one_line_error(lambda: [b for b in s.loader("test", 2)], bad, "cannot be decoded")


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def test_cub_bad_layouts(tmp_path):
    root = fresh("cub200", tmp_path)
    cub = root / "CUB_200_2011"
    labels_txt, split_txt = cub / "image_class_labels.txt", cub / "train_test_split.txt"
    good_labels, good_split = labels_txt.read_text().splitlines(), split_txt.read_text().splitlines()
    labels_txt.unlink()
    one_line_error(lambda: load("cub200", root), labels_txt, "images.txt")
    write_lines(labels_txt, good_labels[:3] + ["four 1"] + good_labels[4:])
    one_line_error(lambda: load("cub200", root), labels_txt, "line 4", "four 1")
    write_lines(labels_txt, good_labels[:-1])
    one_line_error(lambda: load("cub200", root), labels_txt, "different image ids", "18")
    write_lines(labels_txt, ["1 0"] + good_labels[1:])                       # ids are 1-based
    one_line_error(lambda: load("cub200", root), labels_txt, "image 1", "class id >= 1")
    write_lines(labels_txt, good_labels)
    write_lines(split_txt, good_split[:-1] + ["18 2"])
    one_line_error(lambda: load("cub200", root), split_txt, "image 18", "1 (train) or 0 (test)")
    write_lines(split_txt, good_split)
    missing = next((cub / "images").rglob("*_0.jpg"))
    missing.unlink()
    one_line_error(lambda: load("cub200", root), missing, "does not exist")
    missing.write_bytes(b"garbage")
    s = load("cub200", root)
    one_line_error(lambda: [s.train[i] for i in range(len(s.train))] + [s.val[i] for i in range(len(s.val))],
                   missing, "cannot be decoded")
    shutil.rmtree(cub / "images")
    one_line_error(lambda: load("cub200", root), cub / "images", "CUB_200_2011/")


def test_loader_workers_default_from_the_cpus_their_owner_has_and_count_against_them(tmp_path, monkeypatch):
    """Auto (no --workers): none for in-memory tensors; for decoded images all CPUs but one (at
    most 8), which the owner's compute threads give up; a given count always wins."""
    import dataclasses

    from lcp_tune.candidate import CandidateEvaluator
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.data import load_data
    from lcp_tune.models import build_model

    digits = load_data("digits")
    assert digits.workers is None and not digits.decodes
    assert digits.loader_workers(8) == 0 and digits.compute_threads(8) == 8
    images = load("cifar10", write_cifar10(tmp_path / "c"))
    assert images.decodes and images.loader_workers(8) == 0      # 80 images: over before a worker starts
    from lcp_tune.data import splits
    monkeypatch.setattr(splits, "MIN_ITEMS_FOR_WORKERS", 1)       # as for the real 50,000
    assert [images.loader_workers(c) for c in (1, 2, 4, 32)] == [0, 1, 3, 8]
    assert [images.compute_threads(c) for c in (1, 2, 4, 32)] == [1, 1, 1, 24]
    given = dataclasses.replace(images, workers=2)
    assert given.loader_workers(32) == 2 and given.compute_threads(32) == 30
    assert images.loader("train", 4, shuffle=True, workers=None).num_workers == images.loader_workers()

    config = ExperimentConfig().replace(**{"data": "cifar10", "data_dir": str(tmp_path / "c"), "arch": "resnet20_tiny",
                                           "search.cpus_per_trial": 4})
    evaluator = CandidateEvaluator(config, build_model("resnet20_tiny", 10, 3).state_dict(), data=images)
    assert evaluator.train_loader.num_workers == 3 and evaluator.threads == 1   # a 4-CPU trial: 3 decode, 1 computes


def test_digits_read_from_the_shipped_file_are_scikit_learns_and_need_no_import(monkeypatch):
    """The default's data without importing scikit-learn (2 s in every process): the same
    images and labels as `load_digits`, and `load_digits` itself where the file is missing."""
    import importlib.util
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from lcp_tune.data import digits as module

    images, labels = module.digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    probe = ("import sys; from lcp_tune.data.digits import digits_arrays; digits_arrays(); "
             "print('sklearn' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)   # the file not found
    images, labels = module.digits_arrays()
    assert images.shape == (1797, 8, 8) and np.array_equal(labels, reference.target)
