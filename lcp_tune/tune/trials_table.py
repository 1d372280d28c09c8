"""trials.parquet: the one table of a search's trials, one schema, one writer.

Built from Ray Tune's own record of the search (`ray.tune.ExperimentAnalysis`), so it reads the
search wherever it is stored: the experiment folder, a shared folder or a pyarrow URI
(`--storage`). Columns, one row per trial in the order the trials started:

    experiment, trial_id, trial_number (1 = first started), searcher, seed,
    status (finished / stopped early / error / unfinished), warm_start (identity / uniform / ""),
    one column per compensation value named after its group ("beta:layer1.0.conv1", ...),
    val_loss, val_acc, train_loss, flops_ratio, params_ratio, step, keep/<group> (kept channels),
    started_s (seconds after the first trial started), time_total_s, error (last line), then any
    other scalar the trials reported: time_prune, time_bn, time_steps, time_val (seconds in each
    phase), time_data (of those, seconds waiting for data) and shared_data (whether the trial
    read the search's decoded subsets rather than image files).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from lcp_tune.errors import LcpTuneError, first_line
from lcp_tune.store.experiment import Experiment
from lcp_tune.store.files import atomic_path
from lcp_tune.store.signing import require_verified, state_stamp

from .trial import TRIAL_ERROR

FINISHED, STOPPED, ERROR, UNFINISHED = "finished", "stopped early", "error", "unfinished"
SCORED = (FINISHED, STOPPED)   # trials with a validation loss the searcher saw
FIRST = ["experiment", "trial_id", "trial_number", "searcher", "seed", "status", "warm_start"]
METRICS = ("val_loss", "val_acc", "train_loss", "flops_ratio", "params_ratio", "step")
TIMINGS = ["started_s", "time_total_s", "error"]
# Ray's bookkeeping in every result; dropped so the table holds only what lcp-tune reports.
_RAY_KEYS = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
             "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
             "time_since_restore", "iterations_since_restore", "experiment_tag", "should_checkpoint",
             "replayed", "warm_start", "tau_hat", "trial_error"}


@dataclass(frozen=True)
class TableContext:
    """What the table needs besides Ray's record: labels and the names of the search keys."""

    experiment: str
    searcher: str
    seed: int
    names: dict[str, str]          # flat key c000 -> "beta:<group>" (missing keys stay as they are)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=FIRST + list(METRICS) + TIMINGS)


def trials_table(search_path: str, context: TableContext) -> pd.DataFrame:
    """One row per trial of the Ray Tune experiment at `search_path` (folder or URI)."""
    trials = _read_trials(search_path)
    if not trials:
        return empty_table()
    rows = [_row(t, context, search_path) for t in trials]
    table = pd.DataFrame(rows).sort_values(["_order", "trial_id"], kind="stable").drop(columns="_order")
    table.insert(2, "trial_number", range(1, len(table) + 1))
    return _order_columns(table.reset_index(drop=True), list(dict.fromkeys(context.names.values())))


def write_table(path: Path, table: pd.DataFrame) -> None:
    """Write a trials table as parquet, atomically."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, engine="pyarrow", index=False)


def write_trials(exp: Experiment) -> pd.DataFrame:
    """Write `exp`/trials.parquet from Ray Tune's record of its search; returns the table."""
    config = exp.config()
    context = TableContext(str(exp.root), config.search.searcher, config.seed,
                           exp.run_record().get("search_keys") or {})
    table = trials_table(exp.search_path(), context).assign(rung=0)
    race = race_rows(exp.root / "race.json", context)
    if not race.empty:
        table = pd.concat([table, race], ignore_index=True)
    write_table(exp.trials_path, table)
    return table


def race_rows(path: Path, context: TableContext) -> pd.DataFrame:
    """The race's rows (tune/race.py), one per candidate and rung, in the trials' columns: rung
    (1, 2, ...), candidate, metric, steps, val_loss, val_acc, keep/<group> and the vector's values
    under their group names. The search's own trials are rung 0."""
    import json

    if not path.is_file():
        return pd.DataFrame()
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LcpTuneError(f"cannot read the race in {path}: {type(exc).__name__}") from None
    keys = list(context.names.values())
    out = []
    for row in rows:
        item = {"experiment": context.experiment, "searcher": "race", "seed": context.seed,
                "status": ERROR if row.get(TRIAL_ERROR) else FINISHED, "warm_start": "",
                "rung": int(row["rung"]), "candidate": str(row["candidate"]), "metric": str(row["metric"]),
                "step": int(row["steps"]), "search_objective": _number(row.get("search_objective"))}
        item.update({name: _number(v) for name, v in zip(keys, row.get("vector") or [])})
        item.update({key: _number(row.get(key)) for key in ("val_loss", "val_acc", "flops_ratio", "params_ratio")})
        item.update({f"keep/{g}": _number(c) for g, c in (row.get("keep") or {}).items()})
        out.append(item)
    table = pd.DataFrame(out)
    for col in [c for c in table.columns if c.startswith("keep/")] + ["step"]:
        table[col] = table[col].round().astype("Int64")
    return table


