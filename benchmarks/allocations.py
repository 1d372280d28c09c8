"""What each method of the headline table kept, and which channels (issue 13, item 5; no training)

    python benchmarks/allocations.py [--out benchmarks/results/paper_table_fashion-mnist_resnet20_narrow]

Reads the unit folders that `paper_table.py` leaves and prints two tables:
1. **Widths:** for every (seed, budget, method), the share of the base's channels kept in the stem
   and in each of the three stages, and in the blocks' inner convolutions (conv1, free to prune)
   against their outer ones (conv2, tied to the residual path), from the fine-tuned networks.
2. **Channels at equal widths:** Torch-Pruning's local pruner and our uniform pruning keep about
   the same number of channels in every layer. Do they keep the same channels? Each BatchNorm
   layer's running statistics identify which of the base's channels a pruned network holds; this
   prunes the base again both ways (milliseconds and seconds, no training) and counts the layers
   where the two keep the same set.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DEFAULT = HERE / "results" / "paper_table_fashion-mnist_resnet20_narrow"


def conv_widths(state: dict) -> "OrderedDict[str, int]":
    """Output channels of every convolution in a state_dict (name without '.weight')."""
    return OrderedDict((k[: -len(".weight")], v.shape[0]) for k, v in state.items()
                       if k.endswith(".weight") and getattr(v, "ndim", 0) == 4)


def _state(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            return state[key]
    return state


def shares(widths: dict, base: dict) -> dict[str, float]:
    """Kept share of the base's channels per part: stem, stage1-3, inner (conv1), outer (conv2)."""
    parts: dict[str, list[int]] = {}
    for name, n in widths.items():
        if name not in base:
            continue   # (the classifier is not a convolution; nothing else is skipped)
        stage = re.match(r"layer(\d)", name)
        keys = [f"stage{stage.group(1)}" if stage else "stem"]
        keys += ["inner"] if name.endswith("conv1") and stage else ["outer"] if name.endswith("conv2") else []
        for key in keys:
            kept, total = parts.setdefault(key, [0, 0])
            parts[key] = [kept + n, total + base[name]]
    return {key: kept / total for key, (kept, total) in parts.items()}


def width_rows(out: Path) -> list[dict]:
    """One row per (seed, budget, method) with a fine-tuned network in `out`'s unit folders."""
    rows = []
    for unit in sorted(out.glob("s*-b*-lcp")):
        seed, budget = re.match(r"s(\d+)-b([\d.]+)-lcp", unit.name).groups()
        base = conv_widths(_state(unit / "base.pt"))
        networks = {p.name.split("-")[0]: p for p in sorted((unit / "finetune").glob("*.pt"))}
        networks.update({peer: out / f"s{seed}-b{budget}-{peer}" / "finetune.pt" for peer in ("tp-global", "tp-local")})
        for method, path in networks.items():
            if path.is_file():
                rows.append({"seed": int(seed), "budget": float(budget), "method": method,
                             **shares(conv_widths(_state(path)), base)})
    return rows


def kept_channels(pruned: nn.BatchNorm2d, base: nn.BatchNorm2d) -> frozenset[int]:
    """The base channels a pruned BatchNorm holds: each matched by its running mean and variance."""
    stats = torch.stack([base.running_mean, base.running_var], 1)
    mine = torch.stack([pruned.running_mean, pruned.running_var], 1)
    return frozenset(torch.cdist(mine, stats).argmin(1).tolist())


def same_channels(ours: nn.Module, theirs: nn.Module, base: nn.Module) -> tuple[int, int, int]:
    """(BatchNorm layers, of those at equal widths, of those holding the same channels)."""
    bns = lambda m: [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]  # noqa: E731
    equal = same = 0
    for a, b, r in zip(bns(ours), bns(theirs), bns(base)):
        if a.num_features == b.num_features:
            equal += 1
            same += kept_channels(a, r) == kept_channels(b, r)
    return len(bns(base)), equal, same


def channel_rows(out: Path) -> list[dict]:
    sys.path.insert(0, str(HERE))
    from peers import torch_pruning_model

    from lcp_tune.candidate import build_pruner
    from lcp_tune.data.registry import load_experiment_data
    from lcp_tune.models import build_model
    from lcp_tune.store.checkpoints import load_state_dict
    from lcp_tune.store.experiment import Experiment

    rows = []
    for unit in sorted(out.glob("s*-b*-lcp")):
        config = Experiment(unit).config()
        data = load_experiment_data(config)
        base = build_model(config.arch, data.num_classes, data.input_shape[0])
        base.load_state_dict(load_state_dict(unit / "base.pt"))
        base.eval()
        budget = config.prune.budget
        pruner = build_pruner(config, base, data)
        ours = pruner.apply(pruner.plan(pruner.uniform(budget), budget))
        theirs, ratio = torch_pruning_model(base, data.input_shape, budget, False)
        layers, equal, same = same_channels(ours, theirs, base)
        rows.append({"seed": config.seed, "budget": budget, "layers": layers, "equal widths": equal,
                     "same channels": same, "tp-local FLOPs": f"{ratio:.3f}"})
    return rows


def merged(kept: list[dict], new: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """`new` rows, and the `kept` ones whose unit folder is gone (unit folders are not in git, so
    a sitting on another machine reads only its own): one row per `keys`, sorted by them."""
    rows = {tuple(r[k] for k in keys): r for r in kept}
    rows.update({tuple(r[k] for k in keys): r for r in new})
    return sorted(rows.values(), key=lambda r: (r["seed"], -r["budget"], *(str(r[k]) for k in keys[2:])))


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.2f}" if isinstance(row.get(c), float) and c != "budget"
                                        else str(row.get(c, "-")) for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    from lcp_tune.store.files import atomic_write

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT, help="a paper_table.py results folder")
    args = parser.parse_args()
    path = args.out / "allocations.json"
    kept = json.loads(path.read_text()) if path.is_file() else {"widths": [], "channels": []}
    widths = merged(kept["widths"], width_rows(args.out), ("seed", "budget", "method"))
    print(markdown(widths, ["seed", "budget", "method", "stem", "stage1", "stage2", "stage3", "inner", "outer"]))
    print()
    channels = merged(kept["channels"], channel_rows(args.out), ("seed", "budget"))
    print(markdown(channels, ["seed", "budget", "layers", "equal widths", "same channels", "tp-local FLOPs"]))
    # atomically: the rows of units whose folders are gone exist nowhere else
    atomic_write(path, json.dumps({"widths": widths, "channels": channels}, indent=1))


if __name__ == "__main__":
    main()
