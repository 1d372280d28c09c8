"""The compensation JSON, written and read here: a learned compensation, reusable at any budget.

    {"arch", "data", "metric", "form", "budget", "base_checkpoint_sha256",
     "values": {"beta:<group>": v, ...}}   (affine: "log_alpha:<group>" and "kappa:<group>")
A ranking learned at one budget transfers to others, so one search serves many budgets; this
module writes the file and reads it back, checking it fits the base model it is applied to.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from lcp_tune.errors import LcpTuneError

from .files import write_json

if TYPE_CHECKING:
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.pruning import Pruner

REQUIRED = ("arch", "metric", "form", "values")


def write_compensation(path: Path, pruner: "Pruner", vector: np.ndarray, config: "ExperimentConfig",
                       base_hash: str) -> None:
    """Save `vector` named per channel group, with what it was learned on (arch, data, base hash)."""
    names = pruner.form.param_names(pruner.group_names)
    write_json(path, {"arch": config.arch, "data": config.data, "metric": pruner.metric_name,
                      "form": config.prune.form, "budget": config.prune.budget,
                      "base_checkpoint_sha256": base_hash,
                      "values": dict(zip(names, np.asarray(vector, dtype=float).tolist()))})


@dataclass(frozen=True)
class CompensationRecord:
    """One learned compensation, as saved."""

    arch: str
    metric: str
    form: str
    values: dict[str, float]
    base_checkpoint_sha256: Optional[str] = None
    data: Optional[str] = None
    budget: Optional[float] = None
    path: str = ""


def read_compensation(path: str | Path) -> CompensationRecord:
    """Read and validate a compensation file; a bad file is one clear LcpTuneError."""
    path = Path(path)
    if not path.is_file():
        raise LcpTuneError(f"compensation file {path} does not exist")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LcpTuneError(f"compensation file {path} is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise LcpTuneError(f"compensation file {path} must hold a JSON object, got {type(raw).__name__}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise LcpTuneError(f"compensation file {path} lacks {', '.join(missing)} "
                           f"(needs {', '.join(REQUIRED)}, as written by lcp-tune search)")
    values = raw["values"]
    if not isinstance(values, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values.values()):
        raise LcpTuneError(f"compensation file {path}: 'values' must map parameter names to finite numbers")
    return CompensationRecord(str(raw["arch"]), str(raw["metric"]), str(raw["form"]),
                              {str(k): float(v) for k, v in values.items()},
                              raw.get("base_checkpoint_sha256"), raw.get("data"), raw.get("budget"), str(path))


def check_fits(record: CompensationRecord, arch: str, checkpoint_hash: Optional[str]) -> None:
    """Refuse a compensation learned for another architecture or another base checkpoint."""
    if record.arch != arch:
        raise LcpTuneError(f"compensation file {record.path} was learned for architecture "
                           f"{record.arch!r}, not {arch!r}")
    expected = record.base_checkpoint_sha256
    if expected and checkpoint_hash is None:
        raise LcpTuneError(f"compensation file {record.path} was learned on base checkpoint sha256 "
                           f"{expected}; pass that checkpoint with --checkpoint")
    if expected and checkpoint_hash is not None and not _same_hash(expected, checkpoint_hash):
        raise LcpTuneError(f"compensation file {record.path} was learned on base checkpoint sha256 "
                           f"{expected}, the given checkpoint has {checkpoint_hash}")


def _same_hash(a: str, b: str) -> bool:
    """Hashes may be stored shortened; compare on the common prefix (at least 16 hex digits)."""
    n = min(len(a), len(b))
    return n >= 16 and a[:n].lower() == b[:n].lower()


def compensation_vector(record: CompensationRecord, param_names: list[str]) -> np.ndarray:
    """The search vector in the Pruner's layout; the file's names must be exactly the Pruner's."""
    missing = [n for n in param_names if n not in record.values]
    extra = [n for n in record.values if n not in set(param_names)]
    if missing or extra:
        which = f"lacks {missing[0]!r}" if missing else f"has unknown {extra[0]!r}"
        raise LcpTuneError(f"compensation file {record.path} does not match this model's channel groups: "
                           f"it {which} ({len(param_names)} parameters expected, "
                           f"{len(record.values)} given)")
    return np.array([record.values[n] for n in param_names], dtype=float)
