"""`lcp-tune prune`: one compensation, several budgets, reloadable folders; bad input is one line."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lcp_tune import load_pruned
from lcp_tune.store.checkpoints import file_hash, save_state_dict
from lcp_tune.cli.prune import prune, spread_values
from lcp_tune.models import build_model
from lcp_tune.pruning import Pruner
from lcp_tune.testing import assert_one_line_error

ARCH, SHAPE = "resnet20_tiny", ("--input-shape", "1", "8", "8")


def run(*args):
    return CliRunner().invoke(prune, [str(a) for a in args])




@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A base checkpoint and the compensation a search would have saved for it."""
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    model = build_model(ARCH, 10, 1)
    save_state_dict(model, folder / "base.pt")
    pruner = Pruner(model, (1, 8, 8))
    vector = np.random.default_rng(0).uniform(-1, 1, pruner.num_params)
    record = {"arch": ARCH, "data": "digits", "metric": "l2", "form": "additive", "budget": 0.5,
              "base_checkpoint_sha256": file_hash(folder / "base.pt"),
              "values": dict(zip(pruner.form.param_names(pruner.group_names), vector.tolist()))}
    (folder / "compensation.json").write_text(json.dumps(record))
    return folder, pruner, vector, record


def test_spread_values_accepts_several_values_after_one_flag():
    assert spread_values(["--budget", "0.3", "0.5", "--out", "d"]) == ["--budget", "0.3", "--budget", "0.5", "--out", "d"]


def test_prune_many_budgets_from_one_compensation(base, tmp_path):
    folder, pruner, vector, _ = base
    result = run("--arch", ARCH, "--checkpoint", folder / "base.pt", "--compensation", folder / "compensation.json",
                 "--budget", "0.3", "0.5", "0.7", "--out", tmp_path, *SHAPE)
    assert result.exit_code == 0, result.output
    x = torch.randn(3, 1, 8, 8)
    for budget in (0.3, 0.5, 0.7):
        meta = json.loads((tmp_path / f"budget-{budget:g}" / "plan.json").read_text())
        expected = pruner.plan(vector, budget)
        assert meta["plan"]["kept"] == [list(k) for k in expected.kept]     # the learned ranking, reused
        model = load_pruned(tmp_path / f"budget-{budget:g}")
        with torch.no_grad():
            assert torch.equal(model(x), pruner.apply(expected).eval()(x))
        assert meta["plan"]["flops"] <= budget * meta["plan"]["base_flops"]


def test_without_compensation_uses_identity_and_initial_weights(tmp_path):
    result = run("--arch", ARCH, "--budget", "0.4", "--out", tmp_path, *SHAPE)
    assert result.exit_code == 0, result.output
    assert load_pruned(tmp_path / "budget-0.4")(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_arch_defaults_to_the_compensation_files(base, tmp_path):
    folder = base[0]
    result = run("--checkpoint", folder / "base.pt", "--compensation", folder / "compensation.json",
                 "--budget", "0.5", "--out", tmp_path, *SHAPE)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, fragments", [
    (["--budget", "1.5"], ["budget must be", "(0, 1)", "1.5"]),
    (["--budget", "0.001"], ["unreachable", "smallest reachable is 0."]),
    (["--budget", "0.5", "--metric", "l7"], ["'l7' is not one of", "'l2'"]),
    (["--budget", "0.5", "--form", "mult"], ["'mult' is not one of", "'additive'"]),
    (["--budget", "0.5", "--arch", "resnet21"], ["unknown architecture 'resnet21'", "resnet20"]),
    (["--budget", "0.5", "--arch", "no_such_pkg.mod:f"], ["cannot import module 'no_such_pkg.mod'"]),
])
def test_bad_settings_are_one_line_and_write_nothing(tmp_path, args, fragments):
    result = run("--arch", ARCH, "--out", tmp_path / "out", *SHAPE, *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_compensation_for_another_checkpoint_is_refused(base, tmp_path):
    folder = base[0]
    other = build_model(ARCH, 10, 1)
    save_state_dict(other, tmp_path / "other.pt")
    result = run("--checkpoint", tmp_path / "other.pt", "--compensation", folder / "compensation.json",
                 "--budget", "0.5", "--out", tmp_path / "out", *SHAPE)
    assert_one_line_error(result, "learned on base checkpoint sha256", file_hash(tmp_path / "other.pt"))
    result = run("--compensation", folder / "compensation.json", "--budget", "0.5", "--out", tmp_path / "out", *SHAPE)
    assert_one_line_error(result, "pass that checkpoint with --checkpoint")


def test_compensation_for_another_architecture_is_refused(base, tmp_path):
    folder = base[0]
    result = run("--arch", "resnet32_tiny", "--checkpoint", folder / "base.pt", "--compensation",
                 folder / "compensation.json", "--budget", "0.5", "--out", tmp_path / "out", *SHAPE)
    assert_one_line_error(result, "learned for architecture 'resnet20_tiny', not 'resnet32_tiny'")


def test_compensation_with_other_groups_or_metric_is_refused(base, tmp_path):
    folder, _, _, record = base
    broken = dict(record, values={"beta:nowhere": 1.0})
    (tmp_path / "c.json").write_text(json.dumps(broken))
    result = run("--checkpoint", folder / "base.pt", "--compensation", tmp_path / "c.json", "--budget", "0.5",
                 "--out", tmp_path / "out", *SHAPE)
    assert_one_line_error(result, "does not match this model's channel groups")
    result = run("--checkpoint", folder / "base.pt", "--compensation", folder / "compensation.json",
                 "--metric", "l1", "--budget", "0.5", "--out", tmp_path / "out", *SHAPE)
    assert_one_line_error(result, "learned with metric 'l2'")
    (tmp_path / "bad.json").write_text("{not json")
    assert_one_line_error(run("--compensation", tmp_path / "bad.json", "--budget", "0.5", "--out", tmp_path / "o"),
                          "is not valid JSON")


USER_MODELS = textwrap.dedent('''
    import torch
    from torch import nn

    def small(num_classes=10, in_channels=3):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

    def not_a_module():
        return 42

    class Shuffled(nn.Module):
        """A channel shuffle (reshape) the tracer cannot follow: the check must name the layer."""
        def __init__(self, num_classes=10, in_channels=3):
            super().__init__()
            self.a = nn.Conv2d(in_channels, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            y = self.a(x)
            n, c, h, w = y.shape
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            return self.fc(self.b(y).mean((2, 3)))
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "lcp_user_models.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "lcp_user_models"


def test_user_factory_prunes_and_reloads(user_module, tmp_path):
    result = run("--arch", f"{user_module}:small", "--budget", "0.5", "--out", tmp_path / "out", *SHAPE)
    assert result.exit_code == 0, result.output
    assert load_pruned(tmp_path / "out" / "budget-0.5")(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("factory, fragments", [
    ("not_a_module", ["returned int, not an nn.Module"]),
    ("missing", ["has no callable 'missing'"]),
    ("Shuffled", ["layer '", "ignored_layers"]),   # the channel shuffle is caught and its layer named
])
def test_bad_user_factories_are_one_line(user_module, tmp_path, factory, fragments):
    result = run("--arch", f"{user_module}:{factory}", "--budget", "0.5", "--out", tmp_path / "out", *SHAPE)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()
