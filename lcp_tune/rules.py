"""Every range rule on a setting, in one place: the CLI, the YAML presets and the Python API all
check values here, so a bound can never differ between two entry points.

Names (architectures, datasets, metrics, forms, searchers, ...) are checked against their
registries by lcp_tune.run.validate, which sits above the registries; this module holds the
numeric rules and imports nothing but the error class, so even the pruning core uses it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .errors import LcpTuneError


@dataclass(frozen=True)
class Rule:
    """A check on one setting and the words that say what it allows."""

    check: Callable[[Any], bool]
    allowed: str
    integer: bool = False
    words: tuple[str, ...] = ()   # values allowed besides numbers ("auto")


def _in(low: float, high: float, low_open: bool = True, high_open: bool = True) -> Rule:
    def check(v: float) -> bool:
        return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)
    brackets = ("(" if low_open else "[", ")" if high_open else "]")
    return Rule(check, f"in {brackets[0]}{low:g}, {high:g}{brackets[1]}")


def _at_least(low: int) -> Rule:
    return Rule(lambda v: v >= low, f"an integer >= {low}", integer=True)


# dotted config key -> rule. The CLI flag of a key is its last part with dashes (--tau-hat).
RULES: dict[str, Rule] = {
    "seed": _at_least(0),
    "val_fraction": _in(0, 1),
    "val_max": _at_least(0),
    "subset": _in(0, 1, high_open=False),
    "image_size": Rule(lambda v: v >= 8, "an integer >= 8 (pixels)", integer=True),
    "workers": _at_least(0),
    "checkpoint_classes": _at_least(1),
    "prune.budget": _in(0, 1),
    "prune.safeguard": _in(0, 1, low_open=False),
    "prune.round_to": Rule(lambda v: v >= 1, "an integer >= 1 or auto", integer=True, words=("auto",)),
    "prune.latency_batch": _at_least(1),
    "prune.latency_threads": _at_least(1),
    "search.num_samples": _at_least(1),
    "search.tau_hat": _at_least(0),
    "search.lr": _in(0, 10),
    "search.report_every": _at_least(1),
    "search.batch_size": _at_least(1),
    "search.bn_batches": _at_least(0),
    "search.bound": _in(0, 100, high_open=False),
    "search.scale_bound": _in(0, 5, low_open=False, high_open=False),
    "search.cpus_per_trial": _at_least(1),
    "finetune_workers": _at_least(1),
    "finetune_cpus_per_worker": _at_least(1),
    "search.gpus_per_trial": Rule(lambda v: v >= 0, "0 or more (fractions share a GPU)"),
    "search.max_concurrent": _at_least(0),
    "search.max_failures": _at_least(0),
    "search.finalists": _at_least(2),
    "base_train.epochs": _at_least(1),
    "finetune.epochs": _at_least(1),
    "finetune.distill_temperature": _in(0, 100, high_open=False),
    "finetune.distill_weight": _in(0, 1, low_open=False, high_open=False),
}

# The CLI flags whose name is not the key's last part.
FLAGS: dict[str, str] = {"checkpoint_classes": "--num-classes", "finetune.epochs": "--finetune-epochs",
                         "base_train.epochs": "--epochs"}


def flag(key: str) -> str:
    """The command-line flag of a dotted config key ("search.tau_hat" -> "--tau-hat")."""
    return FLAGS.get(key, "--" + key.rpartition(".")[2].replace("_", "-"))


def check_value(key: str, value: Any, where: Optional[str] = None) -> Any:
    """Check one setting against its rule; returns the value (ints stay ints, floats floats).

    `where` names the input in the message (a flag, a preset field); the flag by default.
    """
    rule = RULES.get(key)
    if rule is None or value is None:
        return value
    name = where or flag(key)
    if isinstance(value, str) and value in rule.words:
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or (rule.integer and not float(value).is_integer()) or not math.isfinite(value):
        raise LcpTuneError(f"{name} must be {rule.allowed}, got {value!r}")
    if not rule.check(value):
        raise LcpTuneError(f"{name} must be {rule.allowed}, got {value:g}")
    return int(value) if rule.integer else value


def check_path_setting(flag_name: str, value: Optional[str]) -> None:
    """An empty path (a script's unset variable) is an error, never "not given"."""
    if value is not None and not str(value).strip():
        raise LcpTuneError(f"{flag_name} is empty; give a path or leave the flag out")
