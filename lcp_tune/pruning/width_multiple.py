"""The width multiple a device computes channels in, read from timings at consecutive widths.

Hardware runs some widths faster than their neighbours: tensor cores want multiples of 8, and
CPU kernels block channels by 8 or 16 and take slower paths off the block. Given "sweeps" (one
layer shape timed at every width of a span), the multiple is the largest that widths can be
rounded up to at (almost) no cost in time: `--round-to auto`. Plain numpy; the timing is in
latency.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MULTIPLES = (2, 4, 8, 16, 32)                   # width multiples a sweep can find
ROUND_UP_FREE = 0.01                            # rounding widths up to m costs at most this: time steps at m


@dataclass(frozen=True)
class Sweep:
    """One layer shape timed at every width of a span (its input width following its output)."""

    layer: str              # the first layer of that shape, for the log
    widths: np.ndarray      # consecutive output widths
    times: np.ndarray       # seconds at each


def rounding_costs(sweeps: list[Sweep]) -> dict[int, float]:
    """For each multiple m: how much more time the swept widths take when each is rounded up to
    a multiple of m, as a share of their time (widths whose multiple lies past the sweep left
    out). Hardware that computes channels in blocks of m makes that nothing, or less than
    nothing where odd widths take a slow path; time that grows smoothly makes it about
    (m - 1) / 2 channels' worth."""
    costs = {}
    for m in MULTIPLES:
        extra = total = 0.0
        for sweep in sweeps:
            up = -(-sweep.widths // m) * m
            inside = up <= sweep.widths[-1]
            extra += float((sweep.times[up[inside] - sweep.widths[0]] - sweep.times[inside]).sum())
            total += float(sweep.times[inside].sum())
        costs[m] = extra / total if total > 0 else math.inf
    return costs


def cost_words(sweeps: list[Sweep]) -> str:
    """'rounding up to 2: +1.2%, 4: +3.0%, ...' for logs."""
    costs = rounding_costs(sweeps)
    return "rounding up to " + ", ".join(f"{m}: {100 * costs[m]:+.1f}%" for m in MULTIPLES)


def width_multiple(sweeps: list[Sweep]) -> int:
    """The largest multiple whose rounding up costs at most ROUND_UP_FREE of the time more than
    the cheapest choice (1, which costs nothing, or a multiple that saves time): on blocks of 8
    that is 8 (16 would pay for half a block); where odd widths take a slow path, 2."""
    costs = {1: 0.0, **rounding_costs(sweeps)}
    best = min(costs.values())
    return max(m for m, cost in costs.items() if cost <= best + ROUND_UP_FREE)
