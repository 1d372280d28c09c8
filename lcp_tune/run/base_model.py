"""Base models: train one, or reuse the cached one trained with the same settings."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from lcp_tune.config import ExperimentConfig, TrainConfig, default_of
from lcp_tune.data import DataSplits, load_experiment_data
from lcp_tune.data.user import is_user_data
from lcp_tune.devices import device_name, on_device, resolve_device
from lcp_tune.progress import TrainingProgress
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.models.pretrained import adapt_head, pretrained_model
from lcp_tune.store.checkpoints import load_into, load_state_dict, save_state_dict
from lcp_tune.training import fit

from .finetune import test_accuracy
from .validate import validate_config


def cache_dir() -> Path:
    """Where trained base models are kept: $LCP_TUNE_CACHE or ~/.cache/lcp-tune."""
    return Path(os.environ.get("LCP_TUNE_CACHE", Path.home() / ".cache" / "lcp-tune"))


def base_cache_path(arch: str, data: str, seed: int, train: TrainConfig, **data_settings) -> Path:
    """One cached file per (architecture, data and its split settings, seed, recipe)."""
    key = json.dumps({"arch": arch, "data": data, "seed": seed, "train": train.__dict__,
                      **{k: v for k, v in data_settings.items() if v is not None}}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "base" / f"{arch}-{data}-seed{seed}-{digest}.pt"


def train_base(arch: str, data: DataSplits, train: TrainConfig, seed: int,
               log: Optional[Callable[[str], None]] = None, model: Optional[nn.Module] = None,
               device: str = "auto", checkpoint: Optional[Path] = None) -> nn.Module:
    """Train a base model on the training split (fixed epochs, last weights) on `device`, from
    scratch unless a starting `model` is given; returned on the CPU. With `checkpoint`, every
    epoch is saved there and an interrupted training resumes from its last finished epoch (90
    ImageNet epochs are days: a kill must not lose them)."""
    torch.manual_seed(seed)
    model = model if model is not None else build_model(arch, data.num_classes, data.input_shape[0])
    where = resolve_device(device)
    loader = data.loader("train", train.batch_size, shuffle=True, seed=seed)
    if log:
        log(f"  training on {device_name(where)}")
    meter = TrainingProgress(f"base {arch}", train.epochs, len(loader), train.batch_size, log) if log else None
    with on_device(model, where):
        fit(model, loader, train, meter=meter, checkpoint=checkpoint)
    return model


def partial_path(path: Path) -> Path:
    """Where the training of the base model cached at `path` keeps its per-epoch state."""
    return path.with_name(path.stem + ".partial.pt")


def initial_model(config: ExperimentConfig, data: DataSplits) -> nn.Module:
    """Where base training starts: random weights, torchvision's pretrained ones, or a checkpoint
    with `checkpoint_classes` outputs whose head is replaced for the data's classes."""
    if config.pretrained:
        return pretrained_model(config.arch, data.num_classes, data.input_shape)
    classes = config.checkpoint_classes or data.num_classes
    model = build_model(config.arch, classes, data.input_shape[0])
    if config.checkpoint:
        load_into(model, load_state_dict(config.checkpoint), config.checkpoint, config.arch)
    return adapt_head(model, data.num_classes, data.input_shape)


def obtain_base(config: ExperimentConfig, data: DataSplits,
                log: Optional[Callable[[str], None]] = None) -> tuple[nn.Module, Optional[Path]]:
    """The base model of an experiment: the user's checkpoint, the cached one, or a new one."""
    model = build_model(config.arch, data.num_classes, data.input_shape[0])
    if config.checkpoint and not config.checkpoint_classes:
        load_into(model, load_state_dict(config.checkpoint), config.checkpoint, config.arch)
        return model, Path(config.checkpoint)
    if config.checkpoint or config.pretrained:
        raise LcpTuneError("a search needs a base model trained for the data's classes: first run "
                           "`lcp-tune train` with --pretrained or --num-classes, then pass its output as --checkpoint")
    settings = {"data_dir": config.data_dir, "image_size": config.image_size}
    if (config.val_fraction, config.subset) != (0.15, 1.0):
        settings.update(val_fraction=config.val_fraction, subset=config.subset)
    if config.val_max != default_of("val_max"):   # the default's cap leaves every dataset but ImageNet-size ones alone
        settings.update(val_max=config.val_max)
    if is_user_data(config.data):   # a name does not identify a user's data: never cache its model
        if log:
            log(f"training base model {config.arch} on {config.data} ({config.base_train.epochs} epochs)")
        return train_base(config.arch, data, config.base_train, config.seed, log, device=config.device), None
    path = base_cache_path(config.arch, config.data, config.seed, config.base_train, **settings)
    if path.is_file():
        if log:
            log(f"reusing cached base model {path}")
        return load_into(model, load_state_dict(path), str(path), config.arch), path
    if log:
        log(f"training base model {config.arch} on {config.data} ({config.base_train.epochs} epochs)")
    model = train_base(config.arch, data, config.base_train, config.seed, log, device=config.device,
                       checkpoint=partial_path(path))
    save_state_dict(model, path)
    partial_path(path).unlink(missing_ok=True)
    return model, path


def train_base_command(config: ExperimentConfig, out: Optional[Path],
                       log: Callable[[str], None] = print) -> Path:
    """`lcp-tune train`: train (or reuse) a base model, save it to `out`, print its test accuracy."""
    validate_config(config)
    resolve_device(config.device)   # a missing GPU is named before any work
    data = load_experiment_data(config)
    if config.pretrained or config.checkpoint:
        start = initial_model(config, data)
        log(f"training {config.arch} on {config.data} from {'torchvision weights' if config.pretrained else config.checkpoint}")
        model = train_base(config.arch, data, config.base_train, config.seed, log, model=start,
                           device=config.device)
        path = Path(out) if out else base_cache_path(config.arch, config.data, config.seed, config.base_train,
                                                     start=str(config.checkpoint or "pretrained"))
        save_state_dict(model, path)
        log(f"test accuracy {test_accuracy(model, data, device=config.device).accuracy:.4f}; saved {path}")
        return path
    if is_user_data(config.data) and not out:
        raise LcpTuneError(f"--out is needed with --data {config.data}: base models of user data are not cached")
    model, cached = obtain_base(config, data, log)
    path = Path(out) if out else cached
    if out:
        save_state_dict(model, path)
    log(f"test accuracy {test_accuracy(model, data, device=config.device).accuracy:.4f}; saved {path}")
    return path
