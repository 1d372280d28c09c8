"""Frozen experiment settings: the single source of every default and of the CLI's help texts.

Why-comments explain the defaults; `help` metadata is what `lcp-tune ... --help` prints for a
field's flag (lcp_tune.cli.options reads both from here). The CLI, the search-space presets and
the Python API all build one ExperimentConfig; the resolved config is saved in the experiment
folder so a run can be resumed, compared and reproduced. Range rules live in lcp_tune.rules.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .errors import LcpTuneError


def setting(default: Any, help: str) -> Any:
    """A dataclass field with its command-line help text."""
    return field(default=default, metadata={"help": help})


def help_of(key: str) -> str:
    """The help text of a dotted config key ("prune.budget")."""
    cls: Any = ExperimentConfig
    *sections, name = key.split(".")
    for section in sections:
        cls = {f.name: f for f in dataclasses.fields(cls)}[section].default_factory().__class__
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("help", "")


def default_of(key: str) -> Any:
    """The default value of a dotted config key, read from a default ExperimentConfig."""
    value: Any = ExperimentConfig()
    for part in key.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class PruneConfig:
    budget: float = setting(0.15, "Fraction of the base cost (FLOPs) to keep, in (0, 1).")  # fraction of the base FLOPs kept (default: where methods differ, BENCHMARKS.md)
    resource: str = setting("flops", "What the budget counts: flops, params, or latency measured on --device.")
    metric: str = setting("l2", "Channel metric (see `lcp-tune list`).")  # sum of squared filter weights, the papers' default
    form: str = setting("additive", "Compensation form: additive (LCP) or affine (LeGR).")  # LCP's beta per group; "affine" is LeGR's alpha, kappa
    safeguard: float = setting(0.1, "Minimum kept fraction of every channel group, in [0, 1).")  # LeGR's floor: every group keeps >= 10% (and >= 1 channel)
    round_to: Union[int, str] = setting(1, "Round kept widths up to multiples of this (8 for GPUs), or auto: the "
                                           "multiple where the target device's latency steps.")
    # --resource latency: what the latency model is measured at (on --device); edge inference is
    # often one image on one core, so that is the default
    latency_batch: int = setting(1, "Batch size latency is measured at (--resource latency).")
    latency_threads: int = setting(1, "CPU threads latency is measured with (--resource latency).")


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
    # knowledge distillation from the unpruned base (Hinton et al. 2015), fine-tunes only:
    # loss = (1 - w) * CE + w * T^2 * KL(teacher_T || student_T); T 4, w 0.9 as in RepDistiller's
    # CIFAR setting. Off in every recipe until BENCHMARKS.md shows what it buys.
    distill: bool = setting(False, "Distil the unpruned base network into the final fine-tunes.")
    distill_temperature: float = setting(4.0, "Distillation temperature T (softens both networks' outputs).")
    distill_weight: float = setting(0.9, "Weight w of the distillation term, in [0, 1] (1 - w on the labels).")


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
    # MNIST / Fashion-MNIST (one recipe): 51,000 small grey training images that a CIFAR ResNet
    # fits far sooner than CIFAR; 15 cosine epochs from 0.1 (about 6,000 steps of 128) instead of
    # CIFAR's 164, wd 5e-4 against overfitting; fine-tune cosine from 0.01 as LeGR's CIFAR one,
    # 5 epochs (about 2,000 steps). Not tuned: a sensible start, check it on your own base model.
    "mnist": {"base": TrainConfig(epochs=15, lr=0.1, batch_size=128, weight_decay=5e-4),
              "finetune": TrainConfig(epochs=5, lr=0.01, batch_size=128, weight_decay=5e-4)},
}
DEFAULT_RECIPE = {"digits": "digits", "cifar10": "cifar", "cifar100": "cifar", "imagenet": "imagenet",
                  "cub200": "cub", "fashion-mnist": "mnist", "mnist": "mnist"}


def recipe_changes(name: str) -> dict[str, Any]:
    """Config changes that apply a named recipe to both base training and fine-tune."""
    if name not in RECIPES:
        raise LcpTuneError(f"unknown training recipe {name!r}: must be one of {', '.join(sorted(RECIPES))}")
    return {"recipe": name, "base_train": dataclasses.asdict(RECIPES[name]["base"]),
            "finetune": dataclasses.asdict(RECIPES[name]["finetune"])}


@dataclass(frozen=True)
class SearchConfig:
    space: str = setting("lcp", "Search-space preset (lcp, legr) or a path to a .yaml file.")  # the preset the search-space fields came from (search_spaces/)
    center: str = setting("global", "Centre of the search box: global (shifts from plain global ranking, "
                          "the papers') or uniform (shifts from uniform pruning).")
    searcher: str = setting("tpe", "Searcher that proposes compensations (see `lcp-tune list`).")
    scheduler: str = setting("fifo", "Trial scheduler: fifo, or asha to stop poor candidates early.")  # "asha" stops poor candidates after their first reports
    num_samples: int = setting(32, "Search trials, the two warm starts included.")  # trials, the two warm starts (identity, uniform) included
    tau_hat: int = setting(100, "SGD steps of recovery per candidate.")  # SGD steps per candidate: 100 at lr 0.02 made the objective agree
    lr: float = 0.02             # with the post-fine-tune ranking 91% of the time (30: 54-80%)
    report_every: int = 25       # steps between validations under asha, whose rungs they are (fifo: once)
    batch_size: int = 64
    bn_batches: int = 8          # BN recalibration batches before the steps (EagleEye)
    # image files (CIFAR, ImageNet, CUB): decode the images trials train and validate on once, into
    # uint8 arrays every trial on a node shares, augmented on tensors (data/search_subsets.py)
    shared_data: bool = setting(True, "Decode the search's training subset and validation split once and share "
                                      "them with every trial (image datasets; augmentation then runs on tensors).")
    bound: float = 2.0           # search range of each dimensionless shift: [-bound, bound]
    scale_bound: float = 1.0     # affine form: log(alpha) in [-scale_bound, scale_bound]
    cpus_per_trial: int = setting(1, "CPU threads per trial.")  # 2 one-thread trials beat 1 two-thread trial on small nets
    # None: auto (tune/cluster.trial_gpus), by input size on a cluster with GPUs, 0 without
    gpus_per_trial: Optional[float] = setting(None, "GPUs per trial (a fraction shares one GPU); default: none on "
                                                    "a cluster without GPUs or on a cpu device, else 1/4 GPU for "
                                                    "inputs up to 64 px, 1/2 up to 160 px, 1 above.")
    max_concurrent: int = setting(0, "Trials at once; 0 = what the resources fit.")  # 0: as many as the resources allow
    max_failures: int = 2        # retries of a trial whose worker died, then it is recorded failed
    # The race (multi-fidelity pick, opt-in): the search's best candidates, the warm starts among
    # them, recover race[0] x tau_hat steps; the better half of them race[1] x tau_hat; ... The pick
    # is the best at the last rung. Off by default: it did not pay where measured (BENCHMARKS 17).
    race: tuple[float, ...] = setting((), "Race rungs after the search, in multiples of --tau-hat, "
                                          "increasing and above 1 (3 6: the finalists recover 3x as "
                                          "long, then the better half 6x); none or 0: pick on the "
                                          "search's objective alone. No race when --tau-hat is 0.")
    finalists: Optional[int] = setting(None, "Candidates that enter the race (the warm starts always among "
                                             "them); default: 6, or the trials if fewer.")
    race_uniform_metrics: tuple[str, ...] = ("group_l2",)

    def race_steps(self) -> tuple[int, ...]:
        """Recovery steps of each race rung; none where the search recovers nothing (tau_hat 0)."""
        return tuple(int(round(m * self.tau_hat)) for m in self.race) if self.tau_hat > 0 else ()

    def race_finalists(self) -> int:
        return self.finalists if self.finalists is not None else min(6, self.num_samples)


@dataclass(frozen=True)
class ExperimentConfig:
    arch: str = setting("resnet20_narrow", "Architecture: a registered name (`lcp-tune list`), a torchvision "
                        "name or package.module:factory.")   # 8/16/32: the 16/32/64 original is too wide for digits (BENCHMARKS.md)
    data: str = setting("digits", "Dataset: a registered name (digits ships with scikit-learn) or "
                        "package.module:factory returning (train, test[, val[, classes]]) Datasets.")
    data_dir: Optional[str] = setting(None, "Folder holding the dataset on disk (real datasets).")
    val_fraction: float = setting(0.15, "Share of the training data held out for the search to score on.")  # of the training data, carved out for the search to score on
    # ImageNet's 15% would be 190,000 images a validation pass; 10 per class rank candidates as well
    val_max: int = setting(10_000, "At most this many validation images, the same number per class; 0: no cap.")
    subset: float = setting(1.0, "Share of the training data to use, in (0, 1].")  # fraction of the training data used (LeGR searches ImageNet on part)
    image_size: Optional[int] = setting(None, "Input side override (default: the dataset's standard size).")  # override a dataset's input side (None: its standard size)
    # None: auto (DataSplits.loader_workers): none for in-memory tensors, else the owner's CPUs but one
    workers: Optional[int] = setting(None, "Data-loading worker processes; default: none for in-memory tensors "
                                           "(digits, IDX), else all but one of the CPUs a trial or fine-tune "
                                           "owns (at most 8), taken from its compute threads.")  # data-loading processes (0: load in the training process)
    device: str = setting("auto", "Where base training, fine-tunes, BN recalibration, tests and export timing run: "
                          "auto (CUDA when present), cpu, cuda or cuda:N.")  # search trials: --gpus-per-trial
    seed: int = setting(0, "Seed for splits, base model, searcher and trials.")
    checkpoint: Optional[str] = setting(None, "Base model state_dict; without it a base model is trained and cached.")
    pretrained: bool = setting(False, "Start base training from torchvision's pretrained weights (downloads them).")  # start base training from torchvision's pretrained weights
    checkpoint_classes: Optional[int] = setting(None, "Classes of the --checkpoint's head, when not the data's: the head is replaced.")  # --num-classes: the checkpoint's head size, if not the data's
    prune: PruneConfig = field(default_factory=PruneConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    method: str = setting("lcp", "lcp (learned), random (best random compensation), global or uniform.")  # lcp (learned), random (best random), global or uniform (no search)
    baselines: bool = setting(True, "Also fine-tune plain global ranking and uniform pruning (lcp), to show "
                                    "what the search bought.")
    # learn once, fine-tune many: more budgets the learned compensation is fine-tuned at after the
    # search (besides prune.budget, the search's own), each into budgets/budget-<b>/ (--budgets)
    budgets: tuple[float, ...] = ()
    finetune_workers: int = setting(1, "Ray Train workers for each final fine-tune (DistributedDataParallel: "
                                       "NCCL on GPUs, gloo on CPUs); 1: in this process.")
    finetune_cpus_per_worker: int = setting(1, "CPU threads of each Ray Train fine-tune worker.")
    recipe: str = setting("digits", "Training recipe.")  # the training recipe base_train and finetune came from
    base_train: TrainConfig = field(default_factory=lambda: RECIPES["digits"]["base"])
    finetune: TrainConfig = field(default_factory=lambda: RECIPES["digits"]["finetune"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        return _build(cls, d, "config")

    def flat(self) -> dict[str, Any]:
        """Every setting by its dotted key ({"prune.budget": 0.15, ...})."""
        return _flatten(self.to_dict())

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """Copy with top-level or dotted nested fields changed: replace(**{"prune.budget": 0.3})."""
        d = self.to_dict()
        for key, value in changes.items():
            section, _, name = key.rpartition(".")
            target = d[section] if section else d
            target[name] = dict(value) if isinstance(value, dict) else value
        return ExperimentConfig.from_dict(d)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
        elif name == "budgets" and isinstance(value, (list, tuple)):
            value = tuple(float(v) for v in value)
        elif name in ("race", "race_uniform_metrics") and isinstance(value, (list, tuple)):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
