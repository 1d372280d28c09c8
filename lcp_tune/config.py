"""Frozen experiment settings with why-comments on the defaults, and their YAML round trip.

The CLI and the search-space presets build one ExperimentConfig; the resolved config is saved
in the experiment folder so a run can be resumed, compared and reproduced.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .registry import LcpTuneError


@dataclass(frozen=True)
class PruneConfig:
    budget: float = 0.5          # fraction of the base FLOPs kept
    resource: str = "flops"      # or "params"
    metric: str = "l2"           # sum of squared filter weights, the papers' default
    form: str = "additive"       # LCP's beta per group; "affine" is LeGR's alpha, kappa
    safeguard: float = 0.1       # LeGR's floor: every group keeps >= 10% (and >= 1 channel)
    round_to: int = 1            # keep counts rounded up to a multiple (8 for GPUs)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    lr: float = 0.1
    batch_size: int = 64
    weight_decay: float = 5e-4


@dataclass(frozen=True)
class SearchConfig:
    space: str = "lcp"           # the preset the search-space fields came from (search_spaces/)
    searcher: str = "tpe"
    scheduler: str = "fifo"      # "asha" stops poor candidates after their first reports
    num_samples: int = 32        # trials, the two warm starts (identity, uniform) included
    tau_hat: int = 100           # SGD steps per candidate: 100 at lr 0.02 made the objective agree
    lr: float = 0.02             # with the post-fine-tune ranking 91% of the time (30: 54-80%)
    report_every: int = 25       # steps between reports, so a scheduler can stop a trial early
    batch_size: int = 64
    bn_batches: int = 8          # BN recalibration batches before the steps (EagleEye)
    bound: float = 2.0           # search range of each dimensionless shift: [-bound, bound]
    scale_bound: float = 1.0     # affine form: log(alpha) in [-scale_bound, scale_bound]
    cpus_per_trial: int = 1      # 2 one-thread trials beat 1 two-thread trial on small nets
    gpus_per_trial: float = 0.0  # fractional: several small trials can share one GPU
    max_concurrent: int = 0      # 0: as many as the resources allow
    max_failures: int = 2        # retries of a trial whose worker died, then it is recorded failed


@dataclass(frozen=True)
class ExperimentConfig:
    arch: str = "resnet20"
    data: str = "digits"
    data_dir: Optional[str] = None
    val_fraction: float = 0.15   # of the training data, carved out for the search to score on
    subset: float = 1.0          # fraction of the training data used (LeGR searches ImageNet on part)
    image_size: Optional[int] = None   # override a dataset's input side (None: its standard size)
    workers: int = 0             # data-loading processes (0: load in the training process)
    seed: int = 0
    checkpoint: Optional[str] = None
    prune: PruneConfig = field(default_factory=PruneConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    base_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, lr=0.1))
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=15, lr=0.02))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        return _build(cls, d, "config")

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """Copy with top-level or dotted nested fields changed: replace(**{"prune.budget": 0.3})."""
        d = self.to_dict()
        for key, value in changes.items():
            section, _, name = key.rpartition(".")
            (d[section] if section else d)[name] = value
        return ExperimentConfig.from_dict(d)


def _build(cls, d: dict[str, Any], where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise LcpTuneError(f"{where} has unknown field {unknown[0]!r}: allowed are {', '.join(known)}")
    kwargs = {}
    for name, value in d.items():
        sub = {"prune": PruneConfig, "search": SearchConfig, "base_train": TrainConfig,
               "finetune": TrainConfig}.get(name) if cls is ExperimentConfig else None
        kwargs[name] = _build(sub, value, f"{where}.{name}") if sub and isinstance(value, dict) else value
    return cls(**kwargs)


def save_config(config: ExperimentConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_config(path: Path) -> ExperimentConfig:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LcpTuneError(f"config {path} cannot be read as YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LcpTuneError(f"config {path} must hold a mapping of settings")
    return ExperimentConfig.from_dict(data)
