"""The experiment folder and every file lcp-tune keeps: atomic JSON/YAML writes, state_dicts
(loaded with weights_only=True), the compensation file and pruned models (plan + weights)."""
from .experiment import Experiment, check_same_run, new_experiment_path, open_experiment
from .files import atomic_path, atomic_write, read_json, write_json

__all__ = ["Experiment", "atomic_path", "atomic_write", "check_same_run", "new_experiment_path",
           "open_experiment", "read_json", "write_json"]
