"""PNG plots of one or several experiments' trials (matplotlib, Agg backend: no display needed).

Every function draws exactly the data it returns, so a test (or a notebook) can check that the
picture shows the DataFrame's numbers, and reuse them without re-deriving anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import matplotlib

matplotlib.use("Agg")   # files only; never open a window (and work on headless machines)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lcp_tune.store.files import atomic_path  # noqa: E402

from .trials import FINISHED, SCORED, STOPPED, comp_columns  # noqa: E402

Frames = Mapping[str, pd.DataFrame]   # label -> load_trials() table
_MARKERS = {"identity": ("s", "global ranking (identity)"), "uniform": ("D", "uniform")}


def ranked(trials: pd.DataFrame) -> pd.Series:
    """Which trials compete for best: those that ran all their steps, as the search ranks them.

    A trial stopped early (ASHA) scored after fewer recovery steps, so its loss is not
    comparable; only when no trial finished are the stopped-early ones ranked.
    """
    scored = trials["status"].isin(SCORED) & trials["val_loss"].notna()
    finished = scored & (trials["status"] == FINISHED)
    return finished if finished.any() else scored


def best_so_far(trials: pd.DataFrame) -> pd.DataFrame:
    """Per trial number: val_loss (NaN for failed or unfinished trials) and the running minimum
    over the ranked trials (see ranked)."""
    ordered = trials.sort_values("trial_number")
    loss = ordered["val_loss"].where(ordered["status"].isin(SCORED))
    best = ordered["val_loss"].where(ranked(ordered)).cummin().ffill()
    return pd.DataFrame({"val_loss": loss.to_numpy(), "best_so_far": best.to_numpy()},
                        index=pd.Index(ordered["trial_number"].to_numpy(), name="trial_number"))


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The ranked trial with the lowest validation loss (first one on ties), or None."""
    candidates = trials[ranked(trials)]
    if candidates.empty:
        return None
    return candidates.sort_values("trial_number").loc[lambda t: t["val_loss"].idxmin()]


def plot_best_so_far(frames: Frames, path: Path) -> dict[str, pd.DataFrame]:
    """Best-so-far validation loss against trial number, one line per experiment."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = {}
    for i, (label, trials) in enumerate(frames.items()):
        curve = curves[label] = best_so_far(trials)
        color = f"C{i % 10}"
        ax.plot(curve.index, curve["best_so_far"], drawstyle="steps-post", color=color, label=label)
        ax.scatter(curve.index, curve["val_loss"], s=12, alpha=0.35, color=color)
    ax.set(xlabel="trial number (in order of start)", ylabel="validation loss (lower is better)",
           title="Search progress: best validation loss so far (dots: each trial)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)
    return curves


def plot_loss_vs_flops(frames: Frames, path: Path) -> dict[str, pd.DataFrame]:
    """Validation loss against FLOPs ratio over every scored trial (x: stopped early); best and
    warm starts marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = {}
    for i, (label, trials) in enumerate(frames.items()):
        scored = trials[trials["status"].isin(SCORED)].sort_values("trial_number")
        data = points[label] = scored[["trial_number", "status", "warm_start", "flops_ratio", "val_loss"]
                                      ].reset_index(drop=True)
        color, many = f"C{i % 10}", len(frames) > 1
        for status, marker in ((FINISHED, "o"), (STOPPED, "x")):
            part = data[data["status"] == status]
            if len(part) or status == FINISHED:
                ax.scatter(part["flops_ratio"], part["val_loss"], s=18, alpha=0.7, color=color, marker=marker,
                           label=label if status == FINISHED else (f"stopped early: {label}" if many else "stopped early"))
        best = best_trial(trials)
        if best is not None:
            ax.scatter([best["flops_ratio"]], [best["val_loss"]], s=160, marker="*", color=color,
                       label=f"best: {label}" if many else "best")
        for tag, (marker, name) in _MARKERS.items():
            warm = data[data["warm_start"] == tag]
            ax.scatter(warm["flops_ratio"], warm["val_loss"], s=70, marker=marker, facecolors="none",
                       edgecolors=color, label=f"{name}: {label}" if many else name)
    ax.set(xlabel="FLOPs ratio (pruned / base)", ylabel="validation loss",
           title="All trials: validation loss vs FLOPs kept")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)
    return points


