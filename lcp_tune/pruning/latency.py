"""Measured latency as a resource: a cost model built from timings on the target device.

FLOPs do not predict speed: a pruned network can lose half its FLOPs and little of its time
(memory-bound layers, small widths that waste vector units, per-layer overheads). So each
distinct layer shape of the network (conv, linear, BatchNorm, at its input size) is timed as a
standalone module at a grid of input and output widths, with `torch.utils.benchmark` on the
target device, batch and thread count; between grid points time is bilinear in the two widths
(exact for a cost c0 + c1 in + c2 out + c3 in out). The sum over layers is then calibrated on
the whole network, timed at full width and at three uniformly thinner widths, each right after
the base: network time = a + b x layer sum (a covers what no table sees: activations, residual
adds, pooling, Python). Before the tables, the costliest layer shapes are timed at every width of
a span; their `width_multiple` (width_multiple.py) puts the grid points on the device's block.

Every table is made non-decreasing in both widths (a running maximum), so the network's
predicted time only grows with every kept channel and the planner's threshold search and budget
fill stay exact, as for FLOPs. Any network the engine traces gets a model; nothing is written
per architecture. Plain torch: no Ray, no files (the caller caches `to_dict()`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from .errors import PruningError
from .layer_timing import (device_model, input_shapes, layer_signature, measure_latency, module_named,
                           standalone, torch_threads)
from .width_multiple import Sweep, cost_words, width_multiple

GRID_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)   # of a layer's full width, where it varies
CALIBRATION_FRACTIONS = (1.0, 0.75, 0.5, 0.3)   # uniform widths the whole network is timed at
# A shared machine drifts by tens of percent within seconds (BENCHMARKS.md section 15): every
# table is timed in PASSES passes (the second in reverse order) keeping each point's fastest,
# and each thinner whole network is timed right after the base for ROUNDS rounds (paired ratios).
PASSES, ROUNDS = 2, 3
SWEEP_SHAPES, SWEEP_SPAN = 3, 64                # layer shapes swept, widths per sweep
MODEL_VERSION = 3                               # bump when tables are measured differently
Measure = Callable[[nn.Module, torch.Tensor], float]


@dataclass(frozen=True)
class LatencySettings:
    """Where and how latency is measured; a model is only valid under the same settings."""

    device: str = "cpu"        # a torch device name ("cpu", "cuda:0")
    batch: int = 1
    threads: int = 1           # CPU threads (intra-op); ignored by CUDA kernels

    def key(self) -> dict:
        """Everything a measurement depends on, for the cache key and the check on load."""
        return {"device": self.device, "device_model": device_model(self.device), "batch": self.batch,
                "threads": self.threads, "torch": torch.__version__, "version": MODEL_VERSION}


@dataclass(frozen=True)
class _Layer:
    """One timed layer: its shape signature and how its widths come from the keep counts."""

    name: str
    signature: int          # index into LatencyModel.tables
    in_scale: float         # cost-model in-width x in_scale = real in channels (grouped convs)
    in_is_out: bool         # depthwise conv / norm: one width, the out width


class LatencyModel:
    """Predicted seconds per batch for keep counts, from measured per-layer tables."""

    def __init__(self, cost, layers: list[_Layer], grids: list[tuple[np.ndarray, np.ndarray]],
                 tables: list[np.ndarray], calibration: tuple[float, float], settings: LatencySettings,
                 measured_base: float, build_s: float = 0.0, key: Optional[dict] = None,
                 sweeps: Optional[list[Sweep]] = None):
        self.cost, self.layers, self.grids, self.settings = cost, layers, grids, settings
        self.sweeps = sweeps or []
        self.width_multiple = width_multiple(self.sweeps)   # derived, never read from a file
        self.key = key or settings.key()   # what it was measured under (device model, torch, ...)
        self.tables = [np.maximum.accumulate(np.maximum.accumulate(t, axis=0), axis=1) for t in tables]
        self.calibration, self.measured_base, self.build_s = calibration, measured_base, build_s
        # every timed layer's grid and table, padded to one shape, so a prediction is a few
        # array operations over all layers at once (the planner evaluates hundreds per plan)
        index = {n: i for i, n in enumerate(cost.layer_names)}
        self._rows = np.array([index[l.name] for l in layers], dtype=np.int64)
        self._scale = np.array([l.in_scale for l in layers])
        self._same = np.array([l.in_is_out for l in layers], dtype=bool)
        size = max(max(len(g_in), len(g_out)) for g_in, g_out in grids) + 1
        padded = [_padded(g_in, g_out, t, size) for (g_in, g_out), t in zip(grids, self.tables)]
        sig = np.array([l.signature for l in layers], dtype=np.int64)
        self._g_in = np.stack([p[0] for p in padded])[sig]      # (layers, size)
        self._g_out = np.stack([p[1] for p in padded])[sig]
        self._table = np.stack([p[2] for p in padded])[sig]     # (layers, size, size)

    def layer_sum(self, keep: np.ndarray) -> np.ndarray:
        """Sum of every timed layer's table time at the widths `keep` gives it; (B,)."""
        w_in, w_out = self.cost.widths(keep)
        out = np.atleast_2d(w_out)[:, self._rows]
        inp = np.where(self._same, out, np.atleast_2d(w_in)[:, self._rows] * self._scale)
        return _bilinear_all(self._g_in, self._g_out, self._table, inp, out).sum(axis=1)

    def predict(self, keep: np.ndarray) -> np.ndarray:
        """Seconds per forward pass of `settings.batch` images; `keep` is (L,) or (B, L)."""
        a, b = self.calibration
        value = a + b * self.layer_sum(keep)
        return value if np.ndim(keep) > 1 else value[0]

    def to_dict(self) -> dict:
        return {"settings": self.key, "calibration": list(self.calibration),
                "measured_base": self.measured_base, "build_s": self.build_s,
                "layers": [[l.name, l.signature, l.in_scale, l.in_is_out] for l in self.layers],
                "grids": [[g_in.tolist(), g_out.tolist()] for g_in, g_out in self.grids],
                "tables": [t.tolist() for t in self.tables],
                "sweeps": [[w.layer, w.widths.tolist(), w.times.tolist()] for w in self.sweeps]}

    @classmethod
    def from_dict(cls, d: dict, cost, settings: Optional[LatencySettings] = None) -> "LatencyModel":
        """A model read back; PruningError naming what is wrong when it does not fit `cost`
        and `settings` (a file is never trusted to be for this network or this device). Without
        `settings`, the model's own are kept: a search's trials use the driver's model on any node."""
        try:
            if settings is None:
                settings = LatencySettings(**{k: d["settings"][k] for k in ("device", "batch", "threads")})
            elif d["settings"] != settings.key():
                changed = sorted(k for k in settings.key() if d["settings"].get(k) != settings.key()[k])
                raise PruningError(f"it was measured under other settings ({', '.join(changed)})")
            layers = [_Layer(str(n), int(s), float(sc), bool(same)) for n, s, sc, same in d["layers"]]
            grids = [(np.asarray(gi, dtype=float), np.asarray(go, dtype=float)) for gi, go in d["grids"]]
            tables = [np.asarray(t, dtype=float) for t in d["tables"]]
            a, b = (float(v) for v in d["calibration"])
            base = float(d["measured_base"])
            sweeps = [Sweep(str(n), np.asarray(w, dtype=np.int64), np.asarray(t, dtype=float))
                      for n, w, t in d.get("sweeps", [])]
        except PruningError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PruningError(f"it is not a latency model ({type(exc).__name__}: {exc})") from None
        if sorted(l.name for l in layers) != sorted(_timed_layer_names(cost)):
            raise PruningError("its layers are not this network's")
        for (g_in, g_out), t in zip(grids, tables):
            if t.shape != (len(g_in), len(g_out)) or not np.all(np.isfinite(t)) or np.any(t < 0):
                raise PruningError("a table has the wrong shape or a non-finite time")
        if len(grids) != len(tables) or any(not 0 <= l.signature < len(tables) for l in layers):
            raise PruningError("its layers point at tables it does not have")
        if not (b > 0 and math.isfinite(a) and base > 0):
            raise PruningError("its calibration is not a positive scale")
        for sweep in sweeps:
            if (sweep.widths.ndim != 1 or sweep.widths.shape != sweep.times.shape or len(sweep.widths) < 2
                    or np.any(np.diff(sweep.widths) != 1) or not np.all(np.isfinite(sweep.times))):
                raise PruningError("a width sweep is not consecutive widths with finite times")
        return cls(cost, layers, grids, tables, (a, b), settings, base, float(d.get("build_s", 0.0)), d["settings"],
                   sweeps)


