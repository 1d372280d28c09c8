"""`lcp-tune finetune EXPERIMENT --budgets ...`: learn once, fine-tune many, from a finished search."""
from __future__ import annotations

import json
import re
import signal
import sys

import pytest
import torch
from click.testing import CliRunner

from lcp_tune import load_pruned
from lcp_tune.candidate import build_pruner
from lcp_tune.cli import main
from lcp_tune.config import ExperimentConfig
from lcp_tune.data import load_experiment_data
from lcp_tune.pruning import measure_cost
from lcp_tune.run.base_model import train_base
from lcp_tune.store.checkpoints import file_hash, save_state_dict
from lcp_tune.store.compensation_file import write_compensation
from lcp_tune.store.experiment import open_experiment
from lcp_tune.store.files import write_json
from lcp_tune.store.pruned_io import save_pruned
from lcp_tune.testing import assert_ends_in_error_line, assert_one_line_error

ARCH = "resnet20_tiny"


def finished_search(root, report: bool = True, epochs: int = 2):
    """An experiment folder as a finished search at budget 0.5 leaves it: base.pt,
    compensation.json (a learned vector: uniform's at 0.5, not the identity), pruned/ and
    report.json."""
    config = ExperimentConfig().replace(**{"arch": ARCH, "finetune.epochs": epochs, "base_train.epochs": 4,
                                           "search.bn_batches": 2, "device": "cpu", "prune.budget": 0.5})
    exp = open_experiment(root, config)
    data = load_experiment_data(config)
    base = train_base(ARCH, data, config.base_train, 0, device="cpu")
    save_state_dict(base, exp.base_path)
    pruner = build_pruner(config, base, data)
    vector = pruner.uniform(0.5)
    write_compensation(exp.compensation_path, pruner, vector, config, file_hash(exp.base_path))
    plan = pruner.plan(vector, 0.5)
    save_pruned(exp.pruned_dir, pruner.apply(plan), plan, ARCH, 10, data.input_shape)
    if report:
        write_json(exp.report_path, {"base_test_acc": 0.9, "method": "lcp", "budget": 0.5, "pruned_test_acc": 0.8,
                                     "flops_ratio": plan.flops_ratio, "params_ratio": plan.params_ratio,
                                     "methods": {"lcp": {"test_top5": float("nan")}}})
    return exp, data


def run(*args):
    return CliRunner().invoke(main, ["finetune", *map(str, args)])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return finished_search(tmp_path_factory.mktemp("ft") / "run")


def test_every_budget_is_pruned_fine_tuned_tested_and_saved(experiment):
    exp, data = experiment
    result = run(exp.root, "--budgets", "0.5", "0.3", "0.2", "--quiet")
    assert result.exit_code == 0, result.output
    assert "budget 0.5: already fine-tuned" in result.output      # the search's own
    rows = json.loads((exp.root / "budgets.json").read_text())["budgets"]
    assert [r["budget"] for r in rows] == [0.5, 0.3, 0.2]
    assert rows[0]["model"] == "pruned" and rows[0]["test_acc"] == 0.8
    for row in rows:
        assert row["budget"] - 0.005 <= row["flops_ratio"] <= row["budget"]
        assert row["test_acc"] > 0.5                        # digits: fine-tuned, far above chance
        model = load_pruned(exp.root / row["model"])        # a relative path inside the folder
        x = torch.randn(3, *data.input_shape)
        assert model.eval()(x).shape == (3, 10)
        base_flops = json.loads((exp.root / row["model"] / "plan.json").read_text())["plan"]["base_flops"]
        assert measure_cost(model, data.input_shape)[0] / base_flops == pytest.approx(row["flops_ratio"])
    assert (exp.root / "plots" / "budgets.png").stat().st_size > 1000
    assert "budget 0.3: test accuracy" in result.output


def test_a_budget_already_there_is_not_redone(experiment):
    exp, _ = experiment
    before = {r["budget"]: r for r in json.loads((exp.root / "budgets.json").read_text())["budgets"]}
    result = run(exp.root, "--budgets", "0.3", "0.15", "--quiet")
    assert result.exit_code == 0, result.output
    assert "budget 0.3: already fine-tuned" in result.output
    rows = {r["budget"]: r for r in json.loads((exp.root / "budgets.json").read_text())["budgets"]}
    assert set(rows) == {0.5, 0.3, 0.2, 0.15} and rows[0.3] == before[0.3] and rows[0.2] == before[0.2]


def test_a_search_that_has_not_finished_is_refused(tmp_path):
    exp, _ = finished_search(tmp_path / "run", report=False)
    result = run(exp.root, "--budgets", "0.3")
    assert_ends_in_error_line(result, "its search has not finished", "--resume")
    assert not (exp.root / "budgets.json").exists()


