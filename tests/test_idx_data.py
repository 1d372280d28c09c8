"""MNIST and Fashion-MNIST in the official IDX format, written tiny into tmp folders.

Every image is one grey level that encodes its class (25 * label) with its row number in the
top-left pixel, so labels can be checked against pixels and splits compared by row.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lcp_tune.cli import main
from lcp_tune.config import DEFAULT_RECIPE, RECIPES
from lcp_tune.data import idx, list_datasets, load_data
from lcp_tune.data.splits import labels_of
from lcp_tune.errors import LcpTuneError

N_TRAIN, N_TEST = 40, 20
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_file(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def images_for(labels: np.ndarray, side: int = 28) -> np.ndarray:
    images = np.repeat((25 * labels).astype(np.uint8)[:, None, None], side * side, 1).reshape(-1, side, side)
    images[:, 0, 0] = np.arange(len(labels))  # the row number
    return images


def write_idx(folder: Path, gz: bool, n_train: int = N_TRAIN, n_test: int = N_TEST) -> Path:
    """The four official files, labels cycling 0-9; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        write_file(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images_for(labels), 0x803))
        write_file(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels, 0x801))
    return folder


def pixel_values(x: torch.Tensor, mean: float, std: float) -> np.ndarray:
    return np.rint((x.numpy() * std + mean) * 255).astype(int)


def rows_and_classes(split, mean=idx.FASHION_MNIST_MEAN, std=idx.FASHION_MNIST_STD):
    """(row numbers, classes read from the pixels, labels) of an evaluation split, in order."""
    xs, ys = zip(*(split[i] for i in range(len(split))))
    x = torch.stack(xs)
    values = pixel_values(x[:, 0], mean, std)
    return values[:, 0, 0], values[:, 14, 14] // 25, np.array([int(y) for y in ys])


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> Path:
    return write_idx(tmp_path_factory.mktemp("idx") / "flat", gz=True)


# --- good input --------------------------------------------------------------------------------

def test_both_names_are_registered_and_have_a_recipe():
    assert {"fashion-mnist", "mnist"} <= set(list_datasets())
    assert DEFAULT_RECIPE["fashion-mnist"] == DEFAULT_RECIPE["mnist"] == "mnist"
    assert RECIPES["mnist"]["base"].epochs > RECIPES["mnist"]["finetune"].epochs


def test_cli_list_shows_the_new_datasets():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    datasets = next(line for line in result.output.splitlines() if line.startswith("datasets:"))
    assert "fashion-mnist" in datasets and "mnist" in datasets.replace("fashion-mnist", "")


@pytest.mark.parametrize("layout", ["flat", "torchvision", "name-folder", "raw-folder"])
@pytest.mark.parametrize("gz", [True, False])
def test_splits_from_every_layout(tmp_path, layout, gz):
    raw = write_idx(tmp_path / "d" / "FashionMNIST" / "raw" if layout != "flat" else tmp_path / "d", gz)
    data_dir = {"flat": tmp_path / "d", "torchvision": tmp_path / "d",
                "name-folder": raw.parent, "raw-folder": raw}[layout]
    s = load_data("fashion-mnist", seed=0, val_fraction=0.25, data_dir=str(data_dir))
    assert (s.num_classes, s.input_shape, len(s.classes)) == (10, (1, 28, 28), 10)
    assert s.classes[0] == "T-shirt/top"
    assert (len(s.train), len(s.val), len(s.test)) == (30, 10, N_TEST)
    assert set(labels_of(s.train)) == set(labels_of(s.val)) == set(labels_of(s.test)) == set(range(10))
    x, y = next(iter(s.loader("train", 8, shuffle=True, seed=0)))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    for split in (s.val, s.test):
        rows, classes, labels = rows_and_classes(split)
        assert np.array_equal(classes, labels)                    # labels follow their images
    rows, _, labels = rows_and_classes(s.test)
    assert np.array_equal(rows, np.arange(N_TEST)) and np.array_equal(labels, np.arange(N_TEST) % 10)


