"""Latency budgets: the measured latency model, its cache, the planner on it, `prune` and `search`.

Timing a real network here would make the tests as noisy as the machine, so most tests replace
the stopwatch with an exact one: a module's "time" is a fixed cost per call plus its layers'
multiply-accumulates and normalised elements, a world in which the latency model must predict a
pruned network's time exactly. The benchmark (benchmarks/bench_latency.py) times real ones.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from lcp_tune.cli import main
from lcp_tune.models import build_model
from lcp_tune.pruning import Pruner
from lcp_tune.pruning import latency as latency_module
from lcp_tune.pruning.errors import UnreachableBudgetError
from lcp_tune.pruning.errors import PruningError
from lcp_tune.pruning.latency import LatencySettings
from lcp_tune.pruning.width_multiple import Sweep, width_multiple
from lcp_tune.run import latency as run_latency
from lcp_tune.testing import assert_one_line_error

CALL_S, NETWORK_S = 2e-6, 3e-5


def exact_time(model: nn.Module, x: torch.Tensor, *_, block: int = 1, **__) -> float:
    """Seconds in a world where time is linear in work: per conv/linear MAC, per BN element.
    With `block`, convolutions compute channels in blocks of that many (as tensor cores and
    CPU kernels do): a conv costs what it would at its widths rounded up to the block."""
    work = [0.0]

    def up(n: int) -> int:
        return -(-n // block) * block

    def hook(mod, inputs, out):
        if isinstance(mod, nn.Conv2d):
            work[0] += (out[0, 0].numel() * out.shape[0] * up(out.shape[1]) * up(mod.in_channels) // mod.groups
                        * mod.kernel_size[0] * mod.kernel_size[1] * 1e-9)
        elif isinstance(mod, nn.Linear):
            work[0] += out.numel() * mod.in_features * 1e-9
        elif isinstance(mod, nn.BatchNorm2d):
            work[0] += out.numel() * 4e-9
        work[0] += CALL_S

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    whole = len(list(model.children())) > 0   # a network, not one standalone layer
    return work[0] + (NETWORK_S if whole else 0.0)


def _clock(monkeypatch, block: int = 1) -> list:
    calls = []

    def measure(model, x, *args, **kwargs):
        calls.append(type(model).__name__)
        return exact_time(model, x, block=block)

    monkeypatch.setattr(latency_module, "measure_latency", measure)
    monkeypatch.setattr(run_latency, "measure_latency", measure)
    return calls


@pytest.fixture
def exact_clock(monkeypatch):
    return _clock(monkeypatch)


@pytest.fixture
def block8_clock(monkeypatch):
    """The exact clock on hardware that computes conv channels in blocks of 8."""
    return _clock(monkeypatch, block=8)


@pytest.fixture
def block4_clock(monkeypatch):
    return _clock(monkeypatch, block=4)


def pruner_for(arch: str = "resnet20", shape=(3, 16, 16)) -> Pruner:
    torch.manual_seed(0)
    return Pruner(build_model(arch, 10, shape[0]), shape)


@pytest.mark.parametrize("arch", ["resnet20", "mobilenet_v2_tiny"])
def test_the_model_predicts_every_pruned_network_where_time_is_bilinear_in_the_widths(arch, exact_clock):
    pruner = pruner_for(arch)
    model = pruner.measure_latency_model(LatencySettings("cpu", 2, 1))
    x = torch.randn(2, 3, 16, 16)
    assert model.measured_base == pytest.approx(exact_time(pruner.model, x), rel=1e-9)
    rng = np.random.default_rng(0)
    for budget in (0.4, 0.6, 0.8):
        vector = pruner.identity() + rng.normal(0, 1, pruner.num_params)
        plan = pruner.plan(vector, budget, "latency")
        assert budget - 0.01 <= plan.latency_ratio <= budget + 1e-9       # the budget, spent
        measured = exact_time(pruner.apply(plan), x) / exact_time(pruner.model, x)
        assert measured == pytest.approx(plan.latency_ratio, rel=1e-6)   # and delivered


def _sweep(times) -> Sweep:
    widths = np.arange(1, len(times) + 1)
    return Sweep("layer", widths, np.asarray(times, dtype=float))


def test_the_width_multiple_is_the_largest_that_widths_round_up_to_for_free():
    """Blocks of 4 or 8 are found, through timing noise; where time grows with every channel
    there is none (1); where it does not grow at all, any rounding is free (32)."""
    w = np.arange(1, 65)
    rng = np.random.default_rng(0)
    assert width_multiple([_sweep(-(-w // 8) * 8 * 1e-4)]) == 8
    assert width_multiple([_sweep(-(-w // 4) * 4 * 1e-4)]) == 4
    assert width_multiple([_sweep(-(-w // 8) * 8 * 1e-4 * (1 + rng.normal(0, 0.01, 64)))]) == 8   # timing noise
    assert width_multiple([_sweep(w * 1e-5)]) == 1
    assert width_multiple([_sweep(w ** 2 * 1e-6 * (1 + rng.normal(0, 0.05, 64)))]) == 1
    assert width_multiple([_sweep(np.full(64, 1e-3))]) == 32
    assert width_multiple([]) == 1
    # odd widths on a slow path (twice the time): rounding up to 2 saves time, and is chosen
    assert width_multiple([_sweep(w * 1e-5 * np.where(w % 2, 2.0, 1.0))]) == 2
    # the costlier shape decides: a tiny smooth layer does not hide a big blocked one
    assert width_multiple([_sweep(-(-w // 8) * 8 * 1e-3), _sweep(w * 1e-6)]) == 8


def test_round_to_auto_keeps_every_width_on_the_multiple_the_hardware_steps_at(block8_clock):
    """On blocks of 8 the model finds 8, `auto` plans every group on it (or whole), its tables
    sit on it, and so the prediction is exact again; in the linear world `auto` is 1."""
    pruner = Pruner(pruner_for().model, (3, 16, 16), round_to="auto")
    with pytest.raises(PruningError, match="round_to 'auto' needs a latency model"):
        pruner.plan(pruner.identity(), 0.5)
    model = pruner.measure_latency_model(LatencySettings("cpu", 2, 1))
    assert model.width_multiple == 8 and pruner.round_to == 8
    x = torch.randn(2, 3, 16, 16)
    sizes = pruner.structure.group_sizes
    rng = np.random.default_rng(0)
    for budget, resource in ((0.5, "latency"), (0.7, "latency"), (0.5, "flops")):
        plan = pruner.plan(pruner.identity() + rng.normal(0, 1, pruner.num_params), budget, resource)
        kept = np.array([len(k) for k in plan.kept])
        assert np.all((kept % 8 == 0) | (kept == sizes)), kept
        if resource == "latency":
            measured = exact_time(pruner.apply(plan), x, block=8) / exact_time(pruner.model, x, block=8)
            assert measured == pytest.approx(plan.latency_ratio, rel=1e-6)
    again = Pruner(pruner.model, (3, 16, 16), round_to="auto")
    again.use_latency_model(json.loads(json.dumps(model.to_dict())))   # the multiple comes back from its sweeps
    assert again.round_to == 8


def test_round_to_auto_is_one_in_a_linear_world_and_never_coarser_than_a_quarter_group(exact_clock):
    pruner = Pruner(pruner_for().model, (3, 16, 16), round_to="auto")
    pruner.measure_latency_model(LatencySettings())
    assert pruner.cost.latency.width_multiple == 1 and pruner.round_to == 1
    stored = pruner.cost.latency.to_dict()
    w = np.arange(1, 65)
    stored["sweeps"] = [["layer", w.tolist(), (-(-w // 32) * 32 * 1e-4).tolist()]]   # steps at 32
    pruner.use_latency_model(stored)
    assert pruner.cost.latency.width_multiple == 32
    assert pruner.round_to == 8   # median group 32 wide: capped at 8 so groups keep four widths


def test_predicted_latency_only_grows_with_every_kept_channel(exact_clock):
    pruner = pruner_for()
    model = pruner.measure_latency_model(LatencySettings())
    sizes = pruner.structure.group_sizes
    rng = np.random.default_rng(1)
    keep = np.maximum(1, (rng.uniform(0.1, 0.9, (50, len(sizes))) * sizes).astype(int))
    for g in range(len(sizes)):
        more = keep.copy()
        more[:, g] = np.minimum(sizes[g], more[:, g] + 1)
        assert np.all(model.predict(more) >= model.predict(keep) - 1e-15)


def test_a_latency_budget_below_what_the_safeguard_reaches_names_the_smallest(exact_clock):
    pruner = pruner_for()
    pruner.measure_latency_model(LatencySettings())
    with pytest.raises(UnreachableBudgetError, match=r"budget 0.01 of the base latency is unreachable .* "
                                                     r"the smallest reachable is 0\.\d+"):
        pruner.plan(pruner.identity(), 0.01, "latency")


def test_the_cache_is_reused_under_the_same_settings_and_never_under_others(exact_clock, tmp_path, monkeypatch):
    monkeypatch.setenv("LCP_TUNE_CACHE", str(tmp_path))
    lines = []
    settings = LatencySettings("cpu", 1, 1)
    first = run_latency.attach_latency(pruner_for(), "resnet20", settings, lines.append)
    measured = len(exact_clock)
    assert measured > 10 and any("cached in" in line for line in lines)
    again = run_latency.attach_latency(pruner_for(), "resnet20", settings, lines.append)
    assert len(exact_clock) == measured and "reusing" in lines[-1]          # nothing timed again
    assert again.to_dict() == first.to_dict()
    run_latency.attach_latency(pruner_for(), "resnet20", LatencySettings("cpu", 1, 2), lines.append)
    assert len(exact_clock) > measured                                      # 2 threads: its own file
    assert len(list((tmp_path / "latency").glob("*.json"))) == 2

    # a file at the right name that holds another device's model is measured again, and says why
    path = next(p for p in (tmp_path / "latency").glob("*.json") if json.loads(p.read_text())["settings"]["threads"] == 1)
    stored = json.loads(path.read_text())
    stored["settings"]["device_model"] = "another processor"
    path.write_text(json.dumps(stored))
    before = len(exact_clock)
    run_latency.attach_latency(pruner_for(), "resnet20", settings, lines.append)
    assert len(exact_clock) > before
    assert any("does not apply" in line and "device_model" in line for line in lines)
    for bad in ("not json", json.dumps({"settings": settings.key(), "tables": [[1.0]]}), json.dumps([1, 2])):
        path.write_text(bad)
        before, said = len(exact_clock), len(lines)
        run_latency.attach_latency(pruner_for(), "resnet20", settings, lines.append)
        assert len(exact_clock) > before and "does not apply" in lines[said]


def test_prune_latency_command_writes_predicted_and_measured_latency(exact_clock, tmp_path, monkeypatch):
    monkeypatch.setenv("LCP_TUNE_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["prune", "--arch", "resnet32", "--input-shape", "3", "16", "16",
                                       "--resource", "latency", "--budget", "0.5", "0.7", "--device", "cpu",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "measuring latency on cpu (batch 1, 1 thread)" in result.output
    for budget in (0.5, 0.7):
        meta = json.loads((tmp_path / "out" / f"budget-{budget:g}" / "plan.json").read_text())
        latency = meta["latency"]
        assert budget - 0.01 <= latency["predicted_ratio"] <= budget
        assert latency["measured_latency_ratio"] == pytest.approx(
            latency["predicted_ratio"], rel=1e-6)
        assert meta["plan"]["resource"] == "latency" and meta["plan"]["flops"] < meta["plan"]["base_flops"]
        assert f"budget {budget:g}: " in result.output and "latency" in result.output


def test_prune_round_to_auto_on_a_flops_budget_measures_the_device_for_its_multiple(block8_clock, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("LCP_TUNE_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["prune", "--arch", "resnet56", "--input-shape", "3", "16", "16",
                                       "--round-to", "auto", "--budget", "0.5", "--device", "cpu",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "round-to auto: 8" in result.output
    meta = json.loads((tmp_path / "out" / "budget-0.5" / "plan.json").read_text())
    assert meta["round_to"] == 8 and meta["plan"]["resource"] == "flops"
    assert 0.495 <= meta["plan"]["flops"] / meta["plan"]["base_flops"] <= 0.5
    sizes, kept = meta["plan"]["group_sizes"], [len(k) for k in meta["plan"]["kept"]]
    assert all(k % 8 == 0 or k == n for k, n in zip(kept, sizes)), kept


@pytest.mark.parametrize("value", ["fast", "0", "2.5"])
def test_a_bad_round_to_is_one_line(value, tmp_path):
    result = CliRunner().invoke(main, ["prune", "--arch", "resnet20", "--round-to", value, "--budget", "0.5",
                                       "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "--round-to")
    assert "auto" in result.output and not (tmp_path / "out").exists()


def test_prune_latency_refuses_a_missing_gpu_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(main, ["prune", "--arch", "resnet20", "--resource", "latency", "--budget", "0.5",
                                       "--device", "cuda", "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "--device cuda", "no CUDA GPU")
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_search_with_a_latency_budget_plans_trials_and_reports_on_it(block4_clock, tmp_path, local_ray):
    """On hardware computing channels in blocks of 4: --round-to auto finds 4, and the trials
    (which plan with the driver's model, on any node) and the final network keep widths on it."""
    out = tmp_path / "exp"
    result = CliRunner().invoke(main, ["search", "--resource", "latency", "--budget", "0.8", "--round-to", "auto",
                                       "--num-samples", "2", "--tau-hat", "5", "--finetune-epochs", "1",
                                       "--no-baselines", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["resource"] == "latency" and report["round_to"] == 4
    assert "round-to auto: 4" in result.output
    assert 0.8 - 0.01 <= report["latency_ratio"] <= 0.8
    assert report["measured_latency_ratio"] == pytest.approx(report["latency_ratio"], rel=1e-6)
    assert (out / "latency_model.json").is_file()
    from lcp_tune.store.pruned_io import load_pruned
    pruned = load_pruned(out / "pruned")
    widths = [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert all(w % 4 == 0 for w in widths) and min(widths) < 32, widths
    import pandas as pd
    trials = pd.read_parquet(out / "trials.parquet").query("rung == 0")
    assert len(trials) == 2 and (trials.flops_ratio < 1).all()
    assert "0.8" in result.output and ">" in result.output   # predicted > measured in the table
