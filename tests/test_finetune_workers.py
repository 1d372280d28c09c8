"""`--finetune-workers N`: the final fine-tunes on Ray Train (DistributedDataParallel over gloo
here), checkpointed by Ray Train every epoch, resumed after a kill, several at once when the
cluster fits them; one worker is the plain in-process fine-tune."""
from __future__ import annotations

import json
import re
import signal
import sys

import pytest
import torch
from click.testing import CliRunner

from lcp_tune.candidate import build_pruner
from lcp_tune.cli import main
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.store.checkpoints import load_state_dict
from lcp_tune.testing import assert_one_line_error

from test_resume import stop_when, trained_base

from lcp_tune.tune.distributed_finetune import checkpointed_epoch as snapshot_epoch


def test_more_workers_than_the_cluster_has_are_refused_before_any_work():
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.tune.distributed_finetune import check_finetune_resources

    config = ExperimentConfig().replace(finetune_workers=3, device="cpu")
    with pytest.raises(LcpTuneError, match=r"--finetune-workers 3 .* needs 3 CPUs; the Ray cluster has 2 CPUs"):
        check_finetune_resources(config, {"CPU": 2})
    check_finetune_resources(config, {"CPU": 3})
    check_finetune_resources(config.replace(finetune_workers=1), {"CPU": 0})   # in-process: no Ray needed


def test_the_search_command_refuses_workers_this_machine_cannot_host(tmp_path):
    import os

    workers = (os.cpu_count() or 1) + 1
    result = CliRunner().invoke(main, ["search", "--finetune-workers", str(workers), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert_one_line_error(result, f"--finetune-workers {workers}", "CPUs")
    assert not (tmp_path / "x").exists()
    result = CliRunner().invoke(main, ["search", "--finetune-workers", "0"])
    assert result.exit_code != 0 and "--finetune-workers" in result.output and "Traceback" not in result.output


def test_a_search_whose_ray_train_fine_tune_is_killed_resumes_at_its_last_finished_epoch(tmp_path, local_ray):
    """The issue's check: `search --finetune-workers 2`, SIGTERM during the fine-tune, --resume:
    it finishes, and the epochs Ray Train checkpointed before the kill are not run again. Then the
    same fine-tune asked again finds its run at the last epoch and trains nothing."""
    import lcp_tune
    from lcp_tune.data import load_experiment_data
    from lcp_tune.run.finetune import finetune_many
    from lcp_tune.store.experiment import Experiment

    epochs = 6
    exp = tmp_path / "exp"
    command = [sys.executable, "-m", "lcp_tune.cli", "search", "--arch", "resnet20_tiny", "--method", "uniform", "--budget", "0.5",
               "--checkpoint", trained_base(tmp_path), "--finetune-epochs", str(epochs), "--finetune-workers", "2", "--device", "cpu",
               "--subset", "0.5", "--out", str(exp)]
    runs = lambda: list((exp / "finetune" / "ray").glob("uniform-*-w2"))  # noqa: E731
    returncode, output = stop_when(command, lambda: runs() and 1 <= snapshot_epoch(runs()[0]) <= epochs - 2,
                                   signal.SIGTERM, timeout=600)
    assert returncode == 143, output
    assert "on 2 Ray Train workers (DistributedDataParallel, gloo)" in output
    last = output.strip().splitlines()[-1]
    assert "interrupted by SIGTERM during the run" in last and "--resume" in last, output
    assert not (exp / "report.json").exists() and not (exp / "pruned").exists()
    kept = snapshot_epoch(runs()[0])
    assert 1 <= kept < epochs
    result = CliRunner().invoke(main, ["search", "--resume", str(exp)])
    assert result.exit_code == 0, result.output
    assert f"fine-tune uniform: resumed at epoch {kept + 1}/{epochs} from its Ray Train checkpoint" in result.output
    assert f"epoch {kept}/{epochs}," not in result.output             # the kept epochs did not run again
    assert re.search(rf"fine-tune uniform \(2 workers\).*epoch {epochs}/{epochs}", result.output), result.output
    report = json.loads((exp / "report.json").read_text())
    uniform = report["methods"]["uniform"]
    assert uniform["test_acc"] > report["base_test_acc"] + 0.05   # (a 2-epoch base: 74%) it learned, at half the FLOPs
    assert len(runs()) == 1 and snapshot_epoch(runs()[0]) == epochs

    # the same fine-tune again: Ray Train finds the run's checkpoint at the last epoch, nothing is
    # retrained, and the network is the one the search saved (a smaller network of planned widths)
    config = Experiment(exp).config()
    data = load_experiment_data(config)
    base = build_model(config.arch, data.num_classes, data.input_shape[0])
    base.load_state_dict(load_state_dict(exp / "base.pt"))
    pruner = build_pruner(config, base, data)
    vector = pruner.uniform(0.5)
    lines: list[str] = []
    # the search fine-tuned the candidate as recovered; re-derived the same way, it is the same run
    from lcp_tune.run.finetune_budgets import recovered_at
    starts = recovered_at(config, data, pruner, vector, {"uniform": 0.5})
    again = finetune_many(pruner, {"uniform": vector}, config, data, lines.append, exp / "finetune", starts=starts)
    assert sum("finished before the interruption" in line for line in lines) == 1, lines
    assert not any("epoch 1/" in line for line in lines)
    model, result = again["uniform"]
    assert result["test_acc"] == uniform["test_acc"]
    saved = lcp_tune.load_pruned(exp / "pruned")
    planned = pruner.apply(pruner.plan(vector, 0.5))
    shapes = lambda m: [c.weight.shape for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert shapes(model) == shapes(saved) == shapes(planned) != shapes(base)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved.state_dict().values()))