def build_latency_model(model: nn.Module, cost, input_shape: tuple[int, ...], settings: LatencySettings,
                        prune_uniform: Callable[[float, int], tuple[nn.Module, np.ndarray]],
                        log: Callable[[str], None] = lambda s: None,
                        measure: Optional[Measure] = None) -> LatencyModel:
    """Sweep the costliest layer shapes for the hardware's width multiple, time every distinct
    layer shape on a width grid on that multiple, then calibrate on the whole network: at full
    width and pruned uniformly (`prune_uniform(fraction, multiple)` -> a smaller copy)."""
    start = time.monotonic()
    device = torch.device(settings.device)
    # the whole network is timed longer: its four times set the calibration
    measure_whole = measure or (lambda module, x: measure_latency(module, x, settings.threads, min_run_time=0.3))
    measure = measure or (lambda module, x: measure_latency(module, x, settings.threads, min_run_time=0.03))
    shapes = input_shapes(model, input_shape)
    signatures: dict[tuple, int] = {}
    layers, jobs = [], []
    for name in _timed_layer_names(cost):
        info, module = cost.structure.layers[name], module_named(model, name)
        i = cost.layer_names.index(name)
        varies_in, varies_out = bool(cost.A_in[i].any()), bool(cost.A_out[i].any())
        key = (type(module).__name__, info.kind, info.in_dim, info.out_dim, layer_signature(module),
               shapes[name], varies_in, varies_out)
        if key not in signatures:
            signatures[key] = len(jobs)
            jobs.append((module, info, shapes[name], varies_in, varies_out))
        scale = float(info.groups) if info.kind == "grouped" else 1.0
        layers.append(_Layer(name, signatures[key], scale, info.kind in ("depthwise", "norm")))
    log(f"measuring latency on {settings.device} (batch {settings.batch}, {settings.threads} thread"
        f"{'s' * (settings.threads != 1)}): {len(jobs)} layer shapes; first the widths where time steps")
    with torch_threads(settings.threads):
        uses = np.bincount([layer.signature for layer in layers], minlength=len(jobs))
        sweeps = _sweeps(jobs, uses, settings, device, measure)
    multiple = width_multiple(sweeps)
    log(f"  width sweep of {len(sweeps)} layer shape{'s' * (len(sweeps) != 1)} ({time.monotonic() - start:.0f}s): "
        f"time steps at multiples of {multiple} ({cost_words(sweeps)})")
    grids = [(_grid(info, "in", vi, multiple).astype(float), _grid(info, "out", vo, multiple).astype(float))
             for _, info, _, vi, vo in jobs]
    points = sum(len(g_in) * len(g_out) for g_in, g_out in grids)
    log(f"  {points} table timings x {PASSES} passes, then the whole network at {len(CALIBRATION_FRACTIONS)} widths")
    tables = [np.full((len(g_in), len(g_out)), np.inf) for g_in, g_out in grids]
    cells = [(t, a, b) for t, (g_in, g_out) in enumerate(grids) for a in range(len(g_in)) for b in range(len(g_out))]
    done, next_line = 0, 0.25
    with torch_threads(settings.threads):
        for order in [cells, cells[::-1]][:PASSES]:
            for t, a, b in order:
                module, info, shape, _, _ = jobs[t]
                g_in, g_out = grids[t]
                layer, x = standalone(module, info, int(g_in[a]), int(g_out[b]), shape, settings.batch, device)
                tables[t][a, b] = min(tables[t][a, b], measure(layer, x))
                done += 1
                if done >= next_line * points * PASSES:
                    log(f"  latency tables {100 * done / (points * PASSES):3.0f}% ({time.monotonic() - start:.0f}s)")
                    next_line += 0.25
        partial = LatencyModel(cost, layers, grids, tables, (0.0, 1.0), settings, 1.0)
        networks = [prune_uniform(fraction, multiple) for fraction in CALIBRATION_FRACTIONS]
        sums = [float(partial.layer_sum(keep)[0]) for _, keep in networks]
        times = _paired_times([network for network, _ in networks], input_shape, settings, device, measure_whole)
    calibration = _fit(np.array(sums), np.array(times))
    built = LatencyModel(cost, layers, grids, tables, calibration, settings, times[0], time.monotonic() - start,
                         sweeps=sweeps)
    log(f"latency model built in {built.build_s:.1f}s: base network {times[0] * 1e3:.3f} ms per batch of "
        f"{settings.batch}")
    return built


