"""The pruning core: exact cost, real channel removal, safeguard, identity == global ranking."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ptflops import get_model_complexity_info

from lcp_tune.models import build_model
from lcp_tune.pruning import Pruner, UnreachableBudgetError, measure_cost, trace_structure
from lcp_tune.pruning.errors import PruningError
from lcp_tune.pruning.metrics import l2_metric
from lcp_tune.pruning.planner import plan_keep

SHAPE = (1, 8, 8)
BUDGETS = [0.8, 0.5, 0.3, 0.15, 0.07]


@pytest.fixture(scope="module", params=["resnet20_tiny", "resnet56_tiny"])
def pruner(request):
    torch.manual_seed(0)
    return Pruner(build_model(request.param, 10, 1), SHAPE)


def ptflops_count(model):
    macs, params = get_model_complexity_info(model, SHAPE, backend="aten", as_strings=False,
                                             print_per_layer_stat=False)
    linear_bias = sum(m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    return macs - linear_bias, params  # ptflops also counts the classifier's bias adds


@pytest.mark.parametrize("budget", BUDGETS)
def test_planner_prediction_equals_independent_count(pruner, budget):
    rng = np.random.default_rng(int(budget * 100))
    for vector in (pruner.identity(), rng.uniform(-1, 1, pruner.num_params)):
        plan = pruner.plan(vector, budget)
        small = pruner.apply(plan)
        assert ptflops_count(small) == (plan.flops, plan.params)
        assert plan.flops <= budget * plan.base_flops
        assert plan.flops_ratio >= budget - 0.005   # the fill spends the budget


def test_pruned_module_is_physically_smaller_and_keeps_output_shape(pruner):
    plan = pruner.plan(pruner.identity(), 0.3)
    small = pruner.apply(plan)
    base_params = sum(p.numel() for p in pruner.model.parameters())
    assert sum(p.numel() for p in small.parameters()) < 0.5 * base_params
    assert small(torch.randn(5, *SHAPE)).shape == (5, 10)
    widths = {m.out_channels for m in small.modules() if isinstance(m, torch.nn.Conv2d)}
    assert max(widths) < 16  # every stage lost filters, not masked: smaller tensors


def test_pruned_model_trains(pruner):
    torch.manual_seed(0)
    small = pruner.apply(pruner.plan(pruner.identity(), 0.3))
    x = torch.randn(128, *SHAPE)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()   # top half brighter?
    opt = torch.optim.SGD(small.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(small(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]   # learns a learnable rule on the smaller network
    assert all(p.grad is not None for p in small.parameters())   # every layer is in the graph


def test_base_model_is_left_untouched(pruner):
    before = {k: v.clone() for k, v in pruner.model.state_dict().items()}
    pruner.apply(pruner.plan(pruner.identity(), 0.3))
    after = pruner.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("budget", [0.5, 0.1, 0.05])
def test_safeguard_honoured_in_every_group(pruner, budget):
    plan = pruner.plan(np.random.default_rng(1).uniform(-2, 2, pruner.num_params) * 3, budget)
    floor = np.maximum(1, np.ceil(0.1 * np.array(plan.group_sizes)))
    assert np.all(plan.keep_counts >= floor)


def naive_global_ranking(pruner, budget):
    """The papers' greedy, written independently: drop the lowest L2 filter until the budget holds."""
    metrics = l2_metric(pruner.model, pruner.structure)
    keep = pruner.structure.group_sizes.copy()
    floor = np.maximum(1, np.ceil(0.1 * keep)).astype(int)
    alive = [list(np.argsort(-m, kind="stable")) for m in metrics]   # best first
    limit = budget * pruner.cost.base["flops"]
    while pruner.cost.flops(keep) > limit:
        candidates = [(metrics[g][alive[g][keep[g] - 1]], g) for g in range(len(keep)) if keep[g] > floor[g]]
        _, g = min(candidates)
        keep[g] -= 1
    return keep, [sorted(a[:k]) for a, k in zip(alive, keep)]


def naive_fill(pruner, budget, keep):
    """The fill, written independently: walk the dropped filters best first and keep each one
    that still fits, re-measuring every time."""
    metrics = l2_metric(pruner.model, pruner.structure)
    keep = keep.copy()
    limit = budget * pruner.cost.base["flops"]
    ranked = sorted(((-m[i], g, i) for g, m in enumerate(metrics) for i in range(len(m))))
    best_first = [list(np.argsort(-m, kind="stable")) for m in metrics]
    for _, g, i in ranked:
        if best_first[g].index(i) < keep[g]:
            continue   # already kept
        keep[g] += 1
        if pruner.cost.flops(keep) > limit:
            keep[g] -= 1
    return keep, [sorted(a[:k]) for a, k in zip(best_first, keep)]


