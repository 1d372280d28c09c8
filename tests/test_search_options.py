"""Search-space presets, the ASHA scheduler and resource checks."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from lcp_tune.cli import main
from lcp_tune.run.settings import dotted, resolve_config
from lcp_tune.search_spaces import PresetError, list_presets, load_preset


def test_shipped_presets_load_and_differ_in_form():
    assert {"lcp", "legr"} <= set(list_presets())
    assert load_preset("lcp")["prune.form"] == "additive"
    assert load_preset("legr")["prune.form"] == "affine"


def test_cli_flags_override_the_preset():
    config = resolve_config(dotted({"space": "legr", "tau_hat": 7}))
    assert config.prune.form == "affine" and config.search.tau_hat == 7 and config.search.space == "legr"
    assert resolve_config(dotted({"space": "lcp"})).search.tau_hat == 100


@pytest.mark.parametrize("text, fragment", [
    ("metric: l2\nform: additive\nbound: 2\ntau_hat: 10\nbn_recalibration: true\n", "missing field 'safeguard'"),
    ("metric: l2\nform: additive\nbound: -1\ntau_hat: 10\nbn_recalibration: true\nsafeguard: 0.1\n",
     "field 'bound' must be in (0, 100]"),
    ("metric: l7\nform: additive\nbound: 2\ntau_hat: 10\nbn_recalibration: true\nsafeguard: 0.1\n",
     "field 'metric' must be one of"),
    ("metric: l2\nform: additive\nbound: 2\ntau_hat: 10\nbn_recalibration: true\nsafeguard: 0.1\nfoo: 1\n",
     "unknown field 'foo'"),
    ("- not a mapping\n", "must be a mapping"),
])
def test_bad_preset_names_the_field(tmp_path, text, fragment):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(PresetError, match=None) as info:
        load_preset(str(path))
    assert fragment in str(info.value)
    result = CliRunner().invoke(main, ["search", "--space", str(path), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and fragment in result.output and "Traceback" not in result.output


def test_user_preset_turns_bn_recalibration_off(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("metric: l1\nform: additive\nbound: 1.5\ntau_hat: 0\nbn_recalibration: false\nsafeguard: 0.2\n")
    config = resolve_config(dotted({"space": str(path)}))
    assert (config.prune.metric, config.search.bound, config.search.tau_hat, config.search.bn_batches,
            config.prune.safeguard) == ("l1", 1.5, 0, 0, 0.2)


@pytest.mark.parametrize("args, fragment", [
    (["--scheduler", "hyperband"], "'hyperband' is not one of 'asha', 'fifo'"),
    (["--space", "nope"], "unknown search-space preset 'nope'"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial must be 0 or more"),
    (["--address", "127.0.0.1:1"], "cannot reach a Ray cluster at --address 127.0.0.1:1"),
])
def test_bad_search_options(tmp_path, args, fragment):
    result = CliRunner().invoke(main, ["search", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code != 0 and fragment in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.ray
def test_gpus_per_trial_on_a_cluster_without_gpu(local_ray):
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.errors import LcpTuneError
    from lcp_tune.tune.cluster import check_cluster

    with pytest.raises(LcpTuneError, match="cluster has none"):
        check_cluster(ExperimentConfig().replace(**{"search.gpus_per_trial": 0.5}))
    with pytest.raises(LcpTuneError, match="more than the 2 CPUs"):
        check_cluster(ExperimentConfig().replace(**{"search.cpus_per_trial": 3}))


@pytest.mark.parametrize("given, device, gpus, side, share", [
    (None, "auto", 0, 32, 0.0),      # no GPU in the cluster: trials on CPU
    (None, "auto", 8, 32, 0.25),     # CIFAR-sized inputs: four trials share a GPU
    (None, "auto", 8, 128, 0.5),
    (None, "auto", 8, 224, 1.0),     # ImageNet: a GPU each
    (None, "cpu", 8, 224, 0.0),      # --device cpu keeps the trials off the GPUs too
    (0.0, "auto", 8, 224, 0.0),      # what the user gave wins
    (0.5, "auto", 8, 32, 0.5),
])
def test_the_default_gpu_share_of_a_trial_follows_the_cluster_and_the_input_size(given, device, gpus, side, share):
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.tune.cluster import trial_gpus

    config = ExperimentConfig().replace(**{"search.gpus_per_trial": given, "device": device})
    assert trial_gpus(config, {"CPU": 16, "GPU": gpus}, side) == share


@pytest.mark.ray
@pytest.mark.slow
def test_asha_stops_a_bad_candidate_early(tmp_path, local_ray):
    """Candidates differ wildly at a tiny budget; ASHA must cut some after their first report."""
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.run.search import run_search_experiment

    config = ExperimentConfig().replace(**{
        "arch": "resnet20_tiny", "prune.budget": 0.15, "search.num_samples": 8, "search.searcher": "random",
        "search.scheduler": "asha", "search.tau_hat": 40, "search.report_every": 10,
        "search.bound": 3.0, "search.bn_batches": 2, "base_train.epochs": 3, "finetune.epochs": 1})
    lines: list[str] = []
    report = run_search_experiment(config, tmp_path / "exp", log=lines.append)
    import pandas as pd

    trials = pd.read_parquet(tmp_path / "exp" / "trials.parquet").query("rung == 0")
    assert len(trials) == 8
    assert (trials["step"] < 40).sum() >= 1           # at least one stopped before all its steps
    assert (trials["step"] == 40).sum() >= 1          # and the best ran them all
    assert any("stopped early" in line for line in lines)
    assert report["methods"]["lcp"]["search_objective"] <= trials.loc[trials["step"] == 40, "val_loss"].min() + 1e-12


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("as_uri", [False, True], ids=["folder", "pyarrow-uri"])
def test_storage_puts_ray_results_in_a_shared_folder(tmp_path, local_ray, as_uri):
    """--storage: Ray Tune's results go to the shared folder or URI; the experiment folder keeps
    the rest, and its trials.parquet is read from that storage: one row per trial."""
    import pandas as pd

    from lcp_tune.config import ExperimentConfig
    from lcp_tune.run.search import RunOptions, run_search_experiment

    config = ExperimentConfig().replace(**{
        "arch": "resnet20_tiny", "prune.budget": 0.4, "search.num_samples": 3, "search.tau_hat": 4,
        "search.report_every": 2, "search.bn_batches": 1, "base_train.epochs": 1, "finetune.epochs": 1})
    shared = tmp_path / "shared"
    storage = shared.as_uri() if as_uri else str(shared)
    report = run_search_experiment(config, tmp_path / "exp", log=lambda s: None,
                                   options=RunOptions(storage=storage))
    assert report["num_trials"] == 3
    assert len(list((shared / "exp" / "search").glob("trial_*/result.json"))) == 3
    assert not (tmp_path / "exp" / "search").exists()
    trials = pd.read_parquet(tmp_path / "exp" / "trials.parquet").query("rung == 0")
    assert len(trials) == 3 and trials["trial_id"].is_unique and trials["val_loss"].notna().all()
    assert list(trials["warm_start"][:2]) == ["identity", "uniform"]
    assert (tmp_path / "exp" / "report.json").is_file()
