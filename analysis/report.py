"""Experiments -> trials.parquet, plots/*.png and a markdown report (analysis.md).

One experiment is analysed in its own folder; several are compared in one report, with the
experiments that prune the same network on the same data to the same budget drawn together.
Everything that can be written is written before a problem is reported, so an interrupted or
failed search still leaves its table and its notes behind.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from lcp_tune.errors import LcpTuneError
from lcp_tune.store.experiment import new_experiment_path
from lcp_tune.store.files import atomic_write
from lcp_tune.store.lock import experiment_lock
from lcp_tune.tune.trials_table import write_table

from .markdown import render
from .plots import (plot_accuracy_vs_cost, plot_best_so_far, plot_compensation, plot_keep_fractions,
                    plot_loss_vs_flops)
from .summary import Summary, group_comparable, incomparable_notes, no_score_note, summarize
from .trials import ExperimentRecords, keep_columns, load_trials, open_records

REPORT_NAME, TABLE_NAME, PLOTS_DIR = "analysis.md", "trials.parquet", "plots"
METHOD_LABELS = {"lcp": "best (LCP)", "global": "identity (global ranking)", "uniform": "uniform"}


@dataclass
class AnalysisResult:
    """What write_analysis wrote, and what it could not compare or rank."""

    out: Path
    trials: pd.DataFrame                                  # all experiments' trials, as in trials.parquet
    summaries: dict[str, Summary]
    plots: dict[str, Path] = field(default_factory=dict)  # plot name -> PNG
    plotted: dict[str, object] = field(default_factory=dict)   # plot name -> the data it drew
    problems: list[str] = field(default_factory=list)     # bad input found (written anyway)
    notes: list[str] = field(default_factory=list)        # plots skipped and why

    @property
    def report(self) -> Path:
        return self.out / REPORT_NAME


class AnalysisIncomplete(LcpTuneError):
    """The analysis was written, but some experiment had nothing to rank or compare."""

    def __init__(self, result: AnalysisResult):
        super().__init__(f"analysis written to {result.out}, but " + "; ".join(result.problems))
        self.result = result


def default_output(experiments: Sequence[str | Path]) -> Path:
    """The experiment folder itself for one experiment, a fresh lcp-runs/compare-<time> for several."""
    if len(experiments) == 1:
        return Path(experiments[0])
    return new_experiment_path(prefix="compare")


def write_analysis(experiments: Sequence[str | Path], out: Optional[str | Path] = None,
                   strict: bool = True) -> AnalysisResult:
    """Analyse one experiment, or compare several, into `out` (see default_output).

    Writes trials.parquet (load_trials of every experiment, stacked; one experiment analysed in
    its own folder keeps the table its search wrote), plots/*.png and
    analysis.md. A folder that is not an experiment fails before anything is written; an
    experiment without a finished trial, or experiments that cannot be compared, are written
    as far as they go and then raised as AnalysisIncomplete (unless strict=False).

    Example:

        >>> result = write_analysis(["lcp-runs/search-a", "lcp-runs/search-b"], "compare-ab")  # doctest: +SKIP
        >>> print(result.report.read_text())                                                 # doctest: +SKIP
    """
    if not experiments:
        raise LcpTuneError("no experiment given: pass at least one experiment folder")
    records = [open_records(p) for p in experiments]   # validate all before writing anything
    labels = _labels([r.root for r in records])
    out = Path(out) if out is not None else default_output(experiments)
    if len(records) > 1 and any(out.resolve() == r.root.resolve() for r in records):
        raise LcpTuneError(f"--out {out} is one of the experiments compared: their analysis would replace its own "
                           f"trials.parquet; choose a folder of its own")
    if out.is_dir() and (out / "config.yaml").is_file() and not (len(records) == 1 and out.resolve() == records[0].root.resolve()):
        raise LcpTuneError(f"--out {out} is another experiment's folder; choose a folder of its own")
    with experiment_lock(out, "analyze"):
        return _write_analysis(records, labels, out, strict)


def _write_analysis(records: list, labels: list[str], out: Path, strict: bool) -> AnalysisResult:
    frames = {label: load_trials(rec) for label, rec in zip(labels, records)}
    table = pd.concat([f for f in frames.values()], ignore_index=True) if len(frames) > 1 else frames[labels[0]]
    if len(records) > 1 or out.resolve() != records[0].root.resolve():   # an experiment's own is written
        write_table(out / TABLE_NAME, table)                                # by its search, same schema
    summaries = {label: summarize(label, frames[label]) for label in labels}
    result = AnalysisResult(out, table, summaries)
    groups = group_comparable(records)
    result.problems += [n for n in (no_score_note(lb, summaries[lb]) for lb in labels) if n]
    result.problems += incomparable_notes(records, labels, groups)
    picks = {label: (rec.compensation or {}).get("values") for label, rec in zip(labels, records)}
    for g, members in enumerate(groups):
        _plot_group({labels[i]: frames[labels[i]] for i in members}, out, "" if g == 0 else f"_{g + 1}", result,
                    picks)
    for label, rec in zip(labels, records):
        suffix = "" if len(labels) == 1 else f"_{_slug(label)}"
        _plot_keep(label, rec, frames[label], summaries[label], out, suffix, result)
    _plot_costs(labels, records, out, result)
    for rec in records:
        result.notes += list(rec.notes)
    atomic_write(out / REPORT_NAME, render(records, labels, groups, result))
    if strict and result.problems:
        raise AnalysisIncomplete(result)
    return result


def _plot_group(frames: dict[str, pd.DataFrame], out: Path, suffix: str, result: AnalysisResult,
                picks: Optional[dict] = None) -> None:
    """The plots that put a comparable group's trials on the same axes; the compensation plot
    shows each experiment's pick (compensation.json) where it has one."""
    scored = {label: f for label, f in frames.items() if result.summaries[label].has_scores}
    if not scored:
        result.notes.append(f"no plots of {', '.join(frames)}: no finished trial to draw")
        return
    for name, fn in (("best_so_far", plot_best_so_far), ("loss_vs_flops", plot_loss_vs_flops),
                     ("compensation", plot_compensation)):
        path = out / PLOTS_DIR / f"{name}{suffix}.png"
        extra = {"picks": picks} if fn is plot_compensation else {}
        result.plotted[f"{name}{suffix}"] = fn(scored, path, **extra)
        result.plots[f"{name}{suffix}"] = path


def _plot_costs(labels: list[str], records: list[ExperimentRecords], out: Path, result: AnalysisResult) -> None:
    """Accuracy against measured latency and FLOPs, for the experiments whose report timed them."""
    reports = {label: rec.report for label, rec in zip(labels, records)
               if rec.report and any("measured_latency_ratio" in m for m in (rec.report.get("methods") or {}).values())}
    if not reports:
        return
    path = out / PLOTS_DIR / "accuracy_vs_cost.png"
    result.plotted["accuracy_vs_cost"] = plot_accuracy_vs_cost(reports, path)
    result.plots["accuracy_vs_cost"] = path


def _plot_keep(label: str, rec: ExperimentRecords, trials: pd.DataFrame, summary: Summary, out: Path,
               suffix: str, result: AnalysisResult) -> None:
    """Kept fraction per group: best vs identity vs uniform, from report.json (else the trials)."""
    sizes = rec.group_sizes
    keep = keep_by_method(rec, trials, summary)
    if not sizes or not keep:
        missing = "pruned/plan.json (group sizes)" if not sizes else "report.json or a finished trial"
        result.notes.append(f"no kept-channel plot for {label}: it has no {missing}")
        return
    name = f"keep_fractions{suffix}"
    path = out / PLOTS_DIR / f"{name}.png"
    c = rec.config
    title = f"{label}: kept channels per group at {c.prune.budget:g} of base {c.prune.resource}"
    result.plotted[name] = plot_keep_fractions(keep, sizes, path, title)
    result.plots[name] = path


def keep_by_method(rec: ExperimentRecords, trials: pd.DataFrame, summary: Summary) -> dict[str, dict]:
    """method label -> group -> kept channels: report.json's final plans, else the trials' rows."""
    methods = (rec.report or {}).get("methods") or {}
    keep = {METHOD_LABELS.get(m, m): dict(v["keep"]) for m, v in methods.items()
            if isinstance(v, dict) and isinstance(v.get("keep"), dict)}
    if keep:
        return keep
    rows = {"best (LCP)": summary.best, "identity (global ranking)": summary.identity,
            "uniform": summary.uniform}
    return {name: {c.removeprefix("keep/"): float(row[c]) for c in keep_columns(trials) if pd.notna(row[c])}
            for name, row in rows.items() if row is not None}


def _labels(roots: list[Path]) -> list[str]:
    """Short unique names: the folder name, with its parents added until names differ."""
    labels = [r.resolve().name or str(r) for r in roots]
    depth = 1
    while len(set(labels)) < len(labels) and depth < 8:
        depth += 1
        labels = ["/".join(r.resolve().parts[-depth:]) for r in roots]
    if len(set(labels)) < len(labels):   # the same folder given twice
        labels = [f"{lb} ({i + 1})" for i, lb in enumerate(labels)]
    return labels


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "experiment"
