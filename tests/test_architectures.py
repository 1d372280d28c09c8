"""Every registered architecture family (tiny twins) prunes exactly: cost, shapes, training, I/O.

Grouped convs (ResNeXt, RegNet), depthwise convs and squeeze-excitation (MobileNet, EfficientNet),
residual adds and concatenations (DenseNet) are all in the registry's twins.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ptflops import get_model_complexity_info

from lcp_tune import load_pruned
from lcp_tune.models import build_model, default_input_shape, list_archs
from lcp_tune.store.pruned_io import save_pruned
from lcp_tune.pruning import Pruner, PruningCheckError, measure_cost
from lcp_tune.pruning.planner import group_steps, keep_counts, min_keep, plan_keep

TWINS = [a for a in list_archs() if a.endswith("_tiny")]
BUDGETS = [0.7, 0.4, 0.2]
_PRUNERS: dict[str, Pruner] = {}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models: threads only add contention on a shared CPU
    yield
    torch.set_num_threads(threads)


def pruner_for(arch: str) -> Pruner:
    if arch not in _PRUNERS:
        torch.manual_seed(0)
        _PRUNERS[arch] = Pruner(build_model(arch, 10, 3), default_input_shape(arch))
    return _PRUNERS[arch]


def random_vector(pruner: Pruner, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, pruner.num_params)


def ptflops_count(model: torch.nn.Module, shape) -> tuple[int, int]:
    """ptflops' aten count minus the bias additions it adds (the papers count MACs only)."""
    macs, params = get_model_complexity_info(model, tuple(shape), backend="aten", as_strings=False,
                                             print_per_layer_stat=False)
    bias_adds = []
    hooks = [m.register_forward_hook(lambda mod, i, o: bias_adds.append(o[0].numel()))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return int(macs) - sum(bias_adds), int(params)


def test_registry_has_the_papers_architectures():
    for name in ("resnet20", "resnet56", "resnet110", "mobilenet_v2_cifar", "mobilenet_v2", "resnet18",
                 "resnet34", "resnet50", "vgg16_bn_cifar"):
        assert name in list_archs() and f"{name}_tiny" in list_archs()


@pytest.mark.parametrize("arch", TWINS)
def test_prediction_equals_independent_counts(arch):
    pruner = pruner_for(arch)
    shape = pruner.structure.input_shape
    assert not pruner.excluded, pruner.excluded   # every group of every twin is prunable
    for i, budget in enumerate(BUDGETS):
        for vector in (pruner.identity(), random_vector(pruner, i)):
            plan = pruner.plan(vector, budget)
            small = pruner.apply(plan)
            assert measure_cost(small, shape) == (plan.flops, plan.params)
            assert plan.flops <= budget * plan.base_flops
    assert ptflops_count(small, shape) == (plan.flops, plan.params)


@pytest.mark.parametrize("arch", TWINS)
def test_threshold_then_fill_spends_the_budget(arch):
    """Without fill the plan is the papers' greedy: a prefix of the global ranking whose next
    channel breaks the budget. With fill (the default) it keeps that prefix and more, still fits,
    and no group's next channel step fits what is left."""
    pruner = pruner_for(arch)
    sizes = pruner.structure.group_sizes
    steps = group_steps(pruner.structure, 1)
    floor = min_keep(sizes, 0.1, steps)
    for resource in ("flops", "params"):
        scores = pruner.scores(random_vector(pruner, 7))
        limit = 0.4 * pruner.cost.base[resource]
        greedy = plan_keep(scores, pruner.cost, 0.4, resource, fill=False)
        order = np.argsort(-np.concatenate(scores), kind="stable")
        ranked = np.repeat(np.arange(len(scores)), sizes)[order]
        j = next(j for j in range(len(ranked) + 1)
                 if np.array_equal(keep_counts(ranked, j, floor, sizes, steps), greedy.keep_counts))
        grown = [keep_counts(ranked, k, floor, sizes, steps) for k in range(j + 1, len(ranked) + 1)]
        bigger = next((k for k in grown if not np.array_equal(k, greedy.keep_counts)), None)
        assert bigger is None or pruner.cost.cost(bigger, resource) > limit

        filled = pruner.plan(random_vector(pruner, 7), 0.4, resource)
        keep = filled.keep_counts
        assert np.all(keep >= greedy.keep_counts)
        assert pruner.cost.cost(keep, resource) <= limit
        for g in np.flatnonzero(keep < sizes):
            more = keep.copy()
            more[g] += steps[g]
            assert pruner.cost.cost(np.minimum(more, sizes), resource) > limit, (resource, g)


@pytest.mark.parametrize("arch", TWINS)
def test_pruned_twin_keeps_output_shape_and_trains(arch):
    pruner = pruner_for(arch)
    small = pruner.apply(pruner.plan(random_vector(pruner, 3), 0.3))
    torch.manual_seed(0)
    x, y = torch.randn(4, *pruner.structure.input_shape), torch.randint(0, 10, (4,))
    small.train()
    loss = torch.nn.functional.cross_entropy(small(x), y)
    loss.backward()
    torch.optim.SGD(small.parameters(), lr=0.01).step()
    assert small.eval()(x).shape == (4, 10) and torch.isfinite(loss)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in pruner.model.parameters())


