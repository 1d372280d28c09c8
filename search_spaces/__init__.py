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

from lcp_tune.registry import LcpTuneError

PRESET_DIR = Path(__file__).parent


class PresetError(LcpTuneError):
    """A preset that is missing, unreadable or has a bad field (the message names it)."""


# field -> (config key, type, check, allowed values as words)
FIELDS: dict[str, tuple[str, type, Any, str]] = {
    "metric": ("prune.metric", str, lambda v: v in ("l1", "l2", "bn", "taylor"), "one of l1, l2, bn, taylor"),
    "form": ("prune.form", str, lambda v: v in ("additive", "affine"), "one of additive, affine"),
    "safeguard": ("prune.safeguard", float, lambda v: 0 <= v < 1, "in [0, 1)"),
    "bound": ("search.bound", float, lambda v: 0 < v <= 100, "in (0, 100]"),
    "scale_bound": ("search.scale_bound", float, lambda v: 0 <= v <= 5, "in [0, 5]"),
    "tau_hat": ("search.tau_hat", int, lambda v: 0 <= v <= 1_000_000, "an integer >= 0"),
    "lr": ("search.lr", float, lambda v: 0 < v < 10, "in (0, 10)"),
    "report_every": ("search.report_every", int, lambda v: v >= 1, "an integer >= 1"),
    "bn_recalibration": ("", bool, lambda v: True, "true or false"),
    "bn_batches": ("search.bn_batches", int, lambda v: v >= 0, "an integer >= 0"),
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
        key, kind, check, allowed = FIELDS[field]
        ok_type = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type or not check(value):
            raise PresetError(f"search-space preset {path}: field {field!r} must be {allowed}, got {value!r}")
        if key:
            changes[key] = value
    if not data["bn_recalibration"]:
        changes["search.bn_batches"] = 0
    elif "bn_batches" not in data:
        changes["search.bn_batches"] = 8
    return changes
