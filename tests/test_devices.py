"""--device: named before any work starts; every stage of a run follows it."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from lcp_tune.cli import main
from lcp_tune.devices import check_device_name, resolve_device
from lcp_tune.errors import LcpTuneError
from lcp_tune.testing import assert_ends_in_error_line

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names_that_are_allowed(name):
    assert check_device_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "CPU", "mps", "", "cuda:0 "])
def test_other_device_names_are_refused_in_one_line(name):
    with pytest.raises(LcpTuneError, match=r"^--device must be auto, cpu, cuda or cuda:N, got "):
        check_device_name(name)


def test_auto_is_cuda_when_torch_sees_a_gpu_and_the_cpu_otherwise():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@no_gpu
def test_cuda_without_a_gpu_is_named_with_what_to_use_instead():
    with pytest.raises(LcpTuneError, match=r"^--device cuda:1: torch \(built .*\) sees no CUDA GPU .*--device cpu"):
        resolve_device("cuda:1")


@no_gpu
@pytest.mark.parametrize("command", ["search", "train"])
def test_cli_refuses_cuda_without_a_gpu_before_any_work(tmp_path, command):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [command, "--device", "cuda", "--arch", "resnet20_tiny", "--out", str(out)])
    assert result.exit_code == 1
    assert_ends_in_error_line(result, "--device cuda: torch")
    assert not out.exists()           # no experiment folder, no base model written
    assert "training" not in result.output


def test_cli_refuses_a_device_name_it_does_not_know(tmp_path):
    result = CliRunner().invoke(main, ["search", "--device", "tpu", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert_ends_in_error_line(result, "--device must be auto, cpu, cuda or cuda:N, got 'tpu'")


@no_gpu
def test_export_names_a_missing_gpu_before_reading_the_folder(tmp_path):
    result = CliRunner().invoke(main, ["export", str(tmp_path / "not-an-experiment"), "--format", "state-dict",
                                       "--device", "cuda"])
    assert_ends_in_error_line(result, "--device cuda: torch")


def test_search_takes_the_distillation_flags_and_checks_them(tmp_path):
    result = CliRunner().invoke(main, ["search", "--distill", "--distill-weight", "1.5", "--out", str(tmp_path / "x")])
    assert_ends_in_error_line(result, "--distill-weight must be in [0, 1], got 1.5")
    assert not (tmp_path / "x").exists()
