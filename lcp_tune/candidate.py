"""Evaluating one candidate compensation: prune -> BN recalibration -> tau_hat steps -> val loss.

Plain torch, no Ray: the Ray Tune trial wraps it, and benchmarks can loop over it directly.
One evaluator is built per worker process and reused for every trial it runs (data loaders,
traced structure and base weights are built once). With the search's decoded subsets
(data/search_subsets.py) it reads no image file; every result says where its time went.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from .config import ExperimentConfig
from .data import DataSplits, load_experiment_data
from .data.search_subsets import SearchSubsets
from .devices import place
from .models import build_model
from .pruning import Plan, Pruner
from .training import cycle, evaluate, recalibrate_bn, sgd, torch_threads, train_steps

Report = Callable[[dict], None]


def build_pruner(config: ExperimentConfig, model: torch.nn.Module, data: DataSplits,
                 latency: Optional[dict] = None) -> Pruner:
    """The Pruner for an experiment's base model (taylor reads a few training batches), with
    the driver's latency model (`to_dict()`) where the budget is latency."""
    batches = None
    if config.prune.metric == "taylor":
        loader = data.loader("train", config.search.batch_size, shuffle=True, seed=config.seed)
        batches = [b for _, b in zip(range(4), loader)]
    pruner = Pruner(model, data.input_shape, config.prune.metric, config.prune.form,
                    config.prune.safeguard, config.prune.round_to, batches)
    if latency is not None:
        pruner.use_latency_model(latency)
    return pruner


class CandidateEvaluator:
    """Scores compensation vectors for one experiment; build once per process."""

    def __init__(self, config: ExperimentConfig, base_state: Optional[dict] = None,
                 data: Optional[DataSplits] = None, pruner: Optional[Pruner] = None,
                 subsets: Optional[SearchSubsets] = None, latency: Optional[dict] = None):
        """Give `pruner` (and `data`) where the caller already built them; else `base_state`
        (and, for a latency budget, the driver's `latency` model). With `subsets`, trials
        train and validate on those decoded images, not on loaders."""
        self.config = config
        self.data = data or load_experiment_data(config)
        if pruner is None:
            model = build_model(config.arch, self.data.num_classes, self.data.input_shape[0])
            model.load_state_dict(base_state)
            pruner = build_pruner(config, model, self.data, latency)
        self.pruner = pruner
        self._pruners: dict[str, Pruner] = {}
        search = config.search
        # loader workers count against the trial's CPUs: the rest are its compute threads
        workers = self.data.loader_workers(search.cpus_per_trial)
        self.threads = self.data.compute_threads(search.cpus_per_trial)
        use_gpu = (search.gpus_per_trial or 0) > 0 and torch.cuda.is_available()   # None: auto, CPU here
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.shared_data = subsets is not None
        if subsets is not None:   # no loader workers to feed: every compute thread is the trial's
            self.threads = search.cpus_per_trial
            self.train_loader = subsets.train_batches(search.batch_size, config.seed, self.device)
            self.val_loader = subsets.val_batches(256, self.device)
        else:
            self.train_loader = self.data.loader("train", search.batch_size, shuffle=True, seed=config.seed,
                                                 workers=workers)
            self.val_loader = self.data.loader("val", 256, workers=workers)

    def pruner_for(self, metric: Optional[str] = None) -> Pruner:
        """The experiment's pruner, or one ranking channels by another `metric` (same base model,
        safeguard and cost model): a candidate may keep the same widths with other channels."""
        if metric is None or metric == self.pruner.metric_name:
            return self.pruner
        if metric not in self._pruners:
            self._pruners[metric] = self.pruner.with_metric(metric)
        return self._pruners[metric]

    def plan(self, vector: np.ndarray, budget: Optional[float] = None, metric: Optional[str] = None) -> Plan:
        return self.pruner_for(metric).plan(vector, budget or self.config.prune.budget, self.config.prune.resource)

    def evaluate(self, vector: np.ndarray, report: Optional[Report] = None, steps: Optional[int] = None,
                 budget: Optional[float] = None, metric: Optional[str] = None) -> dict:
        """Prune with `vector`, recover briefly, and report validation loss after each chunk
        (one chunk unless a scheduler reads the intermediate results: see `validation_chunks`).

        `steps` replaces tau_hat (a longer fidelity of the race), `budget` the experiment's
        budget and `metric` its channel metric. Every candidate sees the same seed, batch order
        and thread count (common random numbers), so two candidates differ only by their
        compensation, and the driver re-scoring a vector gets the trial's number; the recovered
        network stays in `last_model` and `last_plan`.
        """
        with torch_threads(self.threads):
            return self._evaluate(vector, report, steps, budget, metric)

    def _evaluate(self, vector: np.ndarray, report: Optional[Report], steps: Optional[int] = None,
                  budget: Optional[float] = None, metric: Optional[str] = None) -> dict:
        search = self.config.search
        tau_hat = search.tau_hat if steps is None else steps
        clock = PhaseClock(self.device)
        with clock("prune"):
            plan = self.plan(vector, budget, metric)
            model = place(self.pruner_for(metric).apply(plan), self.device)   # channels_last on CUDA, as to_device's inputs
        # seeded after the surgery, whose once-per-process check draws random inputs: the
        # augmentations (drawn from torch's global generator) are then the same for every candidate
        torch.manual_seed(self.config.seed)
        self.train_loader.generator.manual_seed(self.config.seed)
        train_data = clock.reading(self.train_loader)
        with clock("bn"):
            recalibrate_bn(model, train_data, search.bn_batches)
        optimizer = sgd(model, search.lr)
        batches = cycle(train_data)
        step, result = 0, {}
        self.last_model, self.last_plan = model, plan   # the candidate being recovered, for callers that keep it
        for chunk in validation_chunks(self.config, tau_hat):
            with clock("steps"):
                train_loss = train_steps(model, batches, chunk, optimizer) if chunk else float("nan")
            step += chunk
            with torch.random.fork_rng(devices=[]), clock("val"):   # a loader draws its seed: keep the augmentations
                val = evaluate(model, clock.reading(self.val_loader))
            result = {"val_loss": val.loss, "val_acc": val.accuracy, "train_loss": train_loss,
                      "step": step, "tau_hat": tau_hat, "flops_ratio": plan.flops_ratio, "params_ratio": plan.params_ratio,
                      "keep": dict(zip(plan.group_names, plan.keep_counts.tolist())),
                      "shared_data": self.shared_data, **clock.times()}
            if report is not None:
                report(result)
        return result


