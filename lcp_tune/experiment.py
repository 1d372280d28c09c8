"""The experiment folder: one place for everything a user needs to resume, analyse or reuse a run.

    EXPERIMENT/
      config.yaml        resolved settings       base.pt            base weights (state_dict)
      search/            Ray Tune results        compensation.json  the learned compensation
      pruned/            plan.json + model.pt    report.json        final numbers
      trials.parquet     one row per trial
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ExperimentConfig, load_config, save_config
from .registry import LcpTuneError

# Fields that define what a run *is*; a folder with other values belongs to another run.
IDENTITY_FIELDS = ("arch", "data", "seed", "prune.budget", "prune.resource", "prune.metric", "prune.form")


@dataclass(frozen=True)
class Experiment:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def base_path(self) -> Path:
        return self.root / "base.pt"

    @property
    def search_dir(self) -> Path:
        return self.root / "search"

    @property
    def compensation_path(self) -> Path:
        return self.root / "compensation.json"

    @property
    def pruned_dir(self) -> Path:
        return self.root / "pruned"

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    @property
    def trials_path(self) -> Path:
        return self.root / "trials.parquet"

    def is_experiment(self) -> bool:
        return self.config_path.is_file()

    def config(self) -> ExperimentConfig:
        if not self.is_experiment():
            raise LcpTuneError(f"{self.root} is not an lcp-tune experiment folder (no config.yaml)")
        return load_config(self.config_path)


def new_experiment_path(base: Path = Path("lcp-runs"), prefix: str = "search") -> Path:
    """A fresh folder name under ./lcp-runs/, timestamped so runs sort by age."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{prefix}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{prefix}-{stamp}-{n}"
    return path


def _get(config: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


def check_same_run(root: Path, old: ExperimentConfig, asked: dict[str, Any]) -> None:
    """Refuse a folder whose run differs from `asked` ({"prune.budget": 0.3, ...}) in any field."""
    recorded = old.to_dict()
    for name, value in asked.items():
        if value is not None and _get(recorded, name) != value:
            raise LcpTuneError(f"experiment folder {root} belongs to another run ({name} = "
                               f"{_get(recorded, name)!r}, asked {value!r}); choose another folder")


def open_experiment(root: Path, config: ExperimentConfig) -> Experiment:
    """Create the folder for `config`, or reopen it if it holds the same run.

    A folder holding another run (other arch, data, seed or budget) is refused rather than
    mixed; a non-empty folder that is not an experiment is refused too.
    """
    exp = Experiment(Path(root))
    if exp.is_experiment():
        new = config.to_dict()
        check_same_run(root, exp.config(), {name: _get(new, name) for name in IDENTITY_FIELDS})
    elif exp.root.exists() and any(exp.root.iterdir()):
        raise LcpTuneError(f"output folder {root} exists and is not an lcp-tune experiment; choose another --out")
    exp.root.mkdir(parents=True, exist_ok=True)
    save_config(config, exp.config_path)
    return exp


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically; NaN / inf become null so any JSON reader accepts the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LcpTuneError(f"{path} is not a readable JSON file ({exc})") from None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return _clean(value.item())
    return value