def _read_trials(search_path: str) -> list:
    """Ray's Trial records of the experiment; [] when it never got as far as a state file."""
    from ray.tune import ExperimentAnalysis

    if not any(name.startswith("experiment_state-") for name, *_ in state_stamp(search_path)):
        return []   # the search never started, or was killed before Tune saved its state
    require_verified(search_path, "cannot read the trials")   # ExperimentAnalysis unpickles parts
    try:
        return list(ExperimentAnalysis(search_path).trials)
    except FileNotFoundError:
        return []
    except Exception as exc:   # a damaged state: say so in one line
        raise LcpTuneError(f"cannot read the trials in {search_path}: {first_line(exc)}") from None


def _row(trial, context: TableContext, search_path: str) -> dict[str, Any]:
    result = dict(trial.last_result or {})
    config = trial.config or {}
    out: dict[str, Any] = {"experiment": context.experiment, "trial_id": str(trial.trial_id),
                           "searcher": context.searcher, "seed": context.seed,
                           "status": _status(trial.status, result),
                           "warm_start": str(result.get("warm_start") or "")}
    for key in sorted(config):
        out[context.names.get(key, key)] = _number(config[key])
    for key in METRICS:
        out[key] = _number(result.get(key))
    for group, count in (result.get("keep") or {}).items():
        out[f"keep/{group}"] = _number(count)
    timestamp, total = result.get("timestamp"), result.get("time_total_s")
    out["start_time"] = _number(timestamp) - _number(total) if timestamp is not None else math.nan
    out["time_total_s"] = _number(total)
    out["error"] = result.get(TRIAL_ERROR) or (_error_line(trial, search_path) if trial.status == "ERROR" else None)
    for key, value in result.items():   # anything else the trials report (tags, timings)
        if key in out or key in _RAY_KEYS or key.startswith("keep"):
            continue
        if isinstance(value, (int, float, str, bool)) or value is None:
            out[key] = value
    tag = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    out["_order"] = int(tag) if tag.isdigit() else math.inf
    return out


def _status(ray_status: str, result: dict) -> str:
    """finished: ran all tau_hat steps; stopped early: a scheduler ended it; error; unfinished."""
    if ray_status == "ERROR" or result.get(TRIAL_ERROR):
        return ERROR
    if "val_loss" not in result or ray_status != "TERMINATED":
        return UNFINISHED   # RUNNING / PENDING / PAUSED: the search was interrupted
    step, tau_hat = result.get("step"), result.get("tau_hat")
    complete = step is None or tau_hat is None or step >= tau_hat
    return FINISHED if complete else STOPPED


def _error_line(trial, search_path: str) -> str:
    """The last line of the trial's error.txt, read through the storage's filesystem."""
    import pyarrow.fs

    try:
        fs, root = pyarrow.fs.FileSystem.from_uri(search_path) if "://" in search_path else \
            (pyarrow.fs.LocalFileSystem(), search_path)
        name = getattr(trial.run_metadata, "error_filename", None) or "error.txt"
        folder = trial.path if "://" not in search_path else f"{root.rstrip('/')}/{Path(trial.path).name}"
        with fs.open_input_stream(f"{folder}/{name}") as f:
            text = f.read().decode(errors="replace")
    except Exception:
        return "error"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "error")[:300]


def comp_columns(table: pd.DataFrame) -> list[str]:
    """The compensation-value columns ("beta:<group>", "kappa:<group>", ... or raw c000 keys)."""
    return [c for c in table.columns if (":" in c and not c.startswith("keep/"))
            or (len(c) == 4 and c[0] == "c" and c[1:].isdigit())]


def keep_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("keep/")]


def _order_columns(table: pd.DataFrame, named: Sequence[str]) -> pd.DataFrame:
    comp = [c for c in named if c in table] + [c for c in comp_columns(table) if c not in named]
    metrics = [c for c in METRICS if c in table]
    keep = keep_columns(table)
    fixed = set(FIRST + comp + metrics + keep + TIMINGS + ["start_time"])
    rest = [c for c in table.columns if c not in fixed]
    start = table["start_time"]
    table = table.assign(started_s=start - start.min())
    table = table[FIRST + comp + metrics + keep + TIMINGS + rest].copy()
    for col in keep + (["step"] if "step" in table else []):   # counts: integers, missing allowed
        table[col] = table[col].round().astype("Int64")
    for col in rest:   # one type per column, so parquet can store what the trials reported
        if table[col].map(type).nunique() > 1 and not pd.api.types.is_numeric_dtype(table[col]):
            table[col] = table[col].map(lambda v: None if v is None else str(v))
    return table


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan

