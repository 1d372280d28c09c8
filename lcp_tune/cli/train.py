"""`lcp-tune train`: train a base model with a recipe, report its test accuracy, save its state_dict."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from lcp_tune.errors import LcpTuneError

from .options import Command, config_options, fail, given, path_option

TRAIN_KEYS = ("arch", "data", "data_dir", "image_size", "recipe", "base_train.epochs", "seed", "checkpoint",
              "checkpoint_classes", "device")


@click.command("train", cls=Command)
@config_options(TRAIN_KEYS)
@click.option("--pretrained", is_flag=True, help="Start from torchvision's pretrained weights (downloads them).")
@path_option("--out", help="Where to write the state_dict (default: the cache).")
def train(pretrained: bool, out: Optional[Path], **flags) -> None:
    """Train a base model with a recipe, report its test accuracy and save its state_dict."""
    from lcp_tune.run.base_model import train_base_command
    from lcp_tune.run.settings import resolve_config

    try:
        config = resolve_config({**given(TRAIN_KEYS, flags), "pretrained": pretrained or None})
        train_base_command(config, out, log=click.echo)
    except LcpTuneError as exc:
        fail(exc)
