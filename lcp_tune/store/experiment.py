"""The experiment folder: one place for everything a user needs to resume, analyse or reuse a run.

    EXPERIMENT/
      config.yaml        resolved settings       base.pt            base weights (state_dict)
      search/            Ray Tune results        compensation.json  the learned compensation
      pruned/            plan.json + model.pt    report.json        final numbers
      trials.parquet     one row per trial
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcp_tune.config import ExperimentConfig
from lcp_tune.errors import LcpTuneError


from .config_file import load_config, save_config
from .files import read_json, write_json
from .lock import LOCK_NAME

# Fields that say how a run is executed, not what it computes: a reopened folder may differ in them.
HOW_FIELDS = ("data_dir", "workers", "search.cpus_per_trial", "search.gpus_per_trial", "search.max_concurrent",
              "search.max_failures")


@dataclass(frozen=True)
class Experiment:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def base_path(self) -> Path:
        return self.root / "base.pt"

    @property
    def search_dir(self) -> Path:
        return self.root / "search"

    @property
    def compensation_path(self) -> Path:
        return self.root / "compensation.json"

    @property
    def pruned_dir(self) -> Path:
        return self.root / "pruned"

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    @property
    def trials_path(self) -> Path:
        return self.root / "trials.parquet"

    @property
    def run_path(self) -> Path:
        """run.json: where the search is stored and the names of its flat keys."""
        return self.root / "run.json"

    def run_record(self) -> dict[str, Any]:
        """run.json's contents: {"storage": URI or folder or None, "search_keys": {c000: name}}."""
        return read_json(self.run_path) if self.run_path.is_file() else {}

    def search_storage(self) -> str:
        """Ray Tune's storage_path for this experiment: --storage if one was given, else the folder."""
        return self.run_record().get("storage") or str(self.root.resolve())

    def search_path(self) -> str:
        """Where Ray Tune keeps this experiment's search (a folder or a URI)."""
        return f"{self.search_storage().rstrip('/')}/search"

    def is_experiment(self) -> bool:
        return self.config_path.is_file()

    def config(self) -> ExperimentConfig:
        if not self.is_experiment():
            raise LcpTuneError(f"{self.root} is not an lcp-tune experiment folder (no config.yaml)")
        return load_config(self.config_path)


def new_experiment_path(base: Path = Path("lcp-runs"), prefix: str = "search") -> Path:
    """A fresh folder name under ./lcp-runs/, timestamped so runs sort by age."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{prefix}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{prefix}-{stamp}-{n}"
    return path


def _get(config: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


def check_same_run(root: Path, old: ExperimentConfig, asked: dict[str, Any]) -> None:
    """Refuse a folder whose run differs from `asked` ({"prune.budget": 0.3, ...}) in any field."""
    recorded = old.to_dict()
    for name, value in asked.items():
        if value is not None and _get(recorded, name) != value:
            raise LcpTuneError(f"experiment folder {root} belongs to another run ({name} = "
                               f"{_get(recorded, name)!r}, asked {value!r}); choose another folder")


def check_can_open(root: Path, config: ExperimentConfig) -> Experiment:
    """Refuse, without writing anything, a folder `config`'s run cannot be written into."""
    exp = Experiment(Path(root))
    if exp.root.exists() and not exp.root.is_dir():
        raise LcpTuneError(f"--out {root} is a file, not a folder; choose another --out")
    if exp.is_experiment():
        new = config.flat()
        check_same_run(root, exp.config(), {k: v for k, v in new.items() if k not in HOW_FIELDS})
    elif exp.root.exists() and any(p.name != LOCK_NAME for p in exp.root.iterdir()):
        raise LcpTuneError(f"output folder {root} exists and is not an lcp-tune experiment; choose another --out")
    return exp


def open_experiment(root: Path, config: ExperimentConfig) -> Experiment:
    """Create the folder for `config`, or reopen it if it holds the same run.

    A folder holding another run (any setting that changes what is computed: arch, data, seed,
    budget, tau_hat, searcher, ...) is refused, naming the setting, rather than mixed; a
    non-empty folder that is not an experiment, a file or an unwritable place is refused too.
    """
    exp = check_can_open(root, config)
    if exp.is_experiment():
        return exp   # the same run: its config.yaml stays as it was written
    try:
        exp.root.mkdir(parents=True, exist_ok=True)
        save_config(config, exp.config_path)
        _sign_config(exp, config)
    except OSError as exc:
        raise LcpTuneError(f"--out {root} cannot be written ({exc.strerror or exc}); choose another --out") from None
    return exp



SIGNED_CONFIG = ".lcp-config.json"   # the config a run started with, signed: config.yaml stays editable


def _sign_config(exp: Experiment, config: ExperimentConfig) -> None:
    from .signing import sign_json

    value = json.loads(json.dumps(config.to_dict()))   # tuples as lists, as read back
    write_json(exp.root / SIGNED_CONFIG, {"config": value, "mac": sign_json(value)})


def check_config_unedited(exp: Experiment, config: ExperimentConfig) -> None:
    """Refuse a config.yaml edited since its run started (a resume would mix two runs' trials),
    naming the first setting that differs. Folders written before signed configs are let be."""
    from .signing import signed_by_us

    path = exp.root / SIGNED_CONFIG
    if not path.is_file():
        return
    try:
        record = json.loads(path.read_text())
        started = ExperimentConfig.from_dict(record["config"])
        ours = signed_by_us(record["config"], record["mac"])
    except (OSError, ValueError, KeyError, TypeError, LcpTuneError):
        ours = False
    if not ours:
        raise LcpTuneError(f"cannot resume {exp.root}: {path.name} is not signed by this machine's lcp-tune key "
                           f"(damaged, or the folder was started elsewhere); start a new run with --out")
    now, then = config.flat(), started.flat()
    for key in then:
        if key not in HOW_FIELDS and now.get(key) != then[key]:   # where the data is, threads: may change
            raise LcpTuneError(f"cannot resume {exp.root}: config.yaml was edited after the run started: "
                               f"{key} is {now.get(key)!r}, the run started with {then[key]!r}; put it back, or "
                               f"start a new run with --out")
