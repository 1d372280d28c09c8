"""The markdown report: a comparison table (several experiments), then one section each."""
from __future__ import annotations

import os
from typing import Optional

import pandas as pd

from .summary import Summary, comparable_key, describe_key
from .trials import ExperimentRecords

PROGRESS_POINTS = (0.25, 0.5, 0.75, 1.0)


def render(records: list[ExperimentRecords], labels: list[str], groups: list[list[int]], result) -> str:
    lines = ["# lcp-tune analysis", ""]
    if result.problems:
        lines += ["**Problems:**", ""] + [f"- {p}" for p in result.problems] + [""]
    if len(labels) > 1:
        lines += _comparison(records, labels, groups, result.summaries)
    for label, rec in zip(labels, records):
        lines += _section(label, rec, result.summaries[label])
    lines += ["## Plots", ""] if result.plots else []
    for name, path in result.plots.items():
        lines += [f"![{name}]({os.path.relpath(path, result.out)})", ""]
    if result.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in result.notes] + [""]
    lines += ["Trials table: `trials.parquet` (`pandas.read_parquet`), one row per trial.", ""]
    return "\n".join(lines)


def _comparison(records, labels, groups, summaries: dict[str, Summary]) -> list[str]:
    lines = ["## Comparison", ""]
    for g, members in enumerate(groups):
        title = describe_key(comparable_key(records[members[0]]))
        lines += [f"Group {g + 1}: {title}", "",
                  "| experiment | searcher | seed | trials (finished) | best val loss | found at trial "
                  "| vs identity | vs uniform | LCP test acc |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for i in members:
            s, rec = summaries[labels[i]], records[i]
            found = "-" if s.best is None else f"{int(s.best['trial_number'])} of {s.num_trials}"
            test = ((rec.report or {}).get("methods", {}).get("lcp") or {}).get("test_acc")
            lines.append(f"| {labels[i]} | {rec.config.search.searcher} | {rec.config.seed} | "
                         f"{s.num_trials} ({s.counts['finished']}) | {_loss(s.best)} | {found} | "
                         f"{_delta(s.improvement(s.identity))} | {_delta(s.improvement(s.uniform))} | "
                         f"{_pct(test)} |")
        lines.append("")
    lines += ["(vs identity / uniform: how much lower the best validation loss is than the warm "
              "start's; positive is better.)", ""]
    return lines


def _section(label: str, rec: ExperimentRecords, s: Summary) -> list[str]:
    c = rec.config
    report = rec.report or {}
    counts = ", ".join(f"{n} {status}" for status, n in s.counts.items())
    wall = report.get("search_wall_time_s")
    lines = [f"## {label}: {describe_key(comparable_key(rec))}", "",
             f"Folder `{rec.root}`; searcher {c.search.searcher}, seed {c.seed}, metric {c.prune.metric}, "
             f"form {c.prune.form}, {c.search.tau_hat} recovery steps per trial.", "",
             f"Trials: {s.num_trials} ({counts})" + (f"; search wall time {wall:.0f} s." if wall else "."), ""]
    if s.best is None:
        return lines + ["No finished trial: nothing to rank yet.", ""]
    lines += ["| trial | role | val loss | val acc | FLOPs ratio | params ratio |", "|---|---|---|---|---|---|"]
    for role, row in (("best", s.best), ("identity (all-zero compensation)", s.identity),
                      ("uniform warm start", s.uniform)):
        if row is not None:
            lines.append(f"| {int(row['trial_number'])} (`{row['trial_id']}`) | {role} | {_loss(row)} | "
                         f"{_pct(row['val_acc'])} | {row['flops_ratio']:.3f} | {row['params_ratio']:.3f} |")
    lines += [""] + _improvements(s) + _progress(s) + _final(report)
    return lines


def _improvements(s: Summary) -> list[str]:
    lines = []
    for name, row in (("identity", s.identity), ("uniform", s.uniform)):
        if row is None:
            lines.append(f"- No {name} warm-start trial was found among the finished trials.")
            continue
        gain = s.improvement(row)
        rel = gain / row["val_loss"] * 100 if row["val_loss"] else 0.0
        same = " (the best trial is this warm start)" if row["trial_number"] == s.best["trial_number"] else ""
        lines.append(f"- Improvement over {name}: validation loss {row['val_loss']:.4f} -> "
                     f"{s.best['val_loss']:.4f} ({_delta(gain)}, {rel:.1f}% lower){same}.")
    return lines + [""]


def _progress(s: Summary) -> list[str]:
    curve = s.progress["best_so_far"]
    n = len(curve)
    points = sorted({max(1, round(p * n)) for p in PROGRESS_POINTS})
    at = ", ".join(f"after {k}: {_num(curve.iloc[k - 1])}" for k in points)
    lines = [f"Searcher progress: best found at trial {int(s.best['trial_number'])} of {n}; "
             f"best so far {at}."]
    if s.counts["stopped early"] and s.counts["finished"]:
        lines.append(f"{s.counts['stopped early']} trials stopped early are not ranked (fewer recovery steps).")
    beat_i, beat_u = s.beating(s.identity), s.beating(s.uniform)
    if beat_i is not None or beat_u is not None:
        lines.append(f"Of {s.num_sampled} ranked trials the searcher proposed (warm starts excluded), "
                     f"{'-' if beat_i is None else beat_i} beat identity and "
                     f"{'-' if beat_u is None else beat_u} beat uniform.")
    return [" ".join(lines), ""]


def _final(report: dict) -> list[str]:
    methods = report.get("methods")
    if not methods:
        return ["No report.json yet: the final fine-tune has not run.", ""]
    lines = [f"After the full fine-tune (test split; base test accuracy {_pct(report.get('base_test_acc'))}):", "",
             "| method | test acc | gap | FLOPs ratio | params ratio | search objective |",
             "|---|---|---|---|---|---|"]
    for name, m in methods.items():
        lines.append(f"| {name} | {_pct(m.get('test_acc'))} | {_pct(m.get('gap'))} | {_num(m.get('flops_ratio'), 3)} "
                     f"| {_num(m.get('params_ratio'), 3)} | {_num(m.get('search_objective'))} |")
    return lines + [""]


def _loss(row: Optional[pd.Series]) -> str:
    return "-" if row is None else _num(row["val_loss"])


def _num(value, digits: int = 4) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _delta(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _pct(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value * 100:.2f}%"
