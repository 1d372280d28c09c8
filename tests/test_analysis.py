"""Analysis of a real (small) search: trials table, parquet, plots drawn from the data, reports.

One search runs per module; the bad-input cases are copies of its folder, edited.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from lcp_tune.analysis import load_trials, write_analysis
from lcp_tune.analysis import plots as plots_module
from lcp_tune.cli.analyze import analyze
from lcp_tune.config import ExperimentConfig
from lcp_tune.errors import LcpTuneError
from lcp_tune.run.search import run_search_experiment
from lcp_tune.testing import assert_one_line_error

pytestmark = [pytest.mark.ray, pytest.mark.slow]
NUM_TRIALS = 5


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, local_ray):
    """A finished 5-trial search (two reports per trial) in a folder no test writes to."""
    config = ExperimentConfig().replace(**{
        "arch": "resnet20_tiny", "prune.budget": 0.4, "search.num_samples": NUM_TRIALS,
        "search.tau_hat": 10, "search.report_every": 5, "search.bn_batches": 2,
        "base_train.epochs": 3, "finetune.epochs": 1, "search.race": (2.0, 4.0)})   # the race's rows too
    root = tmp_path_factory.mktemp("analysis") / "exp"
    run_search_experiment(config, root, log=lambda line: None)
    return root


@pytest.fixture()
def copy_of(experiment, tmp_path):
    def make(name: str):
        return shutil.copytree(experiment, tmp_path / name)
    return make


def edit_config(folder, **changes):
    path = folder / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition(".")
        (config[section] if section else config)[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))




def test_one_row_per_trial_with_named_columns(experiment):
    trials = load_trials(experiment)
    folders = sorted(p.name.removeprefix("trial_") for p in (experiment / "search").glob("trial_*"))
    assert len(trials) == NUM_TRIALS and sorted(trials["trial_id"]) == folders
    assert list(trials["trial_number"]) == list(range(1, NUM_TRIALS + 1))
    compensation = json.loads((experiment / "compensation.json").read_text())["values"]
    groups = [name.removeprefix("beta:") for name in compensation]
    expected = ({"experiment", "trial_id", "trial_number", "searcher", "seed", "status", "warm_start",
                 "val_loss", "val_acc", "flops_ratio", "params_ratio", "step", "started_s", "time_total_s"}
                | set(compensation) | {f"keep/{g}" for g in groups})
    assert expected <= set(trials.columns)
    assert not any(c.startswith("config/") for c in trials.columns)   # c000.. named after groups
    assert set(trials["status"]) == {"finished"} and set(trials["searcher"]) == {"tpe"}
    assert (trials["time_total_s"] > 0).all() and (trials["step"] == 10).all()

    # identity first, then uniform; the best trial's values are the saved compensation
    identity = trials[trials["warm_start"] == "identity"]
    assert list(identity["trial_number"]) == [1]
    assert np.allclose(identity[list(compensation)].to_numpy(), 0.0)
    assert list(trials.loc[trials["warm_start"] == "uniform", "trial_number"]) == [2]
    # the search's best trial races; the saved compensation is the race's pick, the best of its last rung
    best = trials.loc[trials["val_loss"].idxmin()]
    race = load_trials(experiment, race=True)
    rung1 = race[race["rung"] == 1]
    assert any(np.allclose(best[list(compensation)].astype(float), row[list(compensation)].astype(float))
               for _, row in rung1.iterrows())
    last = race[race["rung"] == race["rung"].max()]
    pick = last.loc[last["val_loss"].idxmin()]
    assert np.allclose(pick[list(compensation)].astype(float), list(compensation.values()))

    # the same numbers as Ray's own table of last results
    ray_table = pd.read_parquet(experiment / "trials.parquet")
    ray_table = ray_table[ray_table["rung"] == 0].set_index("trial_id")
    mine = trials.set_index("trial_id")
    for col in ("val_loss", "val_acc", "flops_ratio", f"keep/{groups[-1]}"):
        assert np.allclose(mine.loc[ray_table.index, col].astype(float), ray_table[col].astype(float)), col


@pytest.fixture(scope="module")
def analysed(experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_analysis([experiment], out)


def test_parquet_reads_back_equal(experiment, analysed):
    back = pd.read_parquet(analysed.out / "trials.parquet", engine="pyarrow")
    pd.testing.assert_frame_equal(back, analysed.trials)
    pd.testing.assert_frame_equal(back, load_trials(experiment))


def test_each_plot_exists_and_shows_the_dataframe(experiment, analysed):
    trials = analysed.trials.sort_values("trial_number")
    label = experiment.name
    assert set(analysed.plots) == {"best_so_far", "loss_vs_flops", "compensation", "keep_fractions",
                                   "accuracy_vs_cost"}
    for path in analysed.plots.values():
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({path.relative_to(analysed.out)})" in analysed.report.read_text()

    curve = analysed.plotted["best_so_far"][label]
    assert np.allclose(curve["best_so_far"], trials["val_loss"].cummin())
    assert list(curve.index) == list(trials["trial_number"])
    points = analysed.plotted["loss_vs_flops"][label]
    assert np.allclose(points["val_loss"], trials["val_loss"])
    assert np.allclose(points["flops_ratio"], trials["flops_ratio"])
    values = json.loads((experiment / "compensation.json").read_text())["values"]
    drawn = analysed.plotted["compensation"][label]
    assert list(drawn.index) == list(values) and np.allclose(drawn, list(values.values()))

    report = json.loads((experiment / "report.json").read_text())
    plan = json.loads((experiment / "pruned" / "plan.json").read_text())["plan"]
    sizes = dict(zip(plan["group_names"], plan["group_sizes"]))
    fractions = analysed.plotted["keep_fractions"]
    for method, column in (("lcp", "best (LCP)"), ("global", "identity (global ranking)"), ("uniform", "uniform")):
        keep = report["methods"][method]["keep"]
        assert np.allclose(fractions[column], [keep[g] / sizes[g] for g in fractions.index])

    costs = analysed.plotted["accuracy_vs_cost"].set_index("method")   # every method, timed against the base
    assert set(costs.index) == set(report["methods"])
    for method, m in report["methods"].items():
        assert costs.loc[method, "test_acc"] == m["test_acc"] and costs.loc[method, "flops_ratio"] == m["flops_ratio"]
        assert costs.loc[method, "measured_latency_ratio"] == m["measured_latency_ratio"] > 0


def test_plotted_artists_equal_the_returned_data(experiment, tmp_path, monkeypatch):
    """Not only the returned data: the lines, points and bars in the figure are the DataFrame's."""
    drawn = {}
    save = plots_module._save
    monkeypatch.setattr(plots_module, "_save", lambda fig, path: (drawn.__setitem__(path.stem, fig.axes[0]),
                                                                 save(fig, path)))
    trials = load_trials(experiment).sort_values("trial_number")
    frames = {"exp": trials}
    plots_module.plot_best_so_far(frames, tmp_path / "best.png")
    assert np.allclose(drawn["best"].lines[0].get_ydata(), trials["val_loss"].cummin())
    plots_module.plot_loss_vs_flops(frames, tmp_path / "scatter.png")
    assert np.allclose(drawn["scatter"].collections[0].get_offsets(), trials[["flops_ratio", "val_loss"]])
    values = plots_module.plot_compensation(frames, tmp_path / "comp.png")
    assert np.allclose([bar.get_height() for bar in drawn["comp"].patches], values["exp"])


