"""Named search-space presets shipped with lcp-tune, validated on load.

A preset names the metric, the compensation form, the bounds (in the dimensionless units of
the design: shifts in units of the std of all channel metrics, scales as log alpha), the short
recovery (tau_hat, lr, BN recalibration) and the safeguard. `--space NAME` picks a shipped
preset, `--space path.yaml` a user's; CLI flags override either.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lcp_tune.errors import LcpTuneError
from lcp_tune.rules import check_value

PRESET_DIR = Path(__file__).parent


class PresetError(LcpTuneError):
    """A preset that is missing, unreadable or has a bad field (the message names it)."""


# field -> (config key, type); ranges are lcp_tune.rules', names the pruning core's registries
FIELDS: dict[str, tuple[str, type]] = {
    "metric": ("prune.metric", str), "form": ("prune.form", str), "safeguard": ("prune.safeguard", float),
    "bound": ("search.bound", float), "scale_bound": ("search.scale_bound", float),
    "tau_hat": ("search.tau_hat", int), "lr": ("search.lr", float), "report_every": ("search.report_every", int),
    "bn_recalibration": ("", bool), "bn_batches": ("search.bn_batches", int),
}
REQUIRED = ("metric", "form", "bound", "tau_hat", "bn_recalibration", "safeguard")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    """Read and validate a preset; returns config changes as {"section.field": value}."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if name_or_path not in list_presets():
            raise PresetError(f"unknown search-space preset {name_or_path!r}: must be one of "
                              f"{', '.join(list_presets())} or a path to a .yaml file")
        path = PRESET_DIR / f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PresetError(f"search-space preset {path} cannot be read: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise PresetError(f"search-space preset {path} must be a mapping of fields")
    return _validate(data, path)


def _validate(data: dict, path: Path) -> dict[str, Any]:
    data = {k: v for k, v in data.items() if k not in ("name", "description")}
    for field in REQUIRED:
        if field not in data:
            raise PresetError(f"search-space preset {path} is missing field {field!r}")
    changes: dict[str, Any] = {}
    for field, value in data.items():
        if field not in FIELDS:
            raise PresetError(f"search-space preset {path} has unknown field {field!r}: allowed are "
                              f"{', '.join(FIELDS)}")
        key, kind = FIELDS[field]
        where = f"search-space preset {path}: field {field!r}"
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is bool and not isinstance(value, bool):
            raise PresetError(f"{where} must be true or false, got {value!r}")
        if kind is str:
            names = _names(field)
            if value not in names:
                raise PresetError(f"{where} must be one of {', '.join(names)}, got {value!r}")
        elif kind is not bool:
            try:
                value = check_value(key, value, where)
            except LcpTuneError as exc:
                raise PresetError(str(exc)) from None
        if key:
            changes[key] = value
    if not data["bn_recalibration"]:
        changes["search.bn_batches"] = 0
    elif "bn_batches" not in data:
        changes["search.bn_batches"] = 8
    return changes


def _names(field: str) -> list[str]:
    """The registered metric or compensation-form names (importing the pruning core)."""
    from lcp_tune.pruning import list_compensations, list_metrics

    return list_metrics() if field == "metric" else list_compensations()
