"""config.yaml: the resolved settings of an experiment, written atomically and read back checked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lcp_tune.config import ExperimentConfig
from lcp_tune.errors import LcpTuneError

from .files import atomic_write


def save_config(config: ExperimentConfig, path: Path) -> None:
    atomic_write(path, yaml.safe_dump(_plain(config.to_dict()), sort_keys=False))


def _plain(value: Any) -> Any:
    """Tuples become lists: YAML's safe dumper knows only plain types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_config(path: Path) -> ExperimentConfig:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LcpTuneError(f"config {path} cannot be read as YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LcpTuneError(f"config {path} must hold a mapping of settings")
    return ExperimentConfig.from_dict(data)
