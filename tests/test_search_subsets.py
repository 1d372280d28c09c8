"""The search's decoded subsets: decoded once, the same validation as the loaders, augmentation
on tensors that matches torchvision's, no image file read by a trial, and the validation cap."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lcp_tune.candidate import CandidateEvaluator, build_pruner
from lcp_tune.config import ExperimentConfig
from lcp_tune.data import load_data, load_experiment_data, stratified_split
from lcp_tune.data import images as image_data
from lcp_tune.data.search_subsets import decode_search_subsets, recovery_size, search_subsets
from lcp_tune.data.tensor_augment import TensorAugment
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from test_datasets import SIZE, write_cifar10, write_image, write_imagenet


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("subsets")
    return {"imagenet": write_imagenet(base / "inet", train_per_class=12, val_per_class=2),
            "cifar10": write_cifar10(base / "c10")}


def config_for(name: str, root, **search) -> ExperimentConfig:
    config = ExperimentConfig(arch="resnet20_tiny", data=name, data_dir=str(root), seed=3,
                              image_size=SIZE if name == "imagenet" else None)
    return config.replace(**{f"search.{k}": v for k, v in {"batch_size": 4, "bn_batches": 2, "tau_hat": 3,
                                                          **search}.items()})


@pytest.mark.parametrize("name", ["imagenet", "cifar10"])
def test_validation_from_the_decoded_split_is_the_loaders_to_float_rounding(name, folders):
    data = load_data(name, data_dir=str(folders[name]), image_size=SIZE if name == "imagenet" else None)
    subsets = decode_search_subsets(data, 10, seed=0, workers=0)
    assert subsets.val_images.dtype == np.uint8 and len(subsets.val_images) == len(data.val)
    decoded = torch.cat([x for x, _ in subsets.val_batches(5, torch.device("cpu"))])
    loaded = torch.cat([x for x, _ in data.loader("val", 5)])
    labels = torch.cat([y for _, y in subsets.val_batches(5, torch.device("cpu"))])
    assert decoded.shape == loaded.shape
    assert torch.allclose(decoded, loaded, atol=1e-6)
    assert labels.tolist() == [int(t) for t in data.val.targets]


def test_recovery_subset_is_the_seeded_first_rows_and_its_size_is_what_a_trial_draws(folders):
    data = load_data("imagenet", data_dir=str(folders["imagenet"]), image_size=SIZE)
    count = recovery_size(batch_size=4, bn_batches=2, tau_hat=3)
    assert count == 20
    first, again = (decode_search_subsets(data, count, seed=1, workers=0) for _ in range(2))
    other = decode_search_subsets(data, count, seed=2, workers=0)
    assert first.train_images.shape == (20, 3, round(SIZE * 256 / 224), round(SIZE * 256 / 224))
    assert np.array_equal(first.train_images, again.train_images)
    assert not np.array_equal(first.train_labels, other.train_labels) or not np.array_equal(
        first.train_images, other.train_images)
    everything = decode_search_subsets(data, 10_000, seed=1, workers=0)   # capped at the split
    assert len(everything.train_images) == len(data.train)


def test_pad_crop_is_torchvisions_random_crop_and_flip_pixel_for_pixel():
    images = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    augment = TensorAugment("pad_crop", 12, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), padding=2)
    out = augment(images, torch.Generator().manual_seed(0))
    padded = F.pad(images.float() / 255, (2, 2, 2, 2))
    shifts, flips = set(), 0
    for k in range(len(images)):
        match = [(i, j, flip) for i in range(5) for j in range(5) for flip in (False, True)
                 if torch.equal((padded[k, :, i:i + 12, j:j + 12].flip(-1) if flip else
                                 padded[k, :, i:i + 12, j:j + 12]), out[k])]
        assert match, f"image {k} is no crop of its padded original"
        shifts.add(match[0][:2])
        flips += match[0][2]
    assert len(shifts) > 3 and 0 < flips < len(images)   # random, not one fixed crop


def test_resized_crop_draws_boxes_as_torchvision_does_and_samples_them_exactly():
    augment = TensorAugment("resized_crop", 8, (0.0,), (1.0,))
    theta = augment._boxes(4000, 40, 30, torch.Generator().manual_seed(0))
    w, h = theta[:, 0, 0] * 30, theta[:, 1, 1] * 40
    area = w * h / (40 * 30)
    assert 0.07 <= float(area.min()) and float(area.max()) <= 1.0
    ratio = w / h                                 # within the ratios up to the rounding of w and h
    assert float(ratio.min()) >= 0.65 and float(ratio.max()) <= 1.45
    assert float(((ratio >= 0.74) & (ratio <= 1.35)).float().mean()) > 0.9
    left = (theta[:, 0, 2] + 1) * 30 / 2 - w / 2
    top = (theta[:, 1, 2] + 1) * 40 / 2 - h / 2
    assert float(left.min()) >= -1e-4 and float((left + w).max()) <= 30 + 1e-4   # inside the image
    assert float(top.min()) >= -1e-4 and float((top + h).max()) <= 40 + 1e-4
    from torchvision.transforms import RandomResizedCrop
    torch.manual_seed(0)
    reference = [RandomResizedCrop.get_params(torch.zeros(1, 40, 30), [0.08, 1.0], [3 / 4, 4 / 3])
                 for _ in range(4000)]
    expected = np.mean([bh * bw / (40 * 30) for _, _, bh, bw in reference])
    assert abs(float(area.mean()) - expected) < 0.02   # torchvision's distribution of box areas

    # a box as large as the output copies a window of pixels exactly (no blending)
    exact = TensorAugment("resized_crop", 8, (0.0,), (1.0,), scale=(0.25, 0.25), ratio=(1.0, 1.0), flip=False)
    images = torch.randint(0, 256, (6, 1, 16, 16), dtype=torch.uint8)
    out = exact(images, torch.Generator().manual_seed(1))
    source = images.float() / 255
    for k in range(len(images)):
        assert any(torch.allclose(source[k, :, i:i + 8, j:j + 8], out[k], atol=1e-5)
                   for i in range(9) for j in range(9))


def test_augmentation_is_replayed_by_reseeding_its_generator():
    images = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8)
    augment = TensorAugment("resized_crop", 16, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    first = augment(images, torch.Generator().manual_seed(7))
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(8)))
    assert first.shape == (5, 3, 16, 16) and math.isfinite(float(first.sum()))


def test_a_candidate_on_the_decoded_subsets_reads_no_image_file_and_says_where_its_time_went(folders, monkeypatch):
    config = config_for("imagenet", folders["imagenet"], tau_hat=12, lr=0.05)
    data = load_experiment_data(config)
    subsets = search_subsets(config, data, cpus=1)
    assert subsets is not None
    model = build_model(config.arch, data.num_classes, data.input_shape[0])
    pruner = build_pruner(config, model, data)

    def no_file(*_):
        raise AssertionError("a trial read an image file")

    monkeypatch.setattr(image_data._FileReader, "__call__", no_file)
    evaluator = CandidateEvaluator(config, data=data, pruner=pruner, subsets=subsets)
    vector = pruner.identity()
    result = evaluator.evaluate(vector)
    again = evaluator.evaluate(vector)
    assert result["val_loss"] == again["val_loss"]          # common random numbers, as the loaders
    assert {"time_prune", "time_bn", "time_steps", "time_val", "time_data"} <= set(result)
    assert result["time_data"] > 0
    assert result["time_data"] <= result["time_bn"] + result["time_steps"] + result["time_val"]
    # the colour classes are learnable: the recovery steps bring the loss down
    unrecovered = CandidateEvaluator(config.replace(**{"search.tau_hat": 0}), data=data, pruner=pruner,
                                     subsets=subsets).evaluate(vector)
    assert result["val_loss"] < unrecovered["val_loss"]


def test_only_image_files_get_subsets_and_the_setting_turns_them_off(folders):
    digits = ExperimentConfig()
    assert search_subsets(digits, load_experiment_data(digits)) is None
    config = config_for("cifar10", folders["cifar10"])
    data = load_experiment_data(config)
    assert search_subsets(config.replace(**{"search.shared_data": False}), data) is None
    subsets = search_subsets(config, data, cpus=1)
    assert subsets.train_images.shape == (recovery_size(4, 2, 3), 3, 32, 32)
    raced = search_subsets(config.replace(**{"search.race": (3.0, 6.0)}), data, cpus=1)
    assert raced.train_images.shape == (recovery_size(4, 2, 18), 3, 32, 32)   # the race's top rung reads the most


def test_a_corrupt_image_stops_decoding_in_one_line_naming_it(tmp_path):
    root = write_imagenet(tmp_path / "inet")
    bad = root / "train" / "n02" / "n02_1.JPEG"
    bad.write_bytes(b"not a jpeg")
    data = load_data("imagenet", data_dir=str(root), image_size=SIZE)
    with pytest.raises(LcpTuneError, match="n02_1.JPEG cannot be decoded") as caught:
        decode_search_subsets(data, 100, seed=0, workers=0)
    assert "\n" not in str(caught.value)


def test_validation_is_capped_at_val_max_images_the_same_number_per_class(tmp_path):
    labels = np.repeat(np.arange(100), 300)
    rest, held = stratified_split(labels, 0.15, seed=0, max_total=1000)
    assert len(held) == 1000 and np.all(np.bincount(labels[held]) == 10)
    _, uncapped = stratified_split(labels, 0.15, seed=0)
    assert set(held) <= set(uncapped)            # never an image the uncapped split trained on
    assert len(rest) + len(held) == len(labels)
    root = tmp_path / "inet"
    for c in range(3):
        for i in range(10):
            write_image(root / "train" / f"n{c}" / f"{i}.png", c)
        write_image(root / "val" / f"n{c}" / "v.png", c)
    capped = load_data("imagenet", data_dir=str(root), image_size=SIZE, val_max=3)
    assert len(capped.val) == 3 and len(capped.train) == 27
    assert len(load_data("imagenet", data_dir=str(root), image_size=SIZE).val) == 6   # 15% binds first
    assert len(load_data("imagenet", data_dir=str(root), image_size=SIZE, val_max=0).val) == 6