PHASES = ("prune", "bn", "steps", "val")


class PhaseClock:
    """Where a trial's time goes: seconds in each phase so far (prune, bn, steps, val), and of
    those the seconds spent waiting for data. Synchronises a GPU only at phase ends."""

    def __init__(self, device: torch.device):
        self.device = device
        self.spent = dict.fromkeys(PHASES + ("data",), 0.0)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.spent[phase] += time.perf_counter() - start

    def reading(self, batches: Iterable) -> Iterable:
        """`batches`, with the time each next batch takes counted as data time."""
        return _TimedBatches(batches, self.spent)

    def times(self) -> dict[str, float]:
        return {f"time_{phase}": round(seconds, 4) for phase, seconds in self.spent.items()}


class _TimedBatches:
    def __init__(self, batches: Iterable, spent: dict[str, float]):
        self.batches, self.spent = batches, spent

    def __iter__(self) -> Iterator:
        iterator = iter(self.batches)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                self.spent["data"] += time.perf_counter() - start
                return
            self.spent["data"] += time.perf_counter() - start
            yield batch


def validation_chunks(config: ExperimentConfig, steps: Optional[int] = None) -> list[int]:
    """Steps between validations: every `report_every` steps for ASHA, which stops trials at
    those rungs; else once, at the end (FIFO reads only the last result). `steps`: tau_hat's stand-in."""
    total = config.search.tau_hat if steps is None else steps
    every = config.search.report_every if config.search.scheduler == "asha" else total
    return report_chunks(total, every)


def report_chunks(total: int, every: int) -> list[int]:
    """Step counts between reports; tau_hat = 0 still reports once (prune and score)."""
    if total <= 0:
        return [0]
    every = max(1, every)
    return [every] * (total // every) + ([total % every] if total % every else [])
