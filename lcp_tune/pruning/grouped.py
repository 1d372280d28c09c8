"""Grouped (non-depthwise) convs: which channel groups must keep equal counts per conv-group.

A conv with G groups sees its inputs and produces its outputs in G blocks; after pruning, every
block must still hold the same number of channels, or the weight [out, in / G, k, k] no longer
exists. Torch-Pruning 1.6.1 prunes such convs' inputs by keeping the first len/G indices, which
is wrong, so lcp-tune models them itself: a channel group that reaches a grouped conv gets one
partition label per channel (its block) and keeps the same count from every block. Groups whose
channels reach a grouped conv in any other pattern are left unpruned and listed as excluded.
"""
from __future__ import annotations

import dataclasses

import numpy as np


def partition_groups(groups: list, layers: dict, excluded: dict[str, str]) -> list:
    """Label the channels of groups that reach grouped convs; exclude the groups we cannot."""
    while True:
        labels: dict[str, np.ndarray] = {}
        bad: dict[str, str] = {}
        for name, info in layers.items():
            if info.kind != "grouped":
                continue
            for dim, width in (("in", info.in_dim), ("out", info.out_dim)):
                touching = [(g, s) for g in groups for s in g.slices if s.module == name and s.dim == dim]
                if touching:
                    _label_dim(name, info.groups, width, touching, labels, bad)
        if not bad:
            return [_with_partitions(g, labels.get(g.name)) for g in groups]
        excluded.update(bad)
        groups = [g for g in groups if g.name not in bad]


def _label_dim(layer: str, conv_groups: int, width: int, touching: list, labels: dict, bad: dict) -> None:
    """Check one dimension of one grouped conv; record the block of every channel it carries."""
    per_block = width // conv_groups
    reason = f"its channels reach grouped conv {layer!r} ({conv_groups} groups) unevenly"
    owned = np.concatenate([s.module_idxs for _, s in touching])
    unowned = np.setdiff1d(np.arange(width), owned)
    free = np.bincount(unowned // per_block, minlength=conv_groups)
    uneven_rest = free.min() != free.max()
    for group, s in touching:
        block = s.module_idxs // per_block
        per_channel = np.bincount(s.root_idxs, minlength=group.size)
        counts = np.bincount(block, minlength=conv_groups)
        if uneven_rest or per_channel.max() != 1 or counts.min() != counts.max():
            bad[group.name] = reason
            continue
        label = np.empty(group.size, dtype=np.int64)
        label[s.root_idxs] = block
        _, label = np.unique(label, return_inverse=True)   # blocks numbered 0..P-1
        old = labels.get(group.name)
        if old is not None and not np.array_equal(old, label):
            bad[group.name] = f"its channels reach grouped convs with different group layouts ({layer!r})"
        labels[group.name] = label


def _with_partitions(group, label):
    if label is None:
        return group
    return dataclasses.replace(group, partitions=int(label.max()) + 1, part_of=label)