@pytest.mark.parametrize("arch", TWINS)
def test_identity_is_plain_global_ranking(arch):
    """The planner's binary search (before the fill) equals the papers' greedy: drop the lowest
    channel, re-measure."""
    pruner = pruner_for(arch)
    sizes = pruner.structure.group_sizes
    steps = group_steps(pruner.structure, 1)
    floor = min_keep(sizes, 0.1, steps)
    flat = np.concatenate(pruner.metrics)
    ranked = np.repeat(np.arange(len(sizes)), sizes)[np.argsort(-flat, kind="stable")]
    alive = len(ranked)
    limit = 0.4 * pruner.cost.base["flops"]
    while pruner.cost.flops(keep_counts(ranked, alive, floor, sizes, steps)) > limit:
        alive -= 1
    plan = plan_keep(pruner.scores(pruner.identity()), pruner.cost, 0.4, fill=False)
    assert plan.keep_counts.tolist() == keep_counts(ranked, alive, floor, sizes, steps).tolist()
    filled = pruner.plan(pruner.identity(), 0.4)   # the fill keeps more, each group its top channels
    for chosen in (plan, filled):
        for group, metric, kept in zip(pruner.structure.groups, pruner.metrics, chosen.kept):
            if group.partitions == 1:
                assert list(kept) == sorted(np.argsort(-metric, kind="stable")[:len(kept)].tolist())


@pytest.mark.parametrize("arch", TWINS)
def test_safeguard_and_round_to_are_honoured(arch):
    base = pruner_for(arch)
    pruner = Pruner(base.model, base.structure.input_shape, round_to=4)
    floor = min_keep(pruner.structure.group_sizes, 0.1, group_steps(pruner.structure, 4))
    budget = min(0.9, pruner.cost.flops(floor) / pruner.cost.base["flops"] + 0.1)   # twins are narrow
    plan = pruner.plan(random_vector(pruner, 5) * 3, budget)
    sizes = np.array(plan.group_sizes)
    assert np.all(plan.keep_counts >= np.maximum(1, np.ceil(0.1 * sizes)))
    assert np.all((plan.keep_counts % 4 == 0) | (plan.keep_counts == sizes))
    small = pruner.apply(plan)
    assert measure_cost(small, pruner.structure.input_shape) == (plan.flops, plan.params)


