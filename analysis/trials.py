"""An experiment's trials as one pandas DataFrame, read offline from the experiment folder.

Ray Tune already writes everything per trial (`search/trial_*/result.json`, one JSON line per
report) and the trials' states (`search/experiment_state-*.json`). Reading those files directly
needs no running Ray and takes milliseconds, where `ray.tune.ExperimentAnalysis` first imports
Ray. If the state file is missing or unreadable (a search killed early, a future Ray format),
the trial folders alone still give every result; only the status gets coarser.

Example:

    >>> from analysis import load_trials                       # doctest: +SKIP
    >>> trials = load_trials("lcp-runs/search-20250101-120000")  # doctest: +SKIP
    >>> trials.sort_values("val_loss").head()                  # doctest: +SKIP
"""
from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from lcp_tune.config import ExperimentConfig
from lcp_tune.experiment import Experiment
from lcp_tune.registry import LcpTuneError

FINISHED, STOPPED, ERROR, UNFINISHED = "finished", "stopped early", "error", "unfinished"
SCORED = (FINISHED, STOPPED)   # trials with a validation loss the searcher saw

# Ray's bookkeeping in every result; dropped so the table holds only what lcp-tune reports.
_RAY_KEYS = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
             "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
             "time_since_restore", "iterations_since_restore", "experiment_tag", "should_checkpoint"}
_METRICS = ("val_loss", "val_acc", "train_loss", "flops_ratio", "params_ratio", "step")
# taken from config.yaml even when the lead's trials also report them
_FROM_CONFIG = ("experiment", "trial_id", "trial_number", "searcher", "seed", "status")


@dataclass(frozen=True)
class ExperimentRecords:
    """Everything the analysis reads from one experiment folder besides the trials."""

    root: Path
    config: ExperimentConfig
    report: Optional[dict] = None          # report.json, absent until the search finished
    compensation: Optional[dict] = None    # compensation.json
    plan: Optional[dict] = None            # pruned/plan.json (group sizes)
    notes: tuple[str, ...] = field(default=())

    @property
    def group_sizes(self) -> Optional[dict[str, int]]:
        if not self.plan or "plan" not in self.plan:
            return None
        plan = self.plan["plan"]
        return dict(zip(plan["group_names"], (int(n) for n in plan["group_sizes"])))


def open_records(path: str | Path) -> ExperimentRecords:
    """Validate `path` as an lcp-tune experiment folder and read its small JSON records."""
    root = Path(path)
    exp = Experiment(root)
    if not root.is_dir():
        raise LcpTuneError(f"experiment folder {root} does not exist; pass a folder written by `lcp-tune search --out`")
    if not exp.is_experiment():
        raise LcpTuneError(f"{root} is not an lcp-tune experiment folder (no config.yaml); pass a folder "
                           f"written by `lcp-tune search --out`")
    config = exp.config()
    notes = []
    loaded = {}
    for name, path_ in (("report", exp.report_path), ("compensation", exp.compensation_path),
                        ("plan", exp.pruned_dir / "plan.json")):
        loaded[name] = _read_json(path_, notes)
    return ExperimentRecords(root, config, notes=tuple(notes), **loaded)


def load_trials(experiment: str | Path | ExperimentRecords) -> pd.DataFrame:
    """One row per trial of an experiment, in the order the trials started.

    Columns: experiment, trial_id, trial_number (1 = first started), searcher, seed, status
    (finished / stopped early / error / unfinished), warm_start (identity / uniform / empty),
    one column per compensation value named after its group (e.g. "beta:layer1.0.conv1"),
    val_loss, val_acc, train_loss, flops_ratio, params_ratio, step, keep/<group> (kept
    channels), started_s (seconds after the first trial started), time_total_s (trial wall
    time), error (last line of the trial's error, if any), then any other scalar the trials
    reported. Searcher and seed come from config.yaml.
    """
    records = experiment if isinstance(experiment, ExperimentRecords) else open_records(experiment)
    rows = _trial_rows(records)
    if not rows:
        return pd.DataFrame(columns=["experiment", "trial_id", "trial_number", "searcher", "seed", "status"])
    keys = sorted({k for row in rows for k in row["config"]})
    names = compensation_names(records, keys, rows)
    table = pd.DataFrame([_flatten(row, records, names) for row in rows])
    table = table.sort_values(["_order", "trial_id"], kind="stable").drop(columns="_order")
    table.insert(2, "trial_number", range(1, len(table) + 1))
    table = table.reset_index(drop=True)
    table["warm_start"] = _warm_starts(table, records)
    return _order_columns(table, list(names.values()))


