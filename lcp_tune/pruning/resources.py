"""Vectorised FLOPs / parameter cost of per-group keep counts, and an independent counter.

FLOPs follow the papers' convention: multiply-accumulates of conv and linear layers only (BN,
ReLU, pooling and the linear bias are not counted). Every layer width is an affine function of
the groups' keep counts k, width = const + A @ k, so the cost of a whole network is a sum of
products of two such widths: a few small matrix-vector products per evaluation.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from .errors import PruningError
from .groups import CONV_TYPES, ChannelStructure, hooked_forward

RESOURCES = ("flops", "params", "latency")   # latency: a measured model (latency.py), attached


class CostModel:
    """cost(k) for any keep-count vector k (or a batch of them), exactly as the pruned module."""

    def __init__(self, structure: ChannelStructure):
        self.structure = structure
        names = list(structure.layers)
        self.layer_names = names
        index = {n: i for i, n in enumerate(names)}
        L, M = len(structure.groups), len(names)
        self.A_in, self.A_out = np.zeros((M, L)), np.zeros((M, L))
        in_dim = np.array([structure.layers[n].in_dim for n in names], dtype=float)
        out_dim = np.array([structure.layers[n].out_dim for n in names], dtype=float)
        for g, group in enumerate(structure.groups):
            for s in group.slices:
                if s.module not in index:
                    continue
                per_channel = np.bincount(s.root_idxs, minlength=group.size)
                if per_channel.min() != per_channel.max():
                    raise PruningError(
                        f"layer {s.module!r} maps the channels of group {group.name!r} unevenly; "
                        f"its cost cannot be modelled")
                target = self.A_out if s.dim == "out" else self.A_in
                target[index[s.module], g] += per_channel[0]
        kinds = [structure.layers[n].kind for n in names]
        depthwise = np.array([k == "depthwise" for k in kinds])
        norm = np.array([k == "norm" for k in kinds])
        # a depthwise conv / a norm layer has one input per output: its width is its out width
        self.A_in[depthwise | norm] = 0.0
        self.in_const = in_dim - self.A_in @ structure.group_sizes
        self.in_const[depthwise] = 1.0   # in_channels / groups stays 1
        self.in_const[norm] = 0.0
        self.out_const = out_dim - self.A_out @ structure.group_sizes
        # a grouped conv's weight sees in / groups inputs per output channel
        conv_groups = np.array([structure.layers[n].groups if k == "grouped" else 1
                                for n, k in zip(names, kinds)], dtype=float)
        self.A_in /= conv_groups[:, None]
        self.in_const /= conv_groups
        layers = [structure.layers[n] for n in names]
        self.macs = np.array([l.macs_per_unit for l in layers], dtype=float)
        self.w_per_unit = np.array([l.params_per_unit for l in layers], dtype=float)
        self.p_per_out = np.array([l.params_per_out for l in layers], dtype=float)
        self.fixed = float(sum(l.fixed_params for l in layers))
        full = structure.group_sizes.astype(float)
        self.base = {"flops": float(self.flops(full)), "params": float(self.params(full))}
        self.latency = None   # a LatencyModel, once measured for a device (attach_latency)

    def attach_latency(self, model) -> None:
        """Make "latency" a resource: predicted seconds per batch from a measured LatencyModel."""
        self.latency = model
        self.base["latency"] = float(model.predict(self.structure.group_sizes.astype(float)))

    def widths(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(in, out) width of every layer; `keep` is (L,) or (B, L)."""
        keep = np.asarray(keep, dtype=float)
        return keep @ self.A_in.T + self.in_const, keep @ self.A_out.T + self.out_const

    def flops(self, keep: np.ndarray) -> np.ndarray:
        w_in, w_out = self.widths(keep)
        return (w_in * w_out) @ self.macs

    def params(self, keep: np.ndarray) -> np.ndarray:
        w_in, w_out = self.widths(keep)
        return (w_in * w_out) @ self.w_per_unit + w_out @ self.p_per_out + self.fixed

    def cost(self, keep: np.ndarray, resource: str = "flops") -> np.ndarray:
        if resource == "flops":
            return self.flops(keep)
        if resource == "params":
            return self.params(keep)
        if resource == "latency":
            if self.latency is None:
                raise PruningError("resource 'latency' needs a latency model measured on the target device "
                                   "(Pruner.attach_latency)")
            return self.latency.predict(keep)
        raise PruningError(f"unknown resource {resource!r}: must be one of {', '.join(RESOURCES)}")

    def expected_widths(self, keep: np.ndarray) -> dict[str, tuple[int, int]]:
        """Per-layer (in, out) widths the pruned module must have, for the post-surgery check."""
        w_in, w_out = self.widths(keep)
        return {n: (int(round(a)), int(round(b))) for n, a, b in zip(self.layer_names, w_in, w_out)}


def measure_cost(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Count (MACs, parameters) of a real module by running it: independent of the planner.

    Conv: out positions x out channels x (in / groups) x kernel; linear: out elements x in.
    """
    total = [0]

    def hook(mod, inputs, out):
        if isinstance(mod, CONV_TYPES):
            total[0] += out[0].numel() * (mod.in_channels // mod.groups) * int(np.prod(mod.kernel_size))
        else:
            total[0] += out[0].numel() * mod.in_features

    hooked_forward(model, input_shape, CONV_TYPES + (nn.Linear,), hook)
    return total[0], sum(p.numel() for p in model.parameters())
