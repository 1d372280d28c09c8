"""Validate a whole config before any work starts: every name against its registry, every
number against lcp_tune.rules. The CLI, the presets and lcp_tune.search all end up here."""
from __future__ import annotations

import math


from lcp_tune.config import RECIPES, ExperimentConfig
from lcp_tune.data import DATASETS
from lcp_tune.devices import check_device_name
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import ARCHS
from lcp_tune.pruning import COMPENSATIONS, METRICS
from lcp_tune.pruning.resources import RESOURCES
from lcp_tune.rules import RULES, check_path_setting, check_value
from lcp_tune.searchers import SEARCHERS
from lcp_tune.searchers.space import CENTERS
from lcp_tune.tune.schedulers import SCHEDULERS

METHODS = ("lcp", "random", "global", "uniform")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise LcpTuneError(f"unknown method {method!r}: must be one of {', '.join(METHODS)}")


def check_resource(resource: str) -> None:
    if resource not in RESOURCES:
        raise LcpTuneError(f"unknown resource {resource!r}: must be one of {', '.join(RESOURCES)}")


def check_center(center: str) -> None:
    if center not in CENTERS:
        raise LcpTuneError(f"unknown search centre {center!r}: must be one of {', '.join(CENTERS)}")


def check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise LcpTuneError(f"unknown training recipe {recipe!r}: must be one of {', '.join(sorted(RECIPES))}")


def validate_config(config: ExperimentConfig) -> None:
    """Reject bad settings with one clear sentence naming the setting and what is allowed."""
    ARCHS.get(config.arch)
    DATASETS.get(config.data)
    METRICS.get(config.prune.metric)
    COMPENSATIONS.get(config.prune.form)
    SEARCHERS.get(config.search.searcher)
    SCHEDULERS.get(config.search.scheduler)
    check_method(config.method)
    check_center(config.search.center)
    check_resource(config.prune.resource)
    check_recipe(config.recipe)
    check_path_setting("--checkpoint", config.checkpoint)
    check_path_setting("--data-dir", config.data_dir)
    check_device_name(config.device)
    values = config.flat()
    for key in RULES:
        if key in values:
            check_value(key, values[key])
    check_budgets(config)
    check_race(config)


def check_race(config: ExperimentConfig) -> None:
    """The race's rungs can be met: each rung longer than the one before (the search's own
    recovery first) and finite, and no more finalists than the search has trials."""
    search = config.search
    for metric in search.race_uniform_metrics:
        METRICS.get(metric)
    if not search.race or config.method not in ("lcp", "random"):
        return
    before = 1.0
    for multiple in search.race:
        if not isinstance(multiple, (int, float)) or isinstance(multiple, bool) or not math.isfinite(multiple) \
                or multiple <= before or multiple > 1000:
            raise LcpTuneError(f"--race {' '.join(f'{m:g}' for m in search.race)}: each rung must recover longer "
                               f"than the one before, in multiples of --tau-hat above 1 (the search's own "
                               f"recovery) and at most 1000; {multiple!r} is not above {before:g}")
        before = multiple
    if search.finalists is not None and search.finalists > search.num_samples:
        raise LcpTuneError(f"--finalists {search.finalists} is more than the search's {search.num_samples} trials "
                           f"(--num-samples): at most {search.num_samples}")


def check_budgets(config: ExperimentConfig) -> None:
    """--budgets: each in (0, 1), none twice (the search's own budget is the first)."""
    seen = [config.prune.budget]
    for budget in config.budgets:
        check_value("prune.budget", budget, "--budgets")
        if f"{budget:g}" in {f"{b:g}" for b in seen}:   # budgets/budget-<b:g>/: one folder each
            raise LcpTuneError(f"--budgets {budget!r} is given twice (to 6 digits, as its folder is named)")
        seen.append(budget)

