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
    budget: float = 0.15         # fraction of the base FLOPs kept (default: where methods differ, BENCHMARKS.md)
    resource: str = "flops"      # or "params"
    metric: str = "l2"           # sum of squared filter weights, the papers' default
    form: str = "additive"       # LCP's beta per group; "affine" is LeGR's alpha, kappa
    safeguard: float = 0.1       # LeGR's floor: every group keeps >= 10% (and >= 1 channel)
    round_to: int = 1            # keep counts rounded up to a multiple (8 for GPUs)


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe: SGD with momentum and Nesterov, a schedule, optional extras."""

    epochs: int = 30
    lr: float = 0.1
    batch_size: int = 64
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    schedule: str = "cosine"         # or "multistep" (lr x gamma at each milestone epoch)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup: bool = True              # linear warm-up over the first epoch (at most 50 steps)
    label_smoothing: float = 0.0
    amp: bool = True                 # bfloat16 autocast, on GPU only


# The papers' recipes. Base = training from scratch; finetune = after pruning.
RECIPES: dict[str, dict[str, TrainConfig]] = {
    # digits: 30 epochs reach 98-99% test in seconds; 15-epoch fine-tune as in the prototypes
    "digits": {"base": TrainConfig(epochs=30, lr=0.1),
               "finetune": TrainConfig(epochs=15, lr=0.02)},
    # CIFAR: He et al. 2016 (164 epochs, lr 0.1 / 10 at 82 and 123, wd 1e-4, batch 128);
    # fine-tune as in LeGR's CIFAR experiments: cosine from 0.01
    "cifar": {"base": TrainConfig(epochs=164, lr=0.1, batch_size=128, weight_decay=1e-4,
                                  schedule="multistep", milestones=(82, 123)),
              "finetune": TrainConfig(epochs=60, lr=0.01, batch_size=128, weight_decay=1e-4)},
    # ImageNet: torchvision's reference ResNet recipe (90 epochs, lr 0.1 / 10 every 30, wd 1e-4)
    "imagenet": {"base": TrainConfig(epochs=90, lr=0.1, batch_size=256, weight_decay=1e-4,
                                     schedule="multistep", milestones=(30, 60)),
                 "finetune": TrainConfig(epochs=30, lr=0.01, batch_size=256, weight_decay=1e-4,
                                         label_smoothing=0.1)},
    # CUB-200: fine-grained, starts from ImageNet weights; short cosine runs
    "cub": {"base": TrainConfig(epochs=60, lr=0.01, batch_size=64, weight_decay=5e-4),
            "finetune": TrainConfig(epochs=40, lr=0.005, batch_size=64, weight_decay=5e-4)},
}
DEFAULT_RECIPE = {"digits": "digits", "cifar10": "cifar", "cifar100": "cifar", "imagenet": "imagenet",
                  "cub200": "cub"}


def recipe_changes(name: str) -> dict[str, Any]:
    """Config changes that apply a named recipe to both base training and fine-tune."""
    if name not in RECIPES:
        raise LcpTuneError(f"unknown training recipe {name!r}: must be one of {', '.join(sorted(RECIPES))}")
    return {"recipe": name, "base_train": dataclasses.asdict(RECIPES[name]["base"]),
            "finetune": dataclasses.asdict(RECIPES[name]["finetune"])}


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
    arch: str = "resnet20_narrow"   # 8/16/32: the 16/32/64 original is too wide for digits (BENCHMARKS.md)
    data: str = "digits"
    data_dir: Optional[str] = None
    val_fraction: float = 0.15   # of the training data, carved out for the search to score on
    subset: float = 1.0          # fraction of the training data used (LeGR searches ImageNet on part)
    image_size: Optional[int] = None   # override a dataset's input side (None: its standard size)
    workers: int = 0             # data-loading processes (0: load in the training process)
    seed: int = 0
    checkpoint: Optional[str] = None
    pretrained: bool = False     # start base training from torchvision's pretrained weights
    checkpoint_classes: Optional[int] = None   # --num-classes: the checkpoint's head size, if not the data's
    prune: PruneConfig = field(default_factory=PruneConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    method: str = "lcp"          # lcp (learned), random (best random), global or uniform (no search)
    baselines: bool = True       # lcp also fine-tunes global and uniform, to show what the search bought
    recipe: str = "digits"       # the training recipe base_train and finetune came from
    base_train: TrainConfig = field(default_factory=lambda: RECIPES["digits"]["base"])
    finetune: TrainConfig = field(default_factory=lambda: RECIPES["digits"]["finetune"])

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
            target = d[section] if section else d
            target[name] = dict(value) if isinstance(value, dict) else value
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
        if sub and isinstance(value, dict):
            value = _build(sub, value, f"{where}.{name}")
        elif name == "milestones":
            value = tuple(int(v) for v in value)
        kwargs[name] = value
    return cls(**kwargs)


def save_config(config: ExperimentConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(_plain(config.to_dict()), sort_keys=False))


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