def _paired_times(networks: list[nn.Module], input_shape: tuple[int, ...], settings: LatencySettings,
                  device: torch.device, measure: Measure) -> list[float]:
    """Seconds of each network, the first being the base: each other one timed right after the
    base in every round, its time the median of its per-round ratios x the base's median time.
    This machine's speed drifts by tens of percent within a minute; a ratio of two timings a
    second apart does not (unpaired, one drifting round moved the calibration and the smallest
    reachable budget from 0.36 to 0.64: BENCHMARKS.md section 15)."""
    example = torch.randn(settings.batch, *input_shape, device=device)
    for network in networks:
        network.to(device)
    try:
        base, ratios = [], np.zeros((ROUNDS, len(networks)))
        for r in range(ROUNDS):
            for i, network in enumerate(networks):
                if i == 0:
                    continue
                base.append(measure(networks[0], example))
                ratios[r, i] = measure(network, example) / base[-1]
    finally:
        for network in networks:
            network.to("cpu")
    whole = float(np.median(base)) if base else measure(networks[0], example)
    return [whole] + [float(np.median(ratios[:, i])) * whole for i in range(1, len(networks))]


def _sweeps(jobs: list, uses: np.ndarray, settings: LatencySettings, device: torch.device,
            measure: Measure) -> list[Sweep]:
    """The SWEEP_SHAPES layer shapes with the most time at full width (time x layers of that
    shape), each timed at every width of the top SWEEP_SPAN of its output width, the input width
    following in proportion where it varies too (as uniform pruning moves both), in PASSES
    passes keeping each width's fastest."""
    def timed(job, w_out: int) -> float:
        module, info, shape, varies_in, _ = job
        w_in = max(1, round(w_out * info.in_dim / info.out_dim)) if varies_in else info.in_dim
        return measure(*standalone(module, info, w_in, w_out, shape, settings.batch, device))

    candidates = [i for i, job in enumerate(jobs) if job[4] and job[1].kind in ("conv", "linear", "depthwise")
                  and job[1].out_dim >= 2]
    full = {i: timed(jobs[i], jobs[i][1].out_dim) * uses[i] for i in candidates}
    chosen = sorted(candidates, key=lambda i: -full[i])[:SWEEP_SHAPES]
    sweeps = []
    for i in chosen:
        top = jobs[i][1].out_dim
        widths = np.arange(max(1, top - SWEEP_SPAN + 1), top + 1)
        times = np.full(len(widths), np.inf)
        for order in [range(len(widths)), range(len(widths) - 1, -1, -1)][:PASSES]:
            for k in order:
                times[k] = min(times[k], timed(jobs[i], int(widths[k])))
        sweeps.append(Sweep(jobs[i][1].name, widths, times))
    return sweeps


