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

from test_finetune_budgets import finished_search
from test_resume import stop_when, trained_base

from lcp_tune.tune.distributed_finetune import checkpointed_epoch as snapshot_epoch


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    exp, data = finished_search(tmp_path_factory.mktemp("workers") / "run", epochs=3)
    config = exp.config()
    base = build_model(config.arch, data.num_classes, data.input_shape[0])
    base.load_state_dict(load_state_dict(exp.base_path))
    return exp, data, build_pruner(config, base, data)


def test_two_workers_fine_tune_a_network_checkpoint_every_epoch_and_never_redo_it(experiment, local_ray):
    from lcp_tune.run.finetune import finetune_many

    exp, data, pruner = experiment
    config = exp.config().replace(finetune_workers=2)
    vectors = {"lcp": pruner.uniform(0.5)}   # (the search test below fine-tunes uniform's)
    pruned = {name: pruner.apply(pruner.plan(v, 0.5)) for name, v in vectors.items()}
    lines: list[str] = []
    first = finetune_many(pruner, vectors, config, data, lines.append, exp.root / "finetune")
    text = "\n".join(lines)
    assert "on 2 Ray Train workers (DistributedDataParallel, gloo)" in text
    assert re.search(r"fine-tune lcp \(2 workers\).*epoch 3/3", text), text
    runs = sorted(p.name for p in (exp.root / "finetune" / "ray").iterdir())
    assert len(runs) == 1 and runs[0].startswith("lcp-") and runs[0].endswith("-w2")
    assert all(snapshot_epoch(exp.root / "finetune" / "ray" / name) == 3 for name in runs)
    for name, (model, result) in first.items():
        # a smaller network of the planned widths, trained (not the pruned start), that learned digits
        assert [m.weight.shape for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == \
               [m.weight.shape for m in pruned[name].modules() if isinstance(m, torch.nn.Conv2d)]
        assert not torch.equal(next(model.parameters()), next(pruned[name].parameters()))
    assert first["lcp"][1]["test_acc"] > 0.8                      # uniform at half the FLOPs keeps digits
    # again: Ray Train finds each run's last checkpoint at the last epoch and nothing is retrained
    lines.clear()
    again = finetune_many(pruner, vectors, config, data, lines.append, exp.root / "finetune")
    assert sum("finished before the interruption" in line for line in lines) == 1, lines
    assert not any("epoch 1/3" in line for line in lines)
    for name in vectors:
        assert again[name][1]["test_acc"] == first[name][1]["test_acc"]
        assert all(torch.equal(a, b) for a, b in zip(again[name][0].state_dict().values(),
                                                      first[name][0].state_dict().values()))


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


def test_a_search_whose_ray_train_fine_tune_is_killed_resumes_at_its_last_finished_epoch(tmp_path):
    """The issue's check: `search --finetune-workers 2`, SIGTERM during the fine-tune, --resume:
    it finishes, and the epochs Ray Train checkpointed before the kill are not run again."""
    epochs = 6
    exp = tmp_path / "exp"
    command = [sys.executable, "-m", "lcp_tune.cli", "search", "--arch", "resnet20_tiny", "--method", "uniform", "--budget", "0.5",
               "--checkpoint", trained_base(tmp_path), "--finetune-epochs", str(epochs), "--finetune-workers", "2", "--device", "cpu",
               "--subset", "0.5", "--out", str(exp)]
    runs = lambda: list((exp / "finetune" / "ray").glob("uniform-*-w2"))  # noqa: E731
    returncode, output = stop_when(command, lambda: runs() and 1 <= snapshot_epoch(runs()[0]) <= epochs - 2,
                                   signal.SIGTERM, timeout=600)
    assert returncode == 143, output
    last = output.strip().splitlines()[-1]
    assert "interrupted by SIGTERM during the run" in last and "--resume" in last, output
    assert not (exp / "report.json").exists() and not (exp / "pruned").exists()
    kept = snapshot_epoch(runs()[0])
    assert 1 <= kept < epochs
    result = CliRunner().invoke(main, ["search", "--resume", str(exp)])
    assert result.exit_code == 0, result.output
    assert f"fine-tune uniform: resumed at epoch {kept + 1}/{epochs} from its Ray Train checkpoint" in result.output
    assert f"epoch {kept}/{epochs}," not in result.output             # the kept epochs did not run again
    assert f"epoch {epochs}/{epochs}" in result.output
    report = json.loads((exp / "report.json").read_text())
    uniform = report["methods"]["uniform"]
    assert uniform["test_acc"] > report["base_test_acc"] + 0.05   # (a 2-epoch base: 74%) it learned, at half the FLOPs
    assert snapshot_epoch(runs()[0]) == epochs
