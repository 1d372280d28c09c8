"""An experiment's trials as one pandas DataFrame, and the small records beside them.

The table is the experiment's trials.parquet, written by its one writer
(lcp_tune.tune.trials_table) when the search ends; for a search that never got that far it is
built the same way, from Ray Tune's record of the search, wherever `--storage` put it.

Example:

    >>> from analysis import load_trials                       # doctest: +SKIP
    >>> trials = load_trials("lcp-runs/search-20250101-120000")  # doctest: +SKIP
    >>> trials.sort_values("val_loss").head()                  # doctest: +SKIP
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from lcp_tune.config import ExperimentConfig
from lcp_tune.errors import LcpTuneError
from lcp_tune.store.experiment import Experiment
from lcp_tune.tune.trials_table import (ERROR, FINISHED, SCORED, STOPPED, UNFINISHED, comp_columns,  # noqa: F401
                                        keep_columns, write_trials)


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


def load_trials(experiment: str | Path | ExperimentRecords, race: bool = False) -> pd.DataFrame:
    """One row per trial of an experiment's search, in the order the trials started; with
    `race`, the race's rows follow (column rung: 0 for the search, 1, 2, ... for the race).

    The columns are trials.parquet's (see lcp_tune.tune.trials_table): experiment, trial_id,
    trial_number, searcher, seed, status, warm_start, one column per compensation value named
    after its group ("beta:layer1.0.conv1"), val_loss, val_acc, train_loss, flops_ratio,
    params_ratio, step, keep/<group>, started_s, time_total_s, error, then anything else the
    trials reported.
    """
    records = experiment if isinstance(experiment, ExperimentRecords) else open_records(experiment)
    exp = Experiment(records.root)
    if not exp.trials_path.is_file():
        table = write_trials(exp)
    else:
        try:
            table = pd.read_parquet(exp.trials_path, engine="pyarrow")
        except (OSError, ValueError) as exc:
            raise LcpTuneError(f"{exp.trials_path} is not a readable parquet table ({exc}); delete it and "
                               f"run `lcp-tune analyze` again to rebuild it from the search") from None
    rung = table["rung"] if "rung" in table else pd.Series(0, index=table.index)
    if not race:
        table = table[rung.fillna(0) == 0].reset_index(drop=True).infer_objects()
        rung = rung[rung.fillna(0) == 0].reset_index(drop=True)
    # the experiment-level columns follow the folder as it is now (a copied or moved experiment)
    searcher = rung.fillna(0).map(lambda r: records.config.search.searcher if r == 0 else "race")
    return table.assign(experiment=str(records.root), searcher=searcher.values, seed=records.config.seed)


def _read_json(path: Path, notes: list) -> Optional[Any]:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        notes.append(f"{path} could not be read ({exc}); ignored")
        return None
