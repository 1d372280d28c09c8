"""A real (small) Ray Tune search end to end: experiment folder, report, warm starts, cache."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import lcp_tune
from lcp_tune.config import ExperimentConfig
from lcp_tune.run.search import run_search_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def tiny_config(**changes) -> ExperimentConfig:
    base = {"arch": "resnet20_tiny", "prune.budget": 0.4, "search.num_samples": 4,
            "search.tau_hat": 10, "search.report_every": 5, "search.bn_batches": 2,
            "base_train.epochs": 3, "finetune.epochs": 2}
    base.update(changes)
    return ExperimentConfig().replace(**base)


def test_four_trial_search_writes_experiment_and_report(tmp_path, local_ray):
    lines = []
    run_search_experiment(tiny_config(), tmp_path / "exp", log=lines.append)
    exp = tmp_path / "exp"
    for name in ("config.yaml", "base.pt", "compensation.json", "report.json", "trials.parquet",
                 "pruned/plan.json", "pruned/model.pt"):
        assert (exp / name).is_file(), name
    assert (exp / "search").is_dir()
    saved = json.loads((exp / "report.json").read_text())
    assert saved["num_trials"] == 4 and saved["failed_trials"] == 0
    from lcp_tune.data import load_data
    assert saved["test_images"] == len(load_data("digits").test)
    for method in ("lcp", "global", "uniform"):
        m = saved["methods"][method]
        assert 0.0 <= m["test_acc"] <= 1.0
        assert m["flops_ratio"] <= 0.4 + 1e-9
        assert abs(m["gap"] - (saved["base_test_acc"] - m["test_acc"])) < 1e-9
    # the learned candidate is never worse on the search objective than its warm starts (up to the
    # float noise between a one-thread trial and the driver re-scoring the warm starts)
    assert saved["methods"]["lcp"]["search_objective"] <= saved["methods"]["global"]["search_objective"] + 1e-6
    assert saved["methods"]["lcp"]["search_objective"] <= saved["methods"]["uniform"]["search_objective"] + 1e-6
    assert any("lcp-tune report" in line for line in lines)
    assert sum("val loss" in line for line in lines) == 4   # one progress line per trial
    assert not any(line.startswith("race") for line in lines)   # no race unless asked (--race)

    trials = pd.read_parquet(exp / "trials.parquet").query("rung == 0")
    assert len(trials) == 4
    keys = [c for c in trials.columns if c.startswith("beta:")]   # named per channel group
    assert len(keys) == 12 and trials["status"].eq("finished").all()
    identity_rows = trials[(trials[keys].abs() < 1e-12).all(axis=1)]
    assert len(identity_rows) == 1          # plain global ranking was evaluated ...
    ordered = trials.sort_values("trial_number")
    assert ordered.iloc[0]["warm_start"] == "identity"        # ... and it was the first trial
    assert (ordered.filter(like="beta:").iloc[0].abs() < 1e-12).all()
    assert {"val_loss", "val_acc", "flops_ratio", "params_ratio"} <= set(trials.columns)
    assert any(c.startswith("keep/") for c in trials.columns)

    model = lcp_tune.load_pruned(exp / "pruned")   # rebuilt from plan + state_dict
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    values = json.loads((exp / "compensation.json").read_text())["values"]
    assert len(values) == 12 and all(k.startswith("beta:") for k in values)

    # a second run with the same settings reuses the cached base model
    lines2 = []
    run_search_experiment(tiny_config(**{"search.num_samples": 2}), tmp_path / "exp2", log=lines2.append)
    assert any("reusing cached base model" in line for line in lines2)
    assert not any("training base model" in line for line in lines2)


def test_experiment_folder_of_another_run_is_refused(tmp_path, local_ray):
    from lcp_tune.store.experiment import open_experiment
    from lcp_tune.errors import LcpTuneError

    open_experiment(tmp_path / "exp", tiny_config())
    with pytest.raises(LcpTuneError, match="belongs to another run"):
        open_experiment(tmp_path / "exp", tiny_config(**{"prune.budget": 0.3}))


def test_search_centred_on_uniform_pruning(tmp_path, local_ray):
    """--center uniform: the searched values are shifts from uniform pruning (its warm start is
    all zeros in trials.parquet), while compensation.json holds the whole compensation."""
    import numpy as np

    exp = tmp_path / "exp"
    report = run_search_experiment(tiny_config(**{"search.center": "uniform"}), exp, log=lambda s: None)
    trials = pd.read_parquet(exp / "trials.parquet").query("rung == 0").sort_values("trial_number")
    keys = [c for c in trials.columns if c.startswith("beta:")]
    assert list(trials["warm_start"][:2]) == ["identity", "uniform"]
    assert (trials[keys].iloc[1].abs() < 1e-12).all()          # uniform = the origin of the box
    assert not (trials[keys].iloc[0].abs() < 1e-12).all()      # global ranking = minus the centre
    lcp, uniform = report["methods"]["lcp"], report["methods"]["uniform"]
    assert lcp["search_objective"] <= uniform["search_objective"] + 1e-6   # trial vs driver threads
    centre = -trials[keys].iloc[0].to_numpy(dtype=float)      # identity is all zeros
    best = trials.loc[trials["val_loss"].idxmin()]
    saved = json.loads((exp / "compensation.json").read_text())["values"]
    assert np.allclose([saved[k.removeprefix("beta:")] if k not in saved else saved[k] for k in keys],
                       best[keys].to_numpy(dtype=float) + centre)   # the whole compensation, not the shift
    assert abs(lcp["flops_ratio"] - 0.4) <= 0.005