def test_comparison_of_two_searchers_makes_one_report(experiment, copy_of, tmp_path):
    other = copy_of("random-seed1")
    edit_config(other, **{"search.searcher": "random", "seed": 1})
    result = write_analysis([experiment, other], tmp_path / "compare")
    assert result.problems == []
    back = pd.read_parquet(tmp_path / "compare" / "trials.parquet")
    assert len(back) == 2 * NUM_TRIALS
    assert back.groupby("searcher")["seed"].first().to_dict() == {"random": 1, "tpe": 0}
    assert set(result.plotted["best_so_far"]) == {experiment.name, "random-seed1"}   # one line each
    text = result.report.read_text()
    assert "## Comparison" in text and "random-seed1" in text and "| random | 1 |" in text
    assert (tmp_path / "compare" / "plots" / "keep_fractions_random-seed1.png").is_file()


def test_analyze_command_writes_into_the_experiment(copy_of):
    folder = copy_of("exp")
    result = CliRunner().invoke(analyze, [str(folder)])
    assert result.exit_code == 0, result.output
    for name in ("analysis.md", "trials.parquet", "plots/best_so_far.png", "plots/keep_fractions.png",
                 "plots/loss_vs_flops.png", "plots/compensation.png"):
        assert (folder / name).is_file(), name


def test_folder_that_is_not_an_experiment_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(CliRunner().invoke(analyze, [str(tmp_path / "empty")]),
                          "is not an lcp-tune experiment folder", "empty")
    assert list((tmp_path / "empty").iterdir()) == []   # nothing written
    assert_one_line_error(CliRunner().invoke(analyze, [str(tmp_path / "missing")]), "does not exist")
    with pytest.raises(LcpTuneError, match="not an lcp-tune experiment"):
        load_trials(tmp_path / "empty")


def test_experiment_without_finished_trial_says_so_and_writes_what_exists(copy_of):
    folder = copy_of("failed")
    for name in ("report.json", "compensation.json", "trials.parquet", "race.json"):
        (folder / name).unlink()
    shutil.rmtree(folder / "pruned")
    for state in (folder / "search").glob("experiment_state-*.json"):
        state.unlink()   # a search killed before Ray saved its state
    for trial in (folder / "search").glob("trial_*"):
        (trial / "result.json").write_text("")
        (trial / "error.txt").write_text("Traceback (most recent call last):\nRuntimeError: out of memory\n")
    result = CliRunner().invoke(analyze, [str(folder)])
    # Ray Tune's record of the search (its state file) is the table's only source: none, no rows
    assert_one_line_error(result, "failed has no finished trial", "no trials recorded")
    assert len(pd.read_parquet(folder / "trials.parquet")) == 0
    assert "No finished trial" in (folder / "analysis.md").read_text()


def test_different_architectures_compare_what_is_comparable(experiment, copy_of, tmp_path):
    same, other = copy_of("same-arch"), copy_of("other-arch")
    edit_config(other, arch="resnet20")
    out = tmp_path / "compare"
    result = CliRunner().invoke(analyze, [str(experiment), str(same), str(other), "--out", str(out)])
    assert_one_line_error(result, "other-arch", "not comparable", "arch 'resnet20' vs 'resnet20_tiny'")
    text = (out / "analysis.md").read_text()
    assert "Group 1: resnet20_tiny" in text and "Group 2: resnet20 on" in text
    assert (out / "plots" / "best_so_far.png").is_file() and (out / "plots" / "best_so_far_2.png").is_file()
    assert len(pd.read_parquet(out / "trials.parquet")) == 3 * NUM_TRIALS