def compensation_names(records: ExperimentRecords, keys: list[str], rows: list[dict]) -> dict[str, str]:
    """Flat search keys c000.. -> "beta:<group>" names, in compensation.json's order.

    Without compensation.json (a search that never finished) the names come from the groups
    the trials kept channels of and the compensation form's prefixes; failing that, the keys stay.
    """
    values = (records.compensation or {}).get("values")
    if isinstance(values, dict) and len(values) == len(keys):
        return dict(zip(keys, values))
    groups = next((list(row["result"]["keep"]) for row in rows if isinstance(row["result"].get("keep"), dict)), None)
    if groups:
        from lcp_tune.pruning import COMPENSATIONS   # torch import: only on this rare path

        try:
            names = COMPENSATIONS.get(records.config.prune.form).param_names(groups)
        except LcpTuneError:
            names = []
        if len(names) == len(keys):
            return dict(zip(keys, names))
    return {k: k for k in keys}


def _trial_rows(records: ExperimentRecords) -> list[dict]:
    """Per trial: id, config, last result, Ray status, start time, creation order, error."""
    search = Experiment(records.root).search_dir
    state = _read_state(search)
    rows = []
    for folder in sorted(p for p in search.glob("*") if (p / "params.json").is_file() or (p / "result.json").is_file()):
        rows.append(_folder_row(folder))
    by_id = {row["trial_id"]: row for row in rows}
    for trial in state:   # trials the state knows but that never wrote a folder (pending ones)
        row = by_id.get(trial["trial_id"])
        if row is None:
            row = by_id[trial["trial_id"]] = {"trial_id": trial["trial_id"], "config": {}, "result": {},
                                               "error": None, "folder": None}
            rows.append(row)
        row.update({k: v for k, v in trial.items() if v is not None and k != "config"})
        row["config"] = row["config"] or trial.get("config") or {}
        if trial.get("last_result") and not row["result"]:
            row["result"] = trial["last_result"]
    return rows


def _folder_row(folder: Path) -> dict:
    result = _last_json_line(folder / "result.json")
    config = _read_json(folder / "params.json", []) or result.get("config") or {}
    trial_id = result.get("trial_id") or folder.name.removeprefix("trial_")
    error = None
    error_file = folder / "error.txt"
    if error_file.is_file():
        lines = [line.strip() for line in error_file.read_text(errors="replace").splitlines() if line.strip()]
        error = (lines[-1] if lines else "error")[:300]
    start = result.get("timestamp", 0) - result.get("time_total_s", 0) if result else None
    return {"trial_id": str(trial_id), "config": config, "result": result, "error": error,
            "folder": folder, "start_time": start, "order": None, "ray_status": None}


def _read_state(search: Path) -> list[dict]:
    """Trial states from Ray's newest experiment_state-*.json; [] when absent or unreadable."""
    files = sorted(glob.glob(str(search / "experiment_state-*.json")))
    if not files:
        return []
    try:
        data = json.loads(Path(files[-1]).read_text())
        trials = []
        for entry in data["trial_data"]:
            static, runtime = (json.loads(part) if isinstance(part, str) else part for part in entry)
            tag = str(static.get("experiment_tag", ""))
            order = int(tag.split("_", 1)[0]) if tag.split("_", 1)[0].isdigit() else None
            trials.append({"trial_id": str(static["trial_id"]), "ray_status": static.get("status"),
                           "config": static.get("config") or {}, "order": order,
                           "start_time": runtime.get("start_time"),
                           "last_result": runtime.get("last_result") or {}})
        return trials
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _flatten(row: dict, records: ExperimentRecords, names: dict[str, str]) -> dict[str, Any]:
    result = row["result"] or {}
    out: dict[str, Any] = {"experiment": str(records.root), "trial_id": row["trial_id"],
                           "searcher": records.config.search.searcher, "seed": records.config.seed,
                           "status": _status(row, records.config)}
    for key, name in names.items():
        out[name] = _number(row["config"].get(key))
    for key in _METRICS:
        out[key] = _number(result.get(key))
    keep = dict(result["keep"]) if isinstance(result.get("keep"), dict) else {}
    keep.update({k.removeprefix("keep/"): v for k, v in result.items() if k.startswith("keep/")})
    for group, count in keep.items():
        out[f"keep/{group}"] = _number(count)
    out["start_time"] = _number(row.get("start_time"))
    out["time_total_s"] = _number(result.get("time_total_s"))
    out["error"] = row.get("error")
    for key, value in result.items():   # anything else the trials report (tags, timings)
        if key in out or key in _RAY_KEYS or key in _FROM_CONFIG or key.startswith("keep"):
            continue
        if isinstance(value, (int, float, str, bool)) or value is None:
            out[key] = value
    out["_order"] = row["order"] if row.get("order") is not None else math.inf
    if out["_order"] == math.inf and out["start_time"] == out["start_time"]:
        out["_order"] = 1e12 + out["start_time"]   # no state file: order by start time
    return out


