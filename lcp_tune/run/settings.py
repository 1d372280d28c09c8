"""Resolving settings into one ExperimentConfig, the same way for the CLI and the Python API:
defaults, then the dataset's training recipe, then the search-space preset, then what was given.

Settings are named by their config field ("budget", "tau_hat", "searcher"); each given value is
checked by its rule in lcp_tune.rules, and the whole config by run.validate.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from lcp_tune.config import DEFAULT_RECIPE, ExperimentConfig, recipe_changes
from lcp_tune.errors import LcpTuneError
from lcp_tune.rules import check_value

# Sections whose fields are named directly ("budget" for prune.budget); their names are unique.
_SECTIONS = ("prune", "search")
# Settings named after their flag rather than a field (the two epochs counts).
ALIASES = {"finetune_epochs": "finetune.epochs", "base_epochs": "base_train.epochs",
           "num_classes": "checkpoint_classes"}


def setting_keys() -> dict[str, str]:
    """Every setting name the API takes -> its dotted config key."""
    config = ExperimentConfig()
    keys = {f.name: f.name for f in dataclasses.fields(config) if not dataclasses.is_dataclass(getattr(config, f.name))}
    for section in _SECTIONS:
        keys.update({f.name: f"{section}.{f.name}" for f in dataclasses.fields(getattr(config, section))})
    keys.update(ALIASES)
    return keys


def dotted(settings: dict[str, Any], where: str = "setting") -> dict[str, Any]:
    """{"budget": 0.3} -> {"prune.budget": 0.3}; an unknown name is one error listing the names."""
    keys = setting_keys()
    out = {}
    for name, value in settings.items():
        if name not in keys and name not in keys.values():
            raise LcpTuneError(f"unknown {where} {name!r}: allowed are {', '.join(sorted(keys))}")
        out[keys.get(name, name)] = value
    return out


def resolve_config(changes: dict[str, Any]) -> ExperimentConfig:
    """Defaults, then the recipe, then the --space preset, then `changes` ({dotted key: value})."""
    from lcp_tune.search_spaces import load_preset

    changes = {k: check_value(k, v) for k, v in changes.items() if v is not None}
    recipe = changes.pop("recipe", None) or DEFAULT_RECIPE.get(changes.get("data", "digits"), "digits")
    layered: dict[str, Any] = recipe_changes(recipe)
    space = changes.get("search.space")
    if space is not None:
        layered.update(load_preset(space))
    layered.update(changes)
    return ExperimentConfig().replace(**layered)
