"""Bad input on the command line: one clear line, non-zero exit, no traceback, nothing started."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from lcp_tune.cli import main
from lcp_tune.models import build_model
from lcp_tune.testing import assert_one_line_error


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result




@pytest.mark.parametrize("args, fragments", [
    (["--arch", "resnet21"], ["unknown architecture 'resnet21'", "resnet20"]),
    (["--data", "svhn"], ["unknown dataset 'svhn'", "lcp-tune list"]),
    (["--budget", "1.5"], ["budget must be", "(0, 1)", "1.5"]),
    (["--budget", "0"], ["budget must be"]),
    (["--num-samples", "0"], ["--num-samples must be an integer >= 1"]),
    (["--searcher", "hyperband"], ["'--searcher'", "'hyperband' is not one of", "'tpe'"]),
    (["--metric", "l3"], ["'--metric'", "'l3' is not one of", "'l2'"]),
])
def test_search_rejects_bad_settings(tmp_path, args, fragments):
    result = run("search", "--out", str(tmp_path / "exp"), *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "exp").exists()   # refused before any work


def test_search_rejects_missing_checkpoint(tmp_path):
    result = run("search", "--out", str(tmp_path / "exp"), "--checkpoint", str(tmp_path / "nope.pt"))
    assert_one_line_error(result, "nope.pt does not exist")


def test_search_rejects_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    result = run("search", "--out", str(tmp_path / "exp"), "--checkpoint", str(bad))
    assert_one_line_error(result, "bad.pt is not a readable PyTorch state_dict")


def test_search_rejects_checkpoint_of_another_architecture(tmp_path):
    other = tmp_path / "resnet20_tiny.pt"
    torch.save(build_model("resnet20_tiny", 10, 1).state_dict(), other)
    result = run("search", "--out", str(tmp_path / "exp"), "--checkpoint", str(other))
    assert_one_line_error(result, "does not fit architecture 'resnet20_narrow'", "conv1.weight", "(4, 1, 3, 3)")


def test_search_refuses_unreachable_budget(tmp_path):
    ckpt = tmp_path / "tiny.pt"
    torch.save(build_model("resnet20_tiny", 10, 1).state_dict(), ckpt)
    result = run("search", "--out", str(tmp_path / "exp"), "--arch", "resnet20_tiny",
                 "--checkpoint", str(ckpt), "--budget", "0.001")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "unreachable" in result.output and "smallest reachable is 0." in result.output
    assert not (tmp_path / "exp").exists()


def test_list_shows_registries():
    result = run("list")
    assert result.exit_code == 0
    assert "resnet56_tiny" in result.output and "digits" in result.output and "tpe" in result.output


def test_train_writes_a_loadable_state_dict(tmp_path):
    out = tmp_path / "base.pt"
    result = run("train", "--arch", "resnet20_tiny", "--data", "digits", "--epochs", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    state = torch.load(out, weights_only=True)
    model = build_model("resnet20_tiny", 10, 1)
    model.load_state_dict(state)
    assert "test accuracy" in result.output


def test_train_from_a_checkpoint_with_another_head(tmp_path):
    """An ImageNet-style checkpoint (1000 classes) becomes a 10-class base: the head is replaced."""
    start = tmp_path / "start.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in build_model("resnet20_tiny", 1000, 1).state_dict().items()}},
               start)
    out = tmp_path / "base.pt"
    result = run("train", "--arch", "resnet20_tiny", "--epochs", "1", "--checkpoint", str(start),
                 "--num-classes", "1000", "--out", str(out))
    assert result.exit_code == 0, result.output
    state = torch.load(out, weights_only=True)
    assert state["fc.weight"].shape == (10, 16)
    kept = torch.load(start, weights_only=True)["state_dict"]["module.conv1.weight"]
    assert state["conv1.weight"].shape == kept.shape


def test_pretrained_without_internet_is_one_clear_line(monkeypatch, tmp_path):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    result = run("train", "--arch", "resnet18", "--data", "digits", "--pretrained", "--out", str(tmp_path / "b.pt"))
    assert_one_line_error(result, "--pretrained", "resnet18", "--checkpoint")


def test_search_with_a_checkpoint_of_another_class_count_names_the_head(tmp_path):
    ckpt = tmp_path / "c.pt"
    torch.save(build_model("resnet20_tiny", 1000, 1).state_dict(), ckpt)
    result = run("search", "--arch", "resnet20_tiny", "--checkpoint", str(ckpt), "--out", str(tmp_path / "e"))
    assert_one_line_error(result, "fc.weight", "(1000, 16)", "(10, 16)")