@pytest.mark.parametrize("budget", [0.7, 0.4, 0.2])
def test_identity_compensation_is_plain_global_l2_ranking(pruner, budget):
    """Identity = the papers' greedy on the L2 ranking, then the fill of what it left."""
    keep, kept = naive_global_ranking(pruner, budget)
    greedy = plan_keep(pruner.scores(pruner.identity()), pruner.cost, budget, fill=False)
    assert greedy.keep_counts.tolist() == keep.tolist()
    assert [list(k) for k in greedy.kept] == [list(map(int, k)) for k in kept]
    keep, kept = naive_fill(pruner, budget, keep)
    plan = pruner.plan(pruner.identity(), budget)
    assert plan.keep_counts.tolist() == keep.tolist()
    assert [list(k) for k in plan.kept] == [list(map(int, k)) for k in kept]
    assert plan.flops_ratio >= budget - 0.005


def test_compensation_moves_channels_between_groups(pruner):
    identity = pruner.plan(pruner.identity(), 0.4)
    shift = pruner.identity()
    shift[0] = 3.0   # favour the first group: it must keep more channels
    shifted = pruner.plan(shift, 0.4)
    assert shifted.keep_counts[0] > identity.keep_counts[0]
    assert shifted.flops <= 0.4 * shifted.base_flops


def test_uniform_warm_start_keeps_equal_fractions(pruner):
    plan = pruner.plan(pruner.uniform(0.3), 0.3)
    fractions = plan.keep_counts / np.array(plan.group_sizes)
    floor = np.maximum(1, np.ceil(0.1 * np.array(plan.group_sizes))) / np.array(plan.group_sizes)
    free = fractions > floor + 1e-9
    assert fractions[free].max() - fractions[free].min() < 0.3   # one channel of a small group


def test_unreachable_budget_names_smallest_reachable(pruner):
    with pytest.raises(UnreachableBudgetError, match=r"smallest reachable is 0\.\d+"):
        pruner.plan(pruner.identity(), 0.001)


@pytest.mark.parametrize("budget", [0.0, 1.0, 1.5, -0.2, math.nan])
def test_budget_outside_unit_interval_is_refused(pruner, budget):
    with pytest.raises(PruningError, match="budget must be"):
        pruner.plan(pruner.identity(), budget)


def test_classifier_output_is_never_pruned():
    structure = trace_structure(build_model("resnet20_tiny", 7, 1), SHAPE)
    assert "fc" in structure.ignored
    assert structure.output_shape == (7,)
    assert all(s.module != "fc" or s.dim == "in" for g in structure.groups for s in g.slices)


def test_measure_cost_counts_convs_and_linear():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 8 * 8, 10))
    flops, params = measure_cost(model, SHAPE)
    assert flops == 8 * 8 * 4 * 9 + 256 * 10
    assert params == 4 * 9 + 4 + 2560 + 10


def test_group_l2_averages_a_channels_filter_norm_scale_and_consumer_weights():
    """group_l2 (Torch-Pruning's group magnitude): for each channel, the mean over the layers it
    touches of its squared weights there; l2 reads the filter alone. By hand on a plain net."""
    from lcp_tune.pruning.metrics import channel_metrics

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.weight.uniform_(0.5, 2.0)
    structure = trace_structure(net, (1, 8, 8))
    first = structure.group_names.index("0")
    filters = net[0].weight.flatten(1).pow(2).sum(1)
    scales = net[1].weight.pow(2)
    inputs = net[3].weight.transpose(0, 1).flatten(1).pow(2).sum(1)
    expected = ((filters + scales + inputs) / 3).detach().numpy()
    assert np.allclose(channel_metrics("group_l2", net, structure)[first], expected)
    assert np.allclose(channel_metrics("l2", net, structure)[first], filters.detach().numpy())
    second = structure.group_names.index("3")   # feeds the classifier: its input columns count too
    into_fc = net[8].weight.pow(2).sum(0)
    expected = ((net[3].weight.flatten(1).pow(2).sum(1) + net[4].weight.pow(2) + into_fc) / 3).detach().numpy()
    assert np.allclose(channel_metrics("group_l2", net, structure)[second], expected)
