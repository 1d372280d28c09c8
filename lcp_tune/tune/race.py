"""The race: successive halving over recovery length, as Ray Tune trials.

The search scores every candidate after a short recovery (tau_hat steps, rung 0). That ranks
poor allocations from good ones, but not uniform's near neighbours (BENCHMARKS, "the pick"). The
race re-scores the finalists at longer recoveries before the pick: the search's best trials and
the warm starts (global ranking, uniform, and uniform widths under other channel metrics)
recover race[0] x tau_hat steps; the better half of them race[1] x tau_hat; and so on. The pick is
the best at the last rung. Each rung is one Tuner over a fixed list of candidates, so the rung's
trials run in parallel on the cluster like the search's; each finished evaluation is kept in
the trial cache, so a resumed race replays it and never redoes it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from lcp_tune.config import ExperimentConfig
from lcp_tune.data.search_subsets import SearchSubsets
from lcp_tune.errors import LcpTuneError

from .trial import METRIC, MODE, TRIAL_ERROR, TrialContext, _error_line, _evaluator
from .trial_cache import TrialCache

Log = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    """One allocation in the race: a compensation vector and the channel metric it ranks by."""

    name: str                         # "uniform", "identity", "uniform/group_l2", "trial 7"
    vector: tuple[float, ...]
    metric: Optional[str] = None      # None: the experiment's own (prune.metric)
    objective: float = math.nan       # its score at rung 0 (the search), where it had one

    def as_config(self) -> dict[str, Any]:
        return {"name": self.name, "vector": list(self.vector), "metric": self.metric}


@dataclass
class RaceOutcome:
    """The pick, every rung's scores (one row per candidate and rung) and the race's time."""

    pick: Candidate
    rows: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0


def finalists(search_rows: Sequence[tuple[np.ndarray, float]], warm: Sequence[Candidate], count: int) -> list[Candidate]:
    """The warm starts, then the search's best distinct candidates (lowest objective first),
    until `count` candidates; the warm starts always enter, and so does the search's best, even
    beyond `count`."""
    chosen = list(warm)
    seen = {_identity(c) for c in chosen}
    ranked = sorted((r for r in search_rows if math.isfinite(r[1])), key=lambda r: r[1])
    for number, (vector, objective) in enumerate(ranked, 1):
        if len(chosen) >= max(count, len(warm) + 1):
            break
        candidate = Candidate(f"search #{number}", tuple(float(v) for v in vector), None, float(objective))
        if _identity(candidate) not in seen:
            seen.add(_identity(candidate))
            chosen.append(candidate)
    return chosen


def _identity(candidate: Candidate) -> tuple:
    return candidate.metric, tuple(np.round(candidate.vector, 9))


def race_context(config: ExperimentConfig, space: Any, cache_dir: Path, run_key: str,
                 data_factories: Optional[dict] = None, latency: Optional[dict] = None) -> TrialContext:
    """The search's trial context (same evaluator key, so a reused worker keeps its evaluator)."""
    from lcp_tune.trust import trusted

    return TrialContext(config, space, run_key, str(cache_dir), (), dict(data_factories or {}), trusted(), latency)


def race_trial(config: dict, context: TrialContext, base_state: dict, steps: int,
               subsets: Optional[SearchSubsets] = None) -> None:
    """One race trial: recover one candidate for `steps` steps and report its validation."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, context.config.search.cpus_per_trial))
    spec = config["candidate"]
    vector = np.asarray(spec["vector"], dtype=float)
    cache = TrialCache(context.cache_dir, f"{context.key}-race-{steps}-{spec['metric']}")
    tags = {"candidate": spec["name"], "metric": spec["metric"] or context.config.prune.metric}
    recorded = cache.get(vector)
    if recorded is not None:   # finished before an interruption: replay, never redo
        tune.report({**recorded[-1], **tags, "replayed": True})
        return
    try:
        result = _evaluator(context, base_state, subsets).evaluate(vector, steps=steps, metric=spec["metric"])
    except Exception as exc:   # deterministic: reported, never retried
        tune.report({METRIC: float("nan"), TRIAL_ERROR: _error_line(exc), **tags, "replayed": False})
        return
    cache.put(vector, [result])
    tune.report({**result, **tags, "replayed": False})


def run_race(config: ExperimentConfig, storage: str, context: TrialContext, base_state: dict,
             candidates: list[Candidate], log: Log, subsets: Optional[SearchSubsets] = None) -> RaceOutcome:
    """Every rung of `config.search.race_steps()` over `candidates`, halving them between rungs."""
    start = time.time()
    rows: list[dict] = []
    alive = list(candidates)
    schedule = config.search.race_steps()
    for rung, steps in enumerate(schedule, 1):
        log(f"race rung {rung}: {len(alive)} candidates, {steps} recovery steps each")
        scores = _run_rung(config, storage, context, base_state, alive, rung, steps, log, subsets)
        for candidate in alive:
            result = scores[candidate.name]
            rows.append({"rung": rung, "candidate": candidate.name, "metric": candidate.metric or config.prune.metric,
                         "steps": steps, "vector": list(candidate.vector), "search_objective": candidate.objective,
                         **{k: result.get(k) for k in ("val_loss", "val_acc", "flops_ratio", "params_ratio",
                                                       "keep", TRIAL_ERROR, "replayed")}})
        ranked = sorted((c for c in alive if math.isfinite(scores[c.name].get(METRIC, math.nan))),
                        key=lambda c: scores[c.name][METRIC])
        if not ranked:
            raise LcpTuneError(f"every candidate of race rung {rung} failed: "
                               f"{next(iter(scores.values())).get(TRIAL_ERROR, 'no result')}")
        log("  " + ", ".join(f"{c.name} {scores[c.name][METRIC]:.4f}" for c in ranked))
        alive = ranked[:max(1, math.ceil(len(ranked) / 2))] if rung < len(schedule) else ranked[:1]
    return RaceOutcome(alive[0], rows, time.time() - start)


def _run_rung(config: ExperimentConfig, storage: str, context: TrialContext, base_state: dict,
              candidates: list[Candidate], rung: int, steps: int, log: Log,
              subsets: Optional[SearchSubsets]) -> dict[str, dict]:
    from ray import tune

    from .cluster import concurrency
    from .progress import ProgressCallback, ProgressPrinter, printing_to

    resources = {"cpu": config.search.cpus_per_trial}
    if config.search.gpus_per_trial:
        resources["gpu"] = config.search.gpus_per_trial
    trainable = tune.with_resources(tune.with_parameters(race_trial, context=context, base_state=base_state,
                                                         steps=steps, subsets=subsets), resources)
    tuner = tune.Tuner(
        trainable,
        param_space={"candidate": tune.grid_search([c.as_config() for c in candidates])},
        tune_config=tune.TuneConfig(metric=METRIC, mode=MODE, max_concurrent_trials=concurrency(config),
                                    reuse_actors=True, trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(name=f"race-{rung}", storage_path=storage, verbose=0,
                                  callbacks=[ProgressCallback()],
                                  failure_config=tune.FailureConfig(max_failures=config.search.max_failures)))
    with printing_to(ProgressPrinter(len(candidates), log)):
        results = tuner.fit()
    scores: dict[str, dict] = {}
    for result in results:
        if result.metrics and "candidate" in result.metrics:
            scores[result.metrics["candidate"]] = dict(result.metrics)
    missing = [c.name for c in candidates if c.name not in scores]
    if missing:   # Tune returns from Ctrl-C as from a finished run
        raise KeyboardInterrupt
    return scores