def _status(row: dict, config: ExperimentConfig) -> str:
    """finished: ran all tau_hat steps; stopped early: a scheduler ended it; error; unfinished."""
    ray_status = row.get("ray_status")
    if ray_status == "ERROR" or row.get("error"):
        return ERROR
    result = row.get("result") or {}
    if "val_loss" not in result:
        return UNFINISHED
    step = result.get("step")
    tau_hat = result.get("tau_hat", config.search.tau_hat)   # as reported, if the trial says
    complete = step is None or tau_hat is None or step >= tau_hat
    if ray_status in (None, "TERMINATED"):
        if complete:
            return FINISHED
        return STOPPED if ray_status == "TERMINATED" else UNFINISHED
    return UNFINISHED   # RUNNING / PENDING / PAUSED: the search was interrupted


def _warm_starts(table: pd.DataFrame, records: ExperimentRecords) -> pd.Series:
    """Tag the identity (all-zero compensation) and uniform warm-start trials.

    A "warm_start" column reported by the trials wins. Otherwise identity is the first trial
    whose compensation is all zero, and uniform is the first other trial that kept exactly
    report.json's uniform channel counts (every searcher evaluates identity, then uniform).
    """
    if "warm_start" in table:
        reported = table["warm_start"].map(lambda v: "" if v is None or v != v else v)
        if reported.map(lambda v: v in ("", "identity", "uniform")).all():
            return reported.astype(str)
    tags = pd.Series([""] * len(table), index=table.index, dtype=object)
    comp = comp_columns(table)
    if comp:
        zero = table[comp].abs().fillna(1.0).max(axis=1) < 1e-12
        if zero.any():
            tags[zero.idxmax()] = "identity"
    keep_cols = [c for c in table if c.startswith("keep/")]
    uniform_keep = ((records.report or {}).get("methods", {}).get("uniform") or {}).get("keep")
    if uniform_keep and keep_cols:
        wanted = pd.Series({f"keep/{g}": float(v) for g, v in uniform_keep.items()})
        cols = [c for c in wanted.index if c in table]
        if cols:
            match = (table[cols].astype(float) == wanted[cols]).all(axis=1) & (tags == "")
            if match.any():
                tags[match.idxmax()] = "uniform"
    elif (tags == "identity").any() and len(table) > 1 and tags.iloc[0] == "identity":
        tags.iloc[1] = "uniform"   # no report yet: the searchers' documented order
    return tags.astype(str)


def comp_columns(table: pd.DataFrame) -> list[str]:
    """The compensation-value columns ("beta:<group>", "kappa:<group>", ... or raw c000 keys)."""
    return [c for c in table.columns if (":" in c and not c.startswith("keep/"))
            or (len(c) == 4 and c[0] == "c" and c[1:].isdigit())]


def keep_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("keep/")]


def _order_columns(table: pd.DataFrame, comp: list[str]) -> pd.DataFrame:
    first = ["experiment", "trial_id", "trial_number", "searcher", "seed", "status", "warm_start"]
    metrics = [c for c in _METRICS if c in table]
    keep = keep_columns(table)
    timings = ["start_time", "time_total_s", "error"]
    rest = [c for c in table.columns if c not in set(first + comp + metrics + keep + timings)]
    table = table[first + comp + metrics + keep + timings + rest].copy()
    start = table["start_time"]
    table.insert(table.columns.get_loc("time_total_s"), "started_s", start - start.min())
    table = table.drop(columns="start_time")
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


def _last_json_line(path: Path) -> dict:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue   # a line cut short by a killed trial
    return {}


def _read_json(path: Path, notes: list) -> Optional[Any]:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        notes.append(f"{path} could not be read ({exc}); ignored")
        return None