def test_validation_split_is_stratified_and_seeded(flat):
    a, b = (load_data("fashion-mnist", seed=3, val_fraction=0.25, data_dir=str(flat)) for _ in range(2))
    c = load_data("fashion-mnist", seed=4, val_fraction=0.25, data_dir=str(flat))
    val_a, val_b, val_c = (rows_and_classes(s.val)[0] for s in (a, b, c))
    assert sorted(labels_of(a.val)) == list(range(10))          # one of the 4 images of each class
    assert np.array_equal(val_a, val_b) and not np.array_equal(val_a, val_c)
    assert np.array_equal(rows_and_classes(a.test)[0], rows_and_classes(c.test)[0])
    train_rows = a.train.images[:, 0, 0].numpy()               # uncropped rows, before augmentation
    assert not set(train_rows.tolist()) & set(val_a.tolist())  # train and val are disjoint ...
    assert len(set(train_rows.tolist()) | set(val_a.tolist())) == N_TRAIN  # ... and cover train
    batches = [next(iter(s.loader("train", 8, shuffle=True, seed=1))) for s in (a, b)]
    assert torch.equal(batches[0][1], batches[1][1])


def test_training_crops_keep_the_label_and_stay_shifts(flat):
    s = load_data("fashion-mnist", data_dir=str(flat))
    torch.manual_seed(0)
    for x, y in s.loader("train", 16, shuffle=True, seed=0):
        values = pixel_values(x[:, 0], idx.FASHION_MNIST_MEAN, idx.FASHION_MNIST_STD)
        assert np.array_equal(values[:, 14, 14] // 25, y.numpy())  # a 2-pixel shift keeps the centre
        assert set(np.unique(values)) <= set(range(256))
    i = int(np.flatnonzero(labels_of(s.train) == 5)[0])       # grey 125: black padding shows
    crops = {pixel_values(s.train[i][0][0], idx.FASHION_MNIST_MEAN, idx.FASHION_MNIST_STD).tobytes()
             for _ in range(20)}
    assert len(crops) > 1                                         # augmentation happens


def test_mnist_torchvision_layout_subset_and_image_size(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw", gz=False)
    s = load_data("mnist", data_dir=str(tmp_path), val_fraction=0.25)
    rows, classes, labels = rows_and_classes(s.test, idx.MNIST_MEAN, idx.MNIST_STD)
    assert np.array_equal(classes, labels) and s.classes[3] == "3"
    half = load_data("mnist", data_dir=str(tmp_path), val_fraction=0.25, subset=0.5)
    assert len(half.train) == 20 and set(labels_of(half.train)) == set(range(10))
    assert np.array_equal(rows_and_classes(half.val)[0], rows_and_classes(s.val)[0])
    big = load_data("mnist", data_dir=str(tmp_path), image_size=32)
    assert big.input_shape == (1, 32, 32)
    for split in ("train", "val", "test"):
        assert next(iter(big.loader(split, 4)))[0].shape == (4, 1, 32, 32)


def test_default_folder_is_used_without_data_dir(flat, monkeypatch):
    monkeypatch.setattr(idx, "FASHION_MNIST_DEFAULT_DIR", str(flat))
    assert len(load_data("fashion-mnist").test) == N_TEST


# --- bad input: one line under 200 characters naming the file ---------------------------------

def one_line_error(fn, *must_name: object) -> str:
    with pytest.raises(LcpTuneError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and len(message) < 200, message
    for part in must_name:
        assert str(part) in message, message
    return message


def test_missing_folder_or_default(tmp_path, monkeypatch):
    one_line_error(lambda: load_data("fashion-mnist", data_dir=str(tmp_path / "nowhere")),
                   tmp_path / "nowhere", "expects")
    one_line_error(lambda: load_data("mnist"), "--data-dir", "train-images-idx3-ubyte")
    monkeypatch.setattr(idx, "FASHION_MNIST_DEFAULT_DIR", str(tmp_path / "no-debian-package"))
    one_line_error(lambda: load_data("fashion-mnist"), "apt-get install dataset-fashion-mnist",
                   "--data-dir", tmp_path / "no-debian-package")


def test_missing_file_names_it(tmp_path):
    folder = write_idx(tmp_path / "d", gz=True)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    one_line_error(lambda: load_data("fashion-mnist", data_dir=str(folder)),
                   folder / "train-labels-idx1-ubyte", "t10k", "FashionMNIST/raw")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(lambda: load_data("mnist", data_dir=str(empty)), empty / "train-images-idx3-ubyte")


def broken(tmp_path: Path, name: str, gz: bool, data: bytes) -> tuple[Path, Path]:
    """A fresh folder whose file `name` holds `data`; (folder, that file)."""
    folder = write_idx(tmp_path / f"d{gz:d}", gz)
    path = folder / (name + (".gz" if gz else ""))
    write_file(path, data)
    return folder, path


labels10 = np.arange(N_TRAIN) % 10
GOOD_IMAGES = idx_bytes(images_for(labels10), 0x803)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name, data, fragments", [
    ("train-images-idx3-ubyte", GOOD_IMAGES[:-100], ["truncated", "31360", "31260"]),
    ("t10k-labels-idx1-ubyte", b"\x00\x00", ["truncated", "header"]),
    ("train-images-idx3-ubyte", idx_bytes(images_for(labels10), 0x801), ["0x00000801", "0x00000803"]),
    ("train-labels-idx1-ubyte", idx_bytes(labels10, 0x803), ["0x00000803", "0x00000801"]),
    ("train-labels-idx1-ubyte", idx_bytes(labels10[:-1], 0x801), ["39 labels", "40 images"]),
    ("t10k-images-idx3-ubyte", idx_bytes(images_for(np.arange(N_TEST) % 10, 27), 0x803), ["27x27", "28x28"]),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.arange(N_TEST) % 11, 0x801), ["0-10", "0-9"]),
])
def test_bad_file_names_it(tmp_path, gz, name, data, fragments):
    folder, path = broken(tmp_path, name, gz, data)
    one_line_error(lambda: load_data("fashion-mnist", data_dir=str(folder)), path, *fragments)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    folder = write_idx(tmp_path / "d", gz=True)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    one_line_error(lambda: load_data("fashion-mnist", data_dir=str(folder)), path, "truncated")


