"""The pick: the race's finalists and rungs, the fine-tune that continues the candidate as measured,
and uniform widths under another channel metric."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from lcp_tune.candidate import CandidateEvaluator
from lcp_tune.config import ExperimentConfig, TrainConfig
from lcp_tune.data import load_experiment_data
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.pruning import Pruner
from lcp_tune.run.finetune import finetune_many, recovery_steps
from lcp_tune.run.finetune import test_accuracy as accuracy_on_test
from lcp_tune.run.validate import validate_config
from lcp_tune.testing import assert_one_line_error
from lcp_tune.training import evaluate, fit
from lcp_tune.tune.race import Candidate, finalists


def config(**changes) -> ExperimentConfig:
    base = {"arch": "resnet20_tiny", "prune.budget": 0.4, "search.num_samples": 4, "search.tau_hat": 10,
            "search.bn_batches": 2, "finetune.epochs": 1, "search.race": (2.0, 4.0)}
    base.update(changes)
    return ExperimentConfig().replace(**base)


def test_finalists_are_the_warm_starts_then_the_best_distinct_trials():
    warm = [Candidate("uniform", (0.0, 1.0)), Candidate("uniform/group_l2", (0.0, 1.0), "group_l2")]
    rows = [(np.array([0.0, 1.0]), 0.1),      # the same point as uniform: not entered twice
            (np.array([0.5, 0.5]), 0.3), (np.array([2.0, 2.0]), float("nan")),   # no score: never
            (np.array([1.0, 0.0]), 0.2), (np.array([3.0, 0.0]), 0.9)]
    chosen = finalists(rows, warm, 4)
    assert [c.name for c in chosen] == ["uniform", "uniform/group_l2", "search #2", "search #3"]  # by rank on the search
    assert chosen[2].vector == (1.0, 0.0) and chosen[2].objective == 0.2
    # the warm starts and the search's best enter even when they exceed the count
    assert [c.name for c in finalists(rows, warm, 1)] == ["uniform", "uniform/group_l2", "search #2"]


def test_uniform_widths_under_another_metric_keep_other_channels_at_the_same_cost():
    torch.manual_seed(0)
    model = build_model("resnet20_tiny", 10, 1)
    pruner = Pruner(model, (1, 8, 8))
    other = pruner.with_metric("group_l2")
    a = pruner.plan(pruner.uniform(0.4), 0.4)
    b = other.plan(other.uniform(0.4), 0.4)
    assert a.keep_counts.tolist() == b.keep_counts.tolist() and a.flops == b.flops
    assert a.kept != b.kept                       # the same widths, other channels
    assert pruner.metric_name == "l2" and other.metric_name == "group_l2"
    pruned = other.apply(b)
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_a_fine_tune_keeps_its_start_when_no_epoch_beats_it():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    y = (x[:, 0] > 0).long()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    fit(net, data, TrainConfig(epochs=4, lr=0.5, warmup=False), val=data)   # a good start
    start = {k: v.clone() for k, v in net.state_dict().items()}
    before = evaluate(net, data)
    fit(net, data, TrainConfig(epochs=2, lr=1e4, warmup=False), val=data)   # every epoch diverges
    assert all(torch.equal(start[k], v) for k, v in net.state_dict().items())
    assert evaluate(net, data).accuracy == before.accuracy


def test_the_final_fine_tune_continues_the_recovered_candidate():
    cfg = config(**{"finetune": TrainConfig(epochs=1, lr=1e4, warmup=False, batch_size=64)})   # diverges
    data = load_experiment_data(cfg)
    torch.manual_seed(0)
    base = build_model(cfg.arch, data.num_classes, data.input_shape[0])
    fit(base, data.loader("train", 64, shuffle=True, seed=0), TrainConfig(epochs=3, lr=0.1))
    pruner = Pruner(base, data.input_shape)
    vector = pruner.uniform(0.4)
    evaluator = CandidateEvaluator(cfg, data=data, pruner=pruner)
    evaluator.evaluate(vector, steps=recovery_steps(cfg))
    assert recovery_steps(cfg) == 40   # the race's last rung: 4 x tau_hat
    start = evaluator.last_model.cpu()
    recovered = accuracy_on_test(start, data).accuracy
    (model, result), = finetune_many(pruner, {"lcp": vector}, cfg, data, starts={"lcp": (start, evaluator.last_plan)}).values()
    assert result["test_acc"] == recovered          # the start was kept: never below it
    assert model is start                           # the recovered network itself, not a fresh prune
    # without the start, the fresh prune's (diverged) fine-tune is another network
    (_, fresh), = finetune_many(pruner, {"lcp": vector}, cfg, data).values()
    assert fresh["test_acc"] != recovered


@pytest.mark.parametrize("changes, fragment", [
    ({"search.race": (3.0, 2.0)}, "--race 3 2: each rung must recover longer"),
    ({"search.race": (1.0,)}, "above 1"),
    ({"search.race": (float("inf"),)}, "--race inf"),
    ({"search.finalists": 9}, "--finalists 9 is more than the search's 4 trials"),
])
def test_race_settings_that_cannot_be_met_are_refused(changes, fragment):
    with pytest.raises(LcpTuneError, match=fragment.replace("(", r"\(")):
        validate_config(config(**changes))


def test_no_race_without_a_recovery_or_without_a_search():
    assert config(**{"search.tau_hat": 0}).search.race_steps() == ()
    validate_config(config(method="uniform", **{"search.race": (3.0, 2.0)}))   # no search: nothing to race
    assert recovery_steps(config(method="uniform")) == 10 and recovery_steps(config()) == 40
    assert config(**{"search.num_samples": 3}).search.race_finalists() == 3


def test_the_cli_refuses_a_race_before_any_work(tmp_path):
    from lcp_tune.cli import main

    result = CliRunner().invoke(main, ["search", "--race", "4", "2", "--out", str(tmp_path / "exp")])
    assert_one_line_error(result, "--race 4 2", "longer than the one before")
    assert not (tmp_path / "exp").exists()
    result = CliRunner().invoke(main, ["search", "--num-samples", "3", "--race", "3", "6", "--finalists", "5",
                                       "--out", str(tmp_path / "e")])
    assert_one_line_error(result, "--finalists 5", "at most 3")


@pytest.mark.ray
@pytest.mark.slow
def test_a_search_races_its_finalists_and_records_every_rung(tmp_path, local_ray):
    from lcp_tune.run.search import run_search_experiment

    lines: list[str] = []
    cfg = config(**{"base_train.epochs": 3})
    report = run_search_experiment(cfg, tmp_path / "exp", log=lines.append)
    race = report["race"]
    assert [r["steps"] for r in race["rungs"]] == [20, 40]
    assert [r["candidates"] for r in race["rungs"]] == [4, 2]   # min(6, 4 trials) finalists, halved
    trials = pd.read_parquet(tmp_path / "exp" / "trials.parquet")
    assert (trials.rung == 0).sum() == 4
    rung1, rung2 = trials[trials.rung == 1], trials[trials.rung == 2]
    assert set(rung1.candidate) >= {"uniform", "global", "uniform/group_l2"}   # warm starts always race
    assert len(rung1) == 4 and len(rung2) == 2 and set(rung2.candidate) <= set(rung1.candidate)
    # rung 2 holds the better half of rung 1, and the pick is rung 2's best
    assert set(rung2.candidate) == set(rung1.nsmallest(2, "val_loss").candidate)
    assert race["pick"] == rung2.loc[rung2.val_loss.idxmin(), "candidate"]
    assert report["methods"]["lcp"]["pick"] == race["pick"]
    record = json.loads((tmp_path / "exp" / "compensation.json").read_text())
    assert record["metric"] == ("group_l2" if race["pick"] == "uniform/group_l2" else "l2")
    for name in ("lcp", "global", "uniform"):
        m = report["methods"][name]
        assert m["recovery_steps"] == 40 and m["search_objective"] > 0
    assert any(line.startswith("race rung 2: 2 candidates, 40 recovery steps") for line in lines)
    from lcp_tune.analysis.trials import load_trials
    assert len(load_trials(tmp_path / "exp")) == 4 and len(load_trials(tmp_path / "exp", race=True)) == 10