def _fit(sums: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    """Least-squares time = a + b x layer sum; a plain scale of the full network's time when
    the points disagree on a positive slope (noise on a busy machine)."""
    b, a = np.polyfit(sums, times, 1) if np.ptp(sums) > 0 else (0.0, 0.0)
    if not (b > 0 and np.isfinite(a) and a + b * sums.min() > 0):
        a, b = 0.0, float(times[0] / sums[0])
    return float(a), float(b)


def _timed_layer_names(cost) -> list[str]:
    """Layers with a table: convs, linears and BatchNorms (other norms are in the calibration)."""
    return [n for n in cost.layer_names
            if cost.structure.layers[n].kind in ("conv", "depthwise", "grouped", "linear", "norm")]


def _grid(info, axis: str, varies: bool, multiple: int = 1) -> np.ndarray:
    """Widths a table is measured at: the full one, and fractions of it where the width varies,
    rounded up to the hardware's width `multiple` (the tops of its steps: exact where widths are
    kept on it, and an over- rather than an under-estimate between)."""
    full = info.in_dim if axis == "in" else info.out_dim
    if info.kind in ("depthwise", "norm") and axis == "in":
        return np.array([1])            # one width: the out width (in_is_out)
    if not varies:
        return np.array([full])
    step = info.groups if info.kind == "grouped" else multiple
    points = {min(full, max(step, int(math.ceil(f * full / step)) * step)) for f in GRID_FRACTIONS}
    if len(points) < 2 and full > 1:   # a width that varies needs two points to vary between
        points.add(max(1, full // 2))
    return np.array(sorted(points))


def _padded(g_in: np.ndarray, g_out: np.ndarray, table: np.ndarray, size: int):
    """A grid and table extended to `size` points per axis: grid points past the end go on
    increasing by 1, and the table repeats its last row and column there (clamped values)."""
    def grid(g):
        return np.concatenate([g, g[-1] + np.arange(1, size - len(g) + 1)])
    full = np.pad(table, ((0, size - table.shape[0]), (0, size - table.shape[1])), mode="edge")
    return grid(g_in), grid(g_out), full


def _bilinear_all(g_in: np.ndarray, g_out: np.ndarray, table: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of every layer's table at its widths, clamped at the grid's ends.

    g_in, g_out: (M, G) increasing grids; table: (M, G, G); x, y: (B, M) widths -> (B, M) times.
    """
    last = g_in.shape[1] - 2
    i = np.clip((x[..., None] >= g_in).sum(-1) - 1, 0, last)
    j = np.clip((y[..., None] >= g_out).sum(-1) - 1, 0, last)
    m = np.arange(x.shape[1])
    x0, x1, y0, y1 = g_in[m, i], g_in[m, i + 1], g_out[m, j], g_out[m, j + 1]
    t = np.clip((x - x0) / (x1 - x0), 0.0, 1.0)
    u = np.clip((y - y0) / (y1 - y0), 0.0, 1.0)
    return ((1 - t) * (1 - u) * table[m, i, j] + t * (1 - u) * table[m, i + 1, j]
            + (1 - t) * u * table[m, i, j + 1] + t * u * table[m, i + 1, j + 1])