@pytest.mark.ray
@pytest.mark.slow
def test_search_on_fashion_mnist_files_reports_every_test_image(tmp_path, local_ray):
    """`lcp-tune search --data fashion-mnist` end to end on tiny files in torchvision's layout:
    the mnist recipe, a search, the fine-tunes and a report on all the official test images."""
    import json

    root = tmp_path / "data"
    write_idx(root / "FashionMNIST" / "raw", gz=True, n_train=200, n_test=50)
    exp = tmp_path / "exp"
    result = CliRunner().invoke(main, ["search", "--data", "fashion-mnist", "--data-dir", str(root), "--arch",
                                       "resnet20_tiny", "--num-samples", "2", "--tau-hat", "4", "--budget", "0.4",
                                       "--finetune-epochs", "1", "--quiet", "--out", str(exp)])
    assert result.exit_code == 0, result.output
    report = json.loads((exp / "report.json").read_text())
    assert report["data"] == "fashion-mnist" and report["recipe"] == "mnist" and report["test_images"] == 50
    assert "on 50 test images" in result.output
    assert all(abs(m["flops_ratio"] - 0.4) <= 0.005 for m in report["methods"].values())


def test_candidates_see_the_same_augmented_batches(tmp_path):
    """Common random numbers with augmentation: the same compensation scores the same, whether it
    is a process's first candidate (whose surgery check draws random inputs) or a later one."""
    from lcp_tune.candidate import CandidateEvaluator, build_pruner
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.models import build_model

    folder = write_idx(tmp_path / "fm", gz=False, n_train=200, n_test=20)
    config = ExperimentConfig().replace(**{"arch": "resnet20_tiny", "data": "fashion-mnist", "data_dir": str(folder),
                                           "search.tau_hat": 4, "search.report_every": 4, "search.bn_batches": 2,
                                           "search.batch_size": 16})
    data = load_data("fashion-mnist", data_dir=str(folder))
    torch.manual_seed(0)
    pruner = build_pruner(config, build_model("resnet20_tiny", 10, 1), data)
    evaluator = CandidateEvaluator(config, data=data, pruner=pruner)
    vector = pruner.uniform(config.prune.budget)
    first = evaluator.evaluate(vector)
    evaluator.evaluate(pruner.identity())
    again = evaluator.evaluate(vector)
    assert first["val_loss"] == again["val_loss"] and first["train_loss"] == again["train_loss"]


