"""The numbers an analysis reports: best trial, warm starts, improvement, searcher progress,
and which experiments can be compared with which."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from .plots import best_so_far, best_trial, ranked
from .trials import ERROR, FINISHED, SCORED, STOPPED, UNFINISHED, ExperimentRecords

# Two experiments' searches are comparable when they prune the same network, on the same
# data, to the same budget: then their validation losses measure the same thing.
COMPARABLE_FIELDS = ("arch", "data", "prune.budget", "prune.resource")


@dataclass(frozen=True)
class Summary:
    """One experiment's search, in numbers."""

    label: str
    counts: dict[str, int]
    best: Optional[pd.Series]
    identity: Optional[pd.Series]
    uniform: Optional[pd.Series]
    progress: pd.DataFrame        # best_so_far(): val_loss and best_so_far by trial number
    ranked_loss: pd.Series        # val_loss of the trials that compete for best, by trial number

    @property
    def num_trials(self) -> int:
        return sum(self.counts.values())

    @property
    def has_scores(self) -> bool:
        return self.best is not None

    def improvement(self, baseline: Optional[pd.Series]) -> Optional[float]:
        """Validation-loss drop of the best trial below `baseline` (positive = better)."""
        if self.best is None or baseline is None or pd.isna(baseline["val_loss"]):
            return None
        return float(baseline["val_loss"] - self.best["val_loss"])

    def beating(self, baseline: Optional[pd.Series]) -> Optional[int]:
        """How many sampled (non-warm-start) ranked trials scored below `baseline`."""
        if baseline is None:
            return None
        return int((self._sampled < baseline["val_loss"]).sum())

    @property
    def num_sampled(self) -> int:
        """Ranked trials the searcher proposed itself (warm starts excluded)."""
        return int(len(self._sampled))

    @property
    def _sampled(self) -> pd.Series:
        return self.ranked_loss[~self.ranked_loss.index.isin(self._warm_numbers)]

    @property
    def _warm_numbers(self) -> list[int]:
        return [int(t["trial_number"]) for t in (self.identity, self.uniform) if t is not None]


def summarize(label: str, trials: pd.DataFrame) -> Summary:
    counts = {s: int((trials["status"] == s).sum()) for s in (FINISHED, STOPPED, ERROR, UNFINISHED)}
    progress = best_so_far(trials) if len(trials) else pd.DataFrame(columns=["val_loss", "best_so_far"])
    rows = trials[ranked(trials)] if len(trials) else trials
    ranked_loss = pd.Series(rows["val_loss"].to_numpy(), index=rows["trial_number"].to_numpy(), dtype=float)
    return Summary(label, counts, best_trial(trials), _warm(trials, "identity"), _warm(trials, "uniform"),
                   progress, ranked_loss)


def _warm(trials: pd.DataFrame, tag: str) -> Optional[pd.Series]:
    if "warm_start" not in trials:
        return None
    rows = trials[(trials["warm_start"] == tag) & trials["status"].isin(SCORED)]
    return None if rows.empty else rows.iloc[0]


def comparable_key(records: ExperimentRecords) -> tuple:
    c = records.config
    return (c.arch, c.data, c.prune.budget, c.prune.resource)


def describe_key(key: tuple) -> str:
    arch, data, budget, resource = key
    return f"{arch} on {data} at {budget:g} of base {resource}"


def group_comparable(records: list[ExperimentRecords]) -> list[list[int]]:
    """Indices of the experiments, grouped so each group shares COMPARABLE_FIELDS; first given first."""
    groups: dict[tuple, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(comparable_key(rec), []).append(i)
    return list(groups.values())


def incomparable_notes(records: list[ExperimentRecords], labels: list[str], groups: list[list[int]]) -> list[str]:
    """One sentence per experiment outside the first group: what differs from the reference."""
    if len(groups) < 2:
        return []
    ref = groups[0][0]
    ref_key = comparable_key(records[ref])
    notes = []
    for group in groups[1:]:
        key = comparable_key(records[group[0]])
        diff = [f"{name} {a!r} vs {b!r}" for name, a, b in zip(COMPARABLE_FIELDS, key, ref_key) if a != b]
        names = ", ".join(labels[i] for i in group)
        notes.append(f"{names} ({describe_key(key)}) is not comparable with {labels[ref]} "
                     f"({describe_key(ref_key)}): {', '.join(diff)}; analysed separately")
    return notes


def no_score_note(label: str, summary: Summary) -> Optional[str]:
    """Why an experiment has nothing to rank, or None when it has a scored trial."""
    if summary.has_scores:
        return None
    if summary.num_trials == 0:
        return f"{label} has no finished trial (no trials recorded under its search/ folder)"
    parts = ", ".join(f"{n} {s}" for s, n in summary.counts.items() if n)
    return f"{label} has no finished trial ({summary.num_trials} trials: {parts})"
