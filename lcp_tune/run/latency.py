"""Latency as a budget in the workflow: the cached latency model of a network on a device, and
what a pruned network's latency was predicted to be against what it measures.

A latency model takes a minute or more to measure, so it is kept in the cache folder, one file
per (architecture, input shape, channel groups, device and its processor, batch, threads, torch
version). The file name is a digest of all of them and the file repeats them; one measured under
other settings is never used: it is measured again, and the log says which setting differed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from lcp_tune.devices import resolve_device
from lcp_tune.errors import LcpTuneError
from lcp_tune.pruning import Pruner
from lcp_tune.pruning.latency import LatencyModel, LatencySettings
from lcp_tune.pruning.layer_timing import measure_latency
from lcp_tune.pruning.width_multiple import cost_words
from lcp_tune.store.files import read_json, write_json

from .base_model import cache_dir

Log = Callable[[str], None]


def latency_settings(device: str, batch: int, threads: int) -> LatencySettings:
    """Settings for a --device value on this machine (auto resolved; a missing GPU is one line)."""
    return LatencySettings(str(resolve_device(device)), batch, threads)


def attach_latency(pruner: Pruner, arch: str, settings: LatencySettings, log: Log = print) -> LatencyModel:
    """Give `pruner` the latency resource: the cached model when it applies, else measured now
    and cached."""
    path = _cache_path(pruner, arch, settings)
    if path.is_file():
        try:
            model = pruner.use_latency_model(read_json(path), settings)
            log(f"reusing the latency model {path} (measured in {model.build_s:.0f}s)")
            return model
        except LcpTuneError as exc:   # unreadable, another network's, or other settings
            log(f"measuring the latency model again: the cached {path} does not apply ({exc})")
    model = pruner.measure_latency_model(settings, log)
    write_json(path, model.to_dict())
    log(f"latency model cached in {path}")
    return model


LATENCY_FILE = "latency_model.json"   # in an experiment folder: the model its search planned with


def prepare_latency(pruner: Pruner, config, log: Log, folder: Optional[Path] = None) -> Optional[LatencyModel]:
    """For a latency budget or --round-to auto: the model in the experiment `folder` when it has
    one (a resumed or finished search keeps planning with its own, wherever it runs now), else
    the cached or newly measured one for `config`'s device and settings. None otherwise."""
    if config.prune.resource != "latency" and config.prune.round_to != "auto":
        return None
    if folder is not None and (Path(folder) / LATENCY_FILE).is_file():
        path = Path(folder) / LATENCY_FILE
        try:
            return pruner.use_latency_model(read_json(path))
        except LcpTuneError as exc:
            raise LcpTuneError(f"{path} is not this search's latency model ({exc}); delete it to measure again") from None
    return attach_latency(pruner, config.arch, report_settings(config), log)


def round_to_line(pruner: Pruner) -> str:
    """'round-to auto: 8 (...)': the multiple `auto` became, and the evidence for it."""
    model = pruner.cost.latency
    capped = "" if pruner.round_to == model.width_multiple else \
        f"; measured {model.width_multiple}, capped at a quarter of the median group width"
    return f"round-to auto: {pruner.round_to} (time of the swept widths {cost_words(model.sweeps)}{capped})"


def report_settings(config) -> LatencySettings:
    """A config's latency settings: where a latency budget is measured and where every run's
    final networks are timed for its report."""
    return latency_settings(config.device, config.prune.latency_batch, config.prune.latency_threads)


def latency_ms(model: nn.Module, input_shape: tuple[int, ...], settings: LatencySettings,
               min_run_time: float = 1.0) -> float:
    """Milliseconds per forward pass of `settings.batch` inputs on `settings.device` (median
    after warm-up); the model comes back on the CPU."""
    device = torch.device(settings.device)
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        example = torch.randn(settings.batch, *input_shape, device=device)
        return measure_latency(model.to(device), example, settings.threads, min_run_time) * 1e3
    finally:
        model.to("cpu")
        torch.set_num_threads(before)


def measured_latency(base: nn.Module, pruned: nn.Module, input_shape: tuple[int, ...],
                     settings: LatencySettings, min_run_time: float = 1.0, rounds: int = 5) -> dict:
    """Both networks timed in one run under `settings`, alternately over `rounds` rounds: a
    shared machine drifts by tens of percent within seconds, so the ratio is the median of
    each round's ratio (paired), and each time the median of its rounds."""
    base_ms, pruned_ms = [], []
    for _ in range(rounds):
        base_ms.append(latency_ms(base, input_shape, settings, min_run_time / rounds))
        pruned_ms.append(latency_ms(pruned, input_shape, settings, min_run_time / rounds))
    ratios = np.array(pruned_ms) / np.array(base_ms)
    return {"base_latency_ms": float(np.median(base_ms)), "latency_ms": float(np.median(pruned_ms)),
            "measured_latency_ratio": float(np.median(ratios))}


def latency_line(plan, measured: Optional[dict]) -> str:
    """'latency 0.497 predicted, 0.512 measured (3.1 ms -> 1.6 ms)' for logs and reports."""
    if plan.latency_ratio is None:
        return ""
    line = f"latency {plan.latency_ratio:.3f} predicted"
    if measured:
        line += (f", {measured['measured_latency_ratio']:.3f} measured ({measured['base_latency_ms']:.3f} ms -> "
                 f"{measured['latency_ms']:.3f} ms)")
    return line


def _cache_path(pruner: Pruner, arch: str, settings: LatencySettings):
    structure = pruner.structure
    key = {"arch": arch, "input_shape": list(structure.input_shape), "groups": structure.group_sizes.tolist(),
           "layers": pruner.cost.layer_names, **settings.key()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe_arch = "".join(c if c.isalnum() or c in "-_" else "_" for c in arch)[:60]
    return cache_dir() / "latency" / f"{safe_arch}-{digest}.json"
