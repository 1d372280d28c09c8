"""The final report: the numbers of every fine-tuned method, and the table printed at the end."""
from __future__ import annotations

from typing import Optional

from lcp_tune.config import ExperimentConfig

LABELS = {"lcp": "learned (LCP)", "random": "random search", "global": "global ranking", "uniform": "uniform"}
BUDGET_SLACK = 0.005   # a method further under its budget than this is named in the report


def under_budget(methods: dict, budget: float, resource: str) -> dict[str, float]:
    """Methods whose pruned network costs less than budget - 0.005 of the base: the planner fills
    the budget, so only the channel granularity (a layer's next step costing more than what is
    left) can cause it, and the comparison is then at unequal cost."""
    return {name: m[f"{resource}_ratio"] for name, m in methods.items()
            if m.get(f"{resource}_ratio") is not None and m[f"{resource}_ratio"] < budget - BUDGET_SLACK}


def build_report(config: ExperimentConfig, base_acc: float, methods: dict, outcome, recovery: dict,
                 test_images: int = 0, latency: Optional[dict] = None) -> dict:
    """report.json: the chosen method's numbers at the top, every method under "methods".

    `latency`: the base network's measured latency and the settings every network was timed
    under (each method carries its own measured and, for a latency budget, predicted ratio)."""
    chosen = methods[config.method]
    timing = {}
    if latency:
        timing = {"base_latency_ms": latency["base_latency_ms"], "latency_settings": latency["settings"],
                  "latency_ms": chosen.get("latency_ms"), "measured_latency_ratio": chosen.get("measured_latency_ratio"),
                  "latency_ratio": chosen.get("latency_ratio")}
    return {"test_images": test_images, **timing,
        "arch": config.arch, "data": config.data, "budget": config.prune.budget,
        "resource": config.prune.resource, "method": config.method, "base_test_acc": base_acc,
        "recipe": config.recipe, "pruned_test_acc": chosen["test_acc"], "gap": chosen["gap"],
        "flops_ratio": chosen["flops_ratio"], "params_ratio": chosen["params_ratio"],
        "search_objective": chosen["search_objective"],
        "warm_start_objectives": {"global": recovery["global"]["search_objective"],
                                  "uniform": recovery["uniform"]["search_objective"]},
        "num_trials": outcome.num_trials if outcome else 0,
        "failed_trials": outcome.num_errors if outcome else 0,
        "search_wall_time_s": outcome.wall_time_s if outcome else 0.0,
        "race": _race_summary(outcome),
        "searcher": config.search.searcher if config.method == "lcp" else ("random" if outcome else None),
        "methods": methods,
        "under_budget": under_budget(methods, config.prune.budget, config.prune.resource),
    }


def _race_summary(outcome) -> Optional[dict]:
    """The race's pick, its rungs and time, where a race ran."""
    race = getattr(outcome, "race", None)
    if race is None:
        return None
    rungs = sorted({row["rung"]: row["steps"] for row in race.rows}.items())
    return {"pick": race.pick.name, "pick_metric": race.pick.metric, "wall_time_s": race.wall_time_s,
            "rungs": [{"rung": r, "steps": steps, "candidates": sum(1 for row in race.rows if row["rung"] == r)}
                      for r, steps in rungs]}


def _latency_cell(m: dict) -> str:
    measured, predicted = m.get("measured_latency_ratio"), m.get("latency_ratio")
    if measured is None:
        return "-"
    return f"{predicted:.3f}>{measured:.3f}" if predicted is not None else f"{measured:.3f}"


def format_report(report: dict) -> str:
    """The final table printed at the end of a run."""
    search = (f"search: {report['num_trials']} trials ({report['searcher']}), {report['search_wall_time_s']:.0f}s"
              if report.get("num_trials") else "no search")
    lines = [
        "",
        f"lcp-tune report: {report['arch']} on {report['data']}, budget {report['budget']:g} of base "
        f"{report['resource']}, method {report.get('method', 'lcp')}",
        f"base test accuracy {report['base_test_acc'] * 100:.2f}% on {report.get('test_images', 0)} test images   "
        f"{search}",
        "",
        f"{'method':<18}{'test acc':>10}{'gap':>9}{'FLOPs':>8}{'params':>8}{'latency':>14}{'search obj':>12}"
        f"{'after recovery':>16}",
    ]
    for name, m in report["methods"].items():
        obj = m.get("search_objective")
        rec = m.get("recovery_test_acc")
        lines.append(f"{LABELS.get(name, name):<18}{m['test_acc'] * 100:>9.2f}%{m['gap'] * 100:>8.2f}%"
                     f"{m['flops_ratio']:>8.3f}{m['params_ratio']:>8.3f}{_latency_cell(m):>14}"
                     f"{(f'{obj:.4f}' if obj is not None else '-'):>12}"
                     f"{(f'{rec * 100:.2f}%' if rec is not None else '-'):>16}")
    steps = next((m.get("recovery_steps") for m in report["methods"].values() if m.get("recovery_steps")), None)
    recovery = f"{steps} recovery steps" if steps else "the short recovery"
    lines.append(f"(search obj: validation loss after {recovery}, lower is better; after recovery: test accuracy "
                 f"of that candidate, which the full fine-tune continues and keeps if no epoch beats it)")
    race = report.get("race")
    if race:
        rungs = ", ".join(f"{r['candidates']} at {r['steps']} steps" for r in race["rungs"])
        lines.append(f"race: {rungs}; picked {race['pick']} in {race['wall_time_s']:.0f}s")
    if report.get("base_latency_ms") is not None:
        s = report.get("latency_settings") or {}
        lines.append(f"(latency: measured fraction of the base's {report['base_latency_ms']:.3f} ms per batch of "
                     f"{s.get('batch', '?')} on {s.get('device', '?')}, {s.get('threads', '?')} thread(s); "
                     f"predicted > measured for a latency budget)")
    for name, ratio in (report.get("under_budget") or {}).items():
        lines.append(f"note: {LABELS.get(name, name)} lands at {ratio:.3f} of the base {report['resource']} for a "
                     f"{report['budget']:g} budget: no layer's next channel step fits what is left (channel granularity)")
    return "\n".join(lines)