def test_fifo_validates_once_and_asha_at_every_rung_with_the_same_result(tmp_path):
    """FIFO reads only a trial's last result, so a trial validates once, after its last step; ASHA
    stops trials at rungs, so it validates every `report_every` steps. The extra validations must
    not touch the training, augmented crops included: both end on exactly the same loss."""
    from lcp_tune.candidate import CandidateEvaluator, build_pruner
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.models import build_model

    folder = write_idx(tmp_path / "fm", gz=False, n_train=200, n_test=20)
    data = load_data("fashion-mnist", data_dir=str(folder))
    reports: dict[str, list[dict]] = {}
    for scheduler in ("fifo", "asha"):
        config = ExperimentConfig().replace(**{
            "arch": "resnet20_tiny", "data": "fashion-mnist", "data_dir": str(folder), "search.tau_hat": 10,
            "search.report_every": 4, "search.bn_batches": 2, "search.batch_size": 16, "search.scheduler": scheduler})
        torch.manual_seed(0)
        pruner = build_pruner(config, build_model("resnet20_tiny", 10, 1), data)
        evaluator = CandidateEvaluator(config, data=data, pruner=pruner)
        reports[scheduler] = []
        evaluator.evaluate(pruner.uniform(config.prune.budget), report=reports[scheduler].append)
    assert [r["step"] for r in reports["fifo"]] == [10]
    assert [r["step"] for r in reports["asha"]] == [4, 8, 10]
    fifo, asha = reports["fifo"][-1], reports["asha"][-1]
    assert (fifo["val_loss"], fifo["val_acc"]) == (asha["val_loss"], asha["val_acc"])   # train_loss: its last chunk


def test_a_candidate_scores_alike_under_any_thread_count_of_its_caller(tmp_path):
    """The driver re-scores the warm starts after the search with its own thread count; the
    evaluator runs with the trial's (cpus_per_trial), so it gets the trial's number."""
    from lcp_tune.candidate import CandidateEvaluator, build_pruner
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.models import build_model

    folder = write_idx(tmp_path / "fm", gz=False, n_train=200, n_test=20)
    data = load_data("fashion-mnist", data_dir=str(folder))
    config = ExperimentConfig().replace(**{"arch": "resnet20_narrow", "data": "fashion-mnist", "data_dir": str(folder),
                                           "search.tau_hat": 6, "search.bn_batches": 2, "search.batch_size": 32})
    torch.manual_seed(0)
    pruner = build_pruner(config, build_model("resnet20_narrow", 10, 1), data)
    evaluator = CandidateEvaluator(config, data=data, pruner=pruner)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            results.append(evaluator.evaluate(pruner.uniform(config.prune.budget)))
            assert torch.get_num_threads() == threads   # the caller's count is given back
    finally:
        torch.set_num_threads(before)
    assert results[0]["val_loss"] == results[1]["val_loss"] == results[2]["val_loss"]
