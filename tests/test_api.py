"""The public Python API on models in memory: lcp_tune.prune, load_pruned and the error class."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lcp_tune
from lcp_tune.pruning import Pruner, measure_cost


class Net(nn.Module):
    """A model no registry knows: two conv blocks with a residual add and a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                   nn.Conv2d(32, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(x.mean((2, 3)))


def test_prune_any_module_to_its_budget():
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 3, 16, 16)
    before = model(x).detach().clone()
    small = lcp_tune.prune(model, 0.4, example_input=x)
    (full, _), (pruned, _) = measure_cost(model, (3, 16, 16)), measure_cost(small, (3, 16, 16))
    assert 0.3 * full <= pruned <= 0.4 * full
    assert small(x).shape == (2, 5)
    assert torch.equal(model(x), before)          # the given model is not changed
    assert small.block[0].out_channels < 32       # channels really removed, not masked


def test_prune_with_a_named_compensation_changes_the_allocation():
    model = Net().eval()
    pruner = Pruner(model, (3, 16, 16))
    names = pruner.form.param_names(pruner.group_names)
    shifted = {n: (3.0 if i == 0 else -3.0) for i, n in enumerate(names)}   # favour the first group
    plain = lcp_tune.prune(model, 0.4, input_shape=(3, 16, 16))
    favoured = lcp_tune.prune(model, 0.4, input_shape=(3, 16, 16), compensation=shifted)
    widths = [m.out_channels for m in plain.modules() if isinstance(m, nn.Conv2d)]
    other = [m.out_channels for m in favoured.modules() if isinstance(m, nn.Conv2d)]
    assert widths != other


@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "needs example_input"),
    ({"input_shape": (3, 16, 16), "compensation": [0.0]}, "compensation has 1 values"),
    ({"input_shape": (3, 16, 16), "compensation": {"beta:nope": 1.0}}, "does not match this model's channel groups"),
    ({"input_shape": (3, 16, 16), "metric": "l7"}, "unknown metric 'l7'"),
])
def test_prune_bad_input_is_an_lcp_tune_error(kwargs, fragment):
    with pytest.raises(lcp_tune.LcpTuneError, match=fragment):
        lcp_tune.prune(Net(), 0.5, **kwargs)


def test_prune_refuses_what_is_not_a_module():
    with pytest.raises(lcp_tune.LcpTuneError, match="needs an nn.Module"):
        lcp_tune.prune("resnet18", 0.5, input_shape=(3, 32, 32))
