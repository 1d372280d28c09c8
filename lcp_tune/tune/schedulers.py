"""Trial schedulers by name: fifo runs every trial to the end, asha stops poor ones at its rungs."""
from __future__ import annotations

from typing import Callable

from lcp_tune.candidate import validation_chunks
from lcp_tune.config import ExperimentConfig
from lcp_tune.registry import Registry

SCHEDULERS: Registry[Callable] = Registry("scheduler")


@SCHEDULERS.register("fifo")
def _fifo(config: ExperimentConfig):
    return None


@SCHEDULERS.register("asha")
def _asha(config: ExperimentConfig):
    """Successive halving over the trial's reports (one per `report_every` steps)."""
    from ray.tune.schedulers import ASHAScheduler

    rungs = len(validation_chunks(config))
    return ASHAScheduler(time_attr="training_iteration", max_t=max(1, rungs), grace_period=1,
                         reduction_factor=2)