def plot_keep_fractions(keep: Mapping[str, Mapping[str, float]], sizes: Mapping[str, int], path: Path,
                        title: str = "") -> pd.DataFrame:
    """Kept-channel fraction per group, one bar per method (best, identity, uniform).

    Args:
        keep: method -> group -> kept channels (report.json's methods[...]["keep"]).
        sizes: group -> channels in the base network (pruned/plan.json's group_sizes).
    """
    groups = list(sizes)
    fractions = pd.DataFrame({m: [counts.get(g, np.nan) / sizes[g] for g in groups] for m, counts in keep.items()},
                             index=pd.Index(groups, name="group"))
    fig, ax = plt.subplots(figsize=(min(30.0, max(7.0, 0.5 * len(groups))), 4.5))
    width = 0.8 / max(1, fractions.shape[1])
    x = np.arange(len(groups))
    for i, method in enumerate(fractions.columns):
        ax.bar(x + (i - (fractions.shape[1] - 1) / 2) * width, fractions[method], width, label=method)
    ax.set_xticks(x, groups, rotation=90, fontsize="small")
    ax.set(ylabel="kept fraction of channels", ylim=(0, 1.05),
           title=title or "Kept channels per group at the same budget")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)
    return fractions


def plot_compensation(frames: Frames, path: Path, picks: Optional[dict] = None) -> pd.DataFrame:
    """The picked compensation value per group (`picks`: label -> compensation.json's values; the
    best trial's where none was saved), one bar series per experiment.

    Values are dimensionless (units of the pooled metric std); 0 everywhere is plain global
    ranking, so a bar's sign says whether the search protected (+) or exposed (-) a group.
    """
    columns = {}
    for label, trials in frames.items():
        saved = (picks or {}).get(label)
        best = best_trial(trials)
        if saved:
            columns[label] = pd.Series({k: float(v) for k, v in saved.items() if k in comp_columns(trials)})
        elif best is not None:
            columns[label] = best[comp_columns(trials)].astype(float)
    values = pd.DataFrame(columns)
    values.index.name = "parameter"
    fig, ax = plt.subplots(figsize=(min(30.0, max(7.0, 0.5 * len(values))), 4.5))
    width = 0.8 / max(1, values.shape[1])
    x = np.arange(len(values))
    for i, label in enumerate(values.columns):
        ax.bar(x + (i - (values.shape[1] - 1) / 2) * width, values[label], width, label=label)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, list(values.index), rotation=90, fontsize="small")
    ax.set(ylabel="compensation (units of metric std)", title="Learned compensation per group (the pick)")
    ax.grid(axis="y", alpha=0.3)
    if values.shape[1]:
        ax.legend(fontsize="small")
    _save(fig, path)
    return values


def accuracy_vs_cost(reports: Mapping[str, dict]) -> pd.DataFrame:
    """One row per (experiment, method) of finished reports: test accuracy, FLOPs kept, measured
    latency kept (NaN where a report predates latency timing) and, for a latency budget, the
    predicted latency."""
    rows = []
    for label, report in reports.items():
        for method, m in (report.get("methods") or {}).items():
            rows.append({"experiment": label, "method": method, "test_acc": m.get("test_acc"),
                         "flops_ratio": m.get("flops_ratio"),
                         "measured_latency_ratio": m.get("measured_latency_ratio", np.nan),
                         "latency_ratio": m.get("latency_ratio", np.nan)})
    return pd.DataFrame(rows, columns=["experiment", "method", "test_acc", "flops_ratio",
                                       "measured_latency_ratio", "latency_ratio"])


def plot_accuracy_vs_cost(reports: Mapping[str, dict], path: Path) -> pd.DataFrame:
    """Test accuracy of every fine-tuned network against its measured latency (left) and its
    FLOPs (right), as fractions of the base: fewer FLOPs need not mean faster."""
    table = accuracy_vs_cost(reports)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, column, name in ((axes[0], "measured_latency_ratio", "measured latency"), (axes[1], "flops_ratio", "FLOPs")):
        for (label, method), row in table.set_index(["experiment", "method"]).iterrows():
            ax.scatter(row[column], 100 * row["test_acc"], s=40)
            ax.annotate(method if len(reports) == 1 else f"{label}: {method}", (row[column], 100 * row["test_acc"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"{name} kept (fraction of the base)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle("accuracy against measured latency and FLOPs")
    fig.tight_layout()
    _save(fig, path)
    return table


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