@pytest.mark.parametrize("arch", TWINS)
def test_taylor_metric_scores_every_arch(arch):
    base = pruner_for(arch)
    torch.manual_seed(1)
    batches = [(torch.randn(4, *base.structure.input_shape), torch.randint(0, 10, (4,))) for _ in range(2)]
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    pruner = Pruner(base.model, base.structure.input_shape, metric="taylor", batches=batches)
    assert all(np.all(np.isfinite(m)) and m.shape == (g.size,) for m, g in zip(pruner.metrics, pruner.structure.groups))
    pruner.apply(pruner.plan(pruner.identity(), 0.5))
    assert all(torch.equal(before[k], v) for k, v in base.model.state_dict().items())


@pytest.mark.parametrize("arch", TWINS)
def test_group_metric_scores_every_arch(arch):
    """group_l2 reads producers, norms and consumers of every group (residual streams, depthwise
    and grouped convs, flattened classifiers): a finite score per channel, and plans from it."""
    base = pruner_for(arch)
    pruner = Pruner(base.model, base.structure.input_shape, metric="group_l2")
    assert all(np.all(np.isfinite(m)) and np.all(m > 0) and m.shape == (g.size,)
               for m, g in zip(pruner.metrics, pruner.structure.groups))
    plan = pruner.plan(pruner.identity(), 0.5)
    assert measure_cost(pruner.apply(plan), pruner.structure.input_shape) == (plan.flops, plan.params)


@pytest.mark.parametrize("arch", TWINS)
def test_save_reload_gives_identical_outputs(arch, tmp_path):
    pruner = pruner_for(arch)
    plan = pruner.plan(random_vector(pruner, 11), 0.5)
    small = pruner.apply(plan).eval()
    save_pruned(tmp_path, small, plan, arch, 10, pruner.structure.input_shape)
    again = load_pruned(tmp_path)
    x = torch.randn(2, *pruner.structure.input_shape)
    with torch.no_grad():
        assert torch.equal(small(x), again(x))


def test_grouped_convs_keep_whole_conv_groups():
    pruner = pruner_for("resnext50_tiny")
    small = pruner.apply(pruner.plan(random_vector(pruner, 2), 0.3))
    grouped = [m for m in small.modules() if isinstance(m, torch.nn.Conv2d) and 1 < m.groups < m.out_channels]
    assert grouped and all(m.in_channels % m.groups == 0 and m.out_channels % m.groups == 0 for m in grouped)
    assert any(g.partitions > 1 for g in pruner.structure.groups)


def test_miswired_channels_are_caught_and_named():
    """A consumer whose inputs are permuted has the right widths; the functional check sees it."""
    pruner = Pruner(build_model("resnet20_tiny", 10, 3), (3, 16, 16))
    group = pruner.structure.groups[1]
    victim = next(s for s in group.slices if s.dim == "in")
    victim.module_idxs[:] = victim.module_idxs[::-1].copy()
    with pytest.raises(PruningCheckError, match=repr(victim.module)):
        pruner.apply(pruner.plan(random_vector(pruner, 0), 0.5))


def test_torchvision_name_builds_with_other_input_channels():
    model = build_model("mobilenet_v3_small", 7, 1)
    pruner = Pruner(model, (1, 32, 32))
    plan = pruner.plan(pruner.identity(), 0.5)
    assert pruner.apply(plan)(torch.zeros(2, 1, 32, 32)).shape == (2, 7)


def test_groups_touching_unsupported_layers_are_excluded_and_named():
    """A GroupNorm's affine parameters are not sliced: its group stays whole, the rest is pruned."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GroupNorm(2, 8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 12, 3, padding=1), torch.nn.BatchNorm2d(12), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(12, 10))
    pruner = Pruner(model, (3, 8, 8))
    assert pruner.group_names == ["3"]
    assert "'1'" in pruner.excluded["0"]
    plan = pruner.plan(pruner.identity(), 0.6)
    small = pruner.apply(plan)
    assert measure_cost(small, (3, 8, 8)) == (plan.flops, plan.params)
    assert small[0].out_channels == 8 and small[3].out_channels < 12