@pytest.mark.parametrize("budgets, message", [
    (["1.5"], "--budgets must be in (0, 1), got 1.5"),
    (["0.3", "0.3"], "--budgets 0.3 is given twice"),
    (["0.3", "0.30000001"], "--budgets 0.3 is given twice"),   # one folder, budgets/budget-0.3/
    (["0.5", "0.00001"], "--budgets 1e-05"),
])
def test_bad_budgets_are_one_line_before_any_work(experiment, budgets, message):
    exp, _ = experiment
    before = (exp.root / "budgets.json").read_text()
    result = run(exp.root, "--budgets", *budgets, "--quiet")
    assert_ends_in_error_line(result, message)
    assert (exp.root / "budgets.json").read_text() == before


def test_a_folder_that_is_not_an_experiment_is_refused(tmp_path):
    result = run(tmp_path, "--budgets", "0.3")
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_an_interrupted_finetune_is_one_line_and_goes_on_from_its_last_epoch(tmp_path):
    """SIGTERM, as a scheduler sends it (Ctrl-C takes the same handler: see test_resume)."""
    from test_resume import _checkpoint_epoch, stop_when

    signum, status = signal.SIGTERM, 143

    epochs = 12
    exp, _ = finished_search(tmp_path / "run", epochs=epochs)
    command = [sys.executable, "-m", "lcp_tune.cli", "finetune", str(exp.root), "--budgets", "0.3", "0.2"]
    saved = lambda: list((exp.root / "finetune").glob("b0.2-*.pt"))  # noqa: E731
    returncode, output = stop_when(command, lambda: saved() and 1 <= _checkpoint_epoch(saved()[0]) < epochs - 2,
                                   signum, timeout=600)
    assert returncode == status, output
    last = output.strip().splitlines()[-1]
    assert f"interrupted by {signal.Signals(signum).name} during the fine-tune at budget 0.2" in last, output
    assert "lcp-tune finetune" in last and "Traceback" not in output
    rows = json.loads((exp.root / "budgets.json").read_text())["budgets"]
    assert [r["budget"] for r in rows] == [0.5, 0.3]             # the finished budget is kept
    epoch = _checkpoint_epoch(saved()[0])
    result = run(exp.root, "--budgets", "0.3", "0.2")
    assert result.exit_code == 0, result.output
    assert "budget 0.3: already fine-tuned" in result.output
    assert re.search(rf"fine-tune b0\.2 +resuming at epoch {epoch + 1}/{epochs}\n", result.output), result.output
    assert [r["budget"] for r in json.loads((exp.root / "budgets.json").read_text())["budgets"]] == [0.5, 0.3, 0.2]


def search(*args):
    return CliRunner().invoke(main, ["search", *map(str, args)])


def test_a_multi_budget_search_writes_one_fine_tuned_model_per_budget(tmp_path):
    """`search --budgets 0.5 0.3`: searched (here: uniform) at 0.5, that compensation fine-tuned at
    both; a resume of the finished folder redoes nothing."""
    from test_resume import trained_base

    exp = tmp_path / "exp"
    args = ["--arch", ARCH, "--method", "uniform", "--budgets", "0.5", "0.3", "--checkpoint", trained_base(tmp_path),
            "--finetune-epochs", "2", "--device", "cpu", "--subset", "0.5", "--quiet", "--out", exp]
    result = search(*args)
    assert result.exit_code == 0, result.output
    rows = json.loads((exp / "budgets.json").read_text())["budgets"]
    assert [r["budget"] for r in rows] == [0.5, 0.3] and rows[0]["model"] == "pruned"
    report = json.loads((exp / "report.json").read_text())
    assert report["budget"] == 0.5 and rows[0]["test_acc"] == report["pruned_test_acc"]
    smaller = load_pruned(exp / rows[1]["model"])
    assert abs(rows[1]["flops_ratio"] - 0.3) < 0.005
    base = load_pruned(exp / "pruned")
    assert measure_cost(smaller, (1, 8, 8))[0] < measure_cost(base, (1, 8, 8))[0]   # a smaller network, saved
    assert (exp / "plots" / "budgets.png").stat().st_size > 1000
    again = search("--resume", exp)   # everything done: the report, and no data or model loaded again
    assert again.exit_code == 0 and "already finished" in again.output, again.output
    assert "budget 0.3" not in again.output
    (exp / "budgets.json").write_text(json.dumps({"budgets": rows[:1]}))   # as if stopped before 0.3 ended
    again = search("--resume", exp, "--quiet")
    assert again.exit_code == 0 and "budget 0.3: test accuracy" in again.output, again.output


@pytest.mark.parametrize("args, message", [
    (["--budgets", "0.5", "1.5"], "--budgets must be"),
    (["--budgets", "0.5", "0.3", "0.5"], "--budgets 0.5 is given twice"),
    (["--budgets", "0.3", "0.5", "0.30000001"], "--budgets 0.30000001 is given twice"),
    (["--budget", "0.5", "--budgets", "0.3"], "either --budget"),
])
def test_bad_search_budgets_are_one_line_before_any_work(tmp_path, args, message):
    result = search(*args, "--out", tmp_path / "x")
    assert_one_line_error(result, message)
    assert not (tmp_path / "x").exists()
