"""train -> search (2 trials) -> fine-tune -> export -> reload, on tiny files in each real format."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import lcp_tune
from lcp_tune.cli import main
from test_datasets import write_cifar10, write_cub, write_imagenet

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("name, writer, size", [
    ("cifar10", write_cifar10, 32), ("imagenet", write_imagenet, 16), ("cub200", write_cub, 16)])
def test_train_search_finetune_export_reload(name, writer, size, tmp_path, local_ray):
    data_dir = writer(tmp_path / "data")
    common = ["--arch", "resnet20_tiny", "--data", name, "--data-dir", str(data_dir), "--image-size", str(size)]
    base = tmp_path / "base.pt"
    trained = CliRunner().invoke(main, ["train", *common, "--epochs", "1", "--out", str(base)])
    assert trained.exit_code == 0, trained.output

    exp = tmp_path / "exp"
    searched = CliRunner().invoke(main, ["search", *common, "--checkpoint", str(base), "--num-samples", "2",
                                         "--tau-hat", "4", "--finetune-epochs", "1", "--budget", "0.5",
                                         "--quiet", "--out", str(exp)])
    assert searched.exit_code == 0, searched.output
    report = json.loads((exp / "report.json").read_text())
    assert report["num_trials"] == 2 and report["flops_ratio"] <= 0.5
    assert 0 <= report["pruned_test_acc"] <= 1
    # the trials ran on the decoded subsets shipped through the object store, and timed each phase
    trials = pd.read_parquet(exp / "trials.parquet").query("rung == 0")
    assert {"time_prune", "time_bn", "time_steps", "time_val", "time_data"} <= set(trials.columns)
    assert (trials.time_steps > 0).all() and trials.shared_data.all()

    exported = CliRunner().invoke(main, ["export", str(exp), "--format", "torchscript"])
    assert exported.exit_code == 0, exported.output
    model = lcp_tune.load_pruned(exp / "pruned")
    scripted = torch.jit.load(str(next((exp / "export" / "torchscript").glob("*.pt"))))
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(x), scripted(x), atol=1e-4)
    assert model(x).shape == (3, 3 if name != "cifar10" else 10)
