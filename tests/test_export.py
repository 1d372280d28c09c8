"""`lcp-tune export`: each format's file reproduces the PyTorch outputs; bad input is one line.

The experiment folder is built by hand (config.yaml, base.pt, pruned/) rather than by a Ray
search, so the whole file runs in seconds.
"""
from __future__ import annotations

import json
import sys

import pytest
import torch
from click.testing import CliRunner

import lcp_tune.run.export as export_module
from lcp_tune import load_pruned
from lcp_tune.store.checkpoints import save_state_dict
from lcp_tune.cli.export import export
from lcp_tune.config import ExperimentConfig
from lcp_tune.store.experiment import open_experiment
from lcp_tune.run.export import EXPORTERS, Exporter, Timing, check_export, export_experiment
from lcp_tune.models import build_model
from lcp_tune.store.pruned_io import save_pruned
from lcp_tune.pruning import Pruner
from lcp_tune.errors import LcpTuneError
from lcp_tune.testing import assert_one_line_error

ARCH, SHAPE = "resnet20_tiny", (1, 8, 8)
FAST = Timing(warmup=1, min_runs=2, max_runs=3, budget_s=0.01)


@pytest.fixture(autouse=True)
def _fast_timing(monkeypatch):
    """Latency medians over a few runs, on one thread: the tests check the report, not the numbers."""
    monkeypatch.setattr(export_module, "DEFAULT_TIMING", FAST)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)    # two-thread runs on a busy 2-core CI box stall for whole time slices
    yield
    torch.set_num_threads(threads)


def _experiment(root, pruned: bool = True):
    exp = open_experiment(root, ExperimentConfig().replace(arch=ARCH))
    torch.manual_seed(0)
    base = build_model(ARCH, 10, SHAPE[0])
    save_state_dict(base, exp.base_path)
    if pruned:
        pruner = Pruner(base, SHAPE)
        plan = pruner.plan(pruner.identity(), 0.5)
        save_pruned(exp.pruned_dir, pruner.apply(plan), plan, ARCH, 10, SHAPE)
    return exp


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return _experiment(tmp_path_factory.mktemp("exp") / "run")


def run(*args):
    return CliRunner().invoke(export, [str(a) for a in args])




def _needs(fmt: str) -> None:
    for module in EXPORTERS.get(fmt).requires:
        pytest.importorskip(module)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "state-dict"])
def test_export_round_trip_matches_pytorch_and_reports_latency(experiment, tmp_path, fmt):
    _needs(fmt)
    report = export_experiment(experiment.root, fmt, tmp_path / fmt)
    assert 0 <= report.max_abs_diff <= report.tolerance < 1e-2
    for model in ("base", "pruned"):
        assert set(report.latency_ms[model]) == {1, 64}
        assert all(ms > 0 for ms in report.latency_ms[model].values())
    assert set(report.speedup) == {1, 64}
    assert report.device.split()[0] in ("cpu", "cuda") and report.threads == 1
    assert 0 < report.flops_ratio <= 0.5
    saved = json.loads((tmp_path / fmt / "export_report.json").read_text())
    assert saved["format"] == fmt and set(saved["latency_ms"]["pruned"]) == {"1", "64"}
    assert saved["max_abs_diff"] == report.max_abs_diff and "speedup" in saved


def test_state_dict_export_reloads_with_load_pruned(experiment, tmp_path):
    export_experiment(experiment.root, "state-dict", tmp_path)
    exported, original, x = load_pruned(tmp_path), load_pruned(experiment.pruned_dir), torch.randn(3, *SHAPE)
    with torch.inference_mode():
        assert torch.equal(exported(x), original(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_out_may_name_the_file(experiment, tmp_path):
    report = export_experiment(experiment.root, "torchscript", tmp_path / "net.pt")
    assert report.path == str(tmp_path / "net.pt")
    assert (tmp_path / "export_report.json").is_file()
    assert torch.jit.load(str(tmp_path / "net.pt"))(torch.randn(5, *SHAPE)).shape == (5, 10)


def test_cli_prints_the_table_and_writes_under_the_experiment(experiment):
    result = run(experiment.root, "--format", "state-dict")
    assert result.exit_code == 0, result.output
    assert "max |difference|" in result.output and "speedup" in result.output
    assert (experiment.root / "export" / "state-dict" / "export_report.json").is_file()


def test_a_file_that_differs_from_pytorch_is_refused(experiment, tmp_path):
    model = load_pruned(experiment.pruned_dir)
    broken = Exporter("broken", "", (), (), lambda *a: None, lambda path: (lambda x: model(x) + 0.1))
    with pytest.raises(LcpTuneError, match="does not match the PyTorch model: max abs difference"):
        check_export(broken, model, tmp_path, SHAPE)
    unreadable = Exporter("unreadable", "", (), (), lambda *a: None, lambda path: 1 / 0)
    with pytest.raises(LcpTuneError, match="could not be loaded and run: division by zero"):
        check_export(unreadable, model, tmp_path, SHAPE)


def test_not_an_experiment_folder(tmp_path):
    assert_one_line_error(run(tmp_path, "--format", "state-dict"), str(tmp_path), "not an lcp-tune experiment")


def test_experiment_without_a_pruned_model(tmp_path):
    exp = _experiment(tmp_path / "run", pruned=False)
    assert_one_line_error(run(exp.root, "--format", "torchscript"), "has no pruned model", "pruned/plan.json")


def test_unknown_format(experiment):
    result = run(experiment.root, "--format", "tflite")
    assert result.exit_code == 2 and "'tflite' is not one of" in result.output
    with pytest.raises(LcpTuneError, match="unknown export format 'tflite': must be one of onnx, state-dict"):
        export_experiment(experiment.root, "tflite")


def test_format_that_is_not_installed(experiment, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)    # makes `import onnxruntime` fail
    result = run(experiment.root, "--format", "onnx")
    assert_one_line_error(result, "export format 'onnx' needs the onnx, onnxruntime and onnxscript packages",
                          "pip install 'lcp-tune[export]'")
    assert not (experiment.root / "export" / "onnx").exists()


def test_cli_choices_are_the_registered_formats():
    from lcp_tune.cli.export import FORMATS
    from lcp_tune.run.export import list_export_formats

    assert sorted(FORMATS) == list_export_formats()
