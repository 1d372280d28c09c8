"""The final step for one compensation: prune to the budget, fine-tune fully, test once."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from lcp_tune.config import ExperimentConfig
from lcp_tune.data import DataSplits
from lcp_tune.devices import on_device, resolve_device
from lcp_tune.progress import TrainingProgress
from lcp_tune.pruning import Plan, Pruner
from lcp_tune.training import EvalResult, evaluate, fit, recalibrate_bn

Log = Callable[[str], None]


def test_accuracy(model: torch.nn.Module, data: DataSplits, batch_size: int = 256,
                  device: str = "cpu") -> EvalResult:
    """Top-1 on the test split, on `device`: called once per reported model, never during search."""
    with on_device(model, resolve_device(device)):
        return evaluate(model, data.loader("test", batch_size))


def finetune_and_test(pruner: Pruner, vector: np.ndarray, config: ExperimentConfig,
                      data: DataSplits, log: Optional[Log] = None, label: str = "",
                      checkpoint_dir: Optional[Path] = None) -> tuple[torch.nn.Module, dict]:
    """Prune with `vector`, fine-tune fully (best epoch on validation), test once.

    Per-epoch checkpoints go to `checkpoint_dir`/<label>-<plan digest>.pt: an interrupted
    fine-tune resumes, and a checkpoint of another plan (other widths) is never reused.
    """
    return finetune_many(pruner, {label: vector}, config, data, log, checkpoint_dir)[label]


def finetune_many(pruner: Pruner, vectors: dict[str, np.ndarray], config: ExperimentConfig, data: DataSplits,
                  log: Optional[Log] = None, checkpoint_dir: Optional[Path] = None,
                  data_factories: Optional[dict] = None,
                  budgets: Optional[dict[str, float]] = None,
                  starts: Optional[dict[str, tuple[torch.nn.Module, Plan]]] = None,
                  ) -> dict[str, tuple[torch.nn.Module, dict]]:
    """`finetune_and_test` for every (label, vector), each at its budget in `budgets` (default the
    config's): one after another in this process, or with `config.finetune_workers` > 1 on Ray
    Train (inside `finetune_ray_session`), as many at once as the cluster fits.

    A label in `starts` is fine-tuned from that (recovered network, plan) instead: the candidate
    exactly as the search measured it, so what was measured is what ships (no BN recalibration,
    which would undo part of its recovery)."""
    pruned = {}
    for label, vector in vectors.items():
        if starts and label in starts:
            model, plan = starts[label]
            recovered = True
        else:
            budget = (budgets or {}).get(label, config.prune.budget)
            plan = pruner.plan(vector, budget, config.prune.resource)
            model, recovered = pruner.apply(plan), False
        digest = hashlib.sha256(json.dumps([plan.group_names, plan.keep_counts.tolist(), dataclasses.asdict(
            config.finetune)] + ([[list(k) for k in plan.kept], "recovered",
                                  recovery_steps(config), config.search.lr] if recovered else [])
        ).encode()).hexdigest()[:12]
        pruned[label] = (model, plan, digest, recovered)
    if config.finetune_workers > 1:
        tests = _finetune_on_ray(pruned, pruner, config, data, log, checkpoint_dir, data_factories)
    else:
        tests = {label: finetune_model(model, config, data, log, label,
                                       checkpoint_dir / f"{label}-{digest}.pt" if checkpoint_dir else None,
                                       teacher=pruner.model, recalibrate=not recovered)
                 for label, (model, plan, digest, recovered) in pruned.items()}
    return {label: (model, _result(plan, tests[label])) for label, (model, plan, *_) in pruned.items()}


def recovery_steps(config: ExperimentConfig) -> int:
    """Recovery steps of the candidate every final fine-tune continues: the race's last rung
    where a search races, else the search's tau_hat, for every method alike so they compare."""
    steps = config.search.race_steps() if config.method in ("lcp", "random") else ()
    return steps[-1] if steps else config.search.tau_hat


@contextlib.contextmanager
def finetune_ray_session(config: ExperimentConfig, address: Optional[str] = None, dashboard: bool = False,
                         log: Log = print) -> Iterator[None]:
    """Ray for fine-tunes on Ray Train (a local one, or the cluster at `address`), its workers
    checked against what the cluster has; nothing at all for in-process fine-tunes."""
    if config.finetune_workers <= 1:
        yield
        return
    import ray

    from lcp_tune.tune.cluster import ray_session
    from lcp_tune.tune.distributed_finetune import check_finetune_resources

    from .interrupts import catching_signals

    # ours again after ray.init, which installs its own SIGTERM handler
    with catching_signals(), ray_session(address, dashboard, log), catching_signals():
        check_finetune_resources(config, ray.cluster_resources())
        yield


def _result(plan, test: EvalResult) -> dict:
    return {"test_acc": test.accuracy, "test_top5": test.top5, "test_loss": test.loss,
            "flops_ratio": plan.flops_ratio, "params_ratio": plan.params_ratio, "flops": plan.flops,
            "params": plan.params, "keep": dict(zip(plan.group_names, plan.keep_counts.tolist())), "plan": plan,
            **({"latency_ratio": plan.latency_ratio} if plan.latency_ratio is not None else {})}


def _finetune_on_ray(pruned: dict, pruner: Pruner, config: ExperimentConfig, data: DataSplits,
                     log: Optional[Log], checkpoint_dir: Optional[Path],
                     data_factories: Optional[dict]) -> dict[str, EvalResult]:
    from lcp_tune.tune.distributed_finetune import FinetuneJob, describe_workers, run_finetunes, run_name

    if checkpoint_dir is None:
        raise ValueError("a Ray Train fine-tune needs a checkpoint folder")
    jobs = [FinetuneJob(label, model, run_name(label, digest, config), recalibrate=not recovered)
            for label, (model, _, digest, recovered) in pruned.items()]
    say = log or (lambda line: None)
    say(f"  on {describe_workers(config)}")
    run_finetunes(jobs, config, Path(checkpoint_dir) / "ray", pruner.model, say, data_factories)
    for job in jobs:
        if 0 < job.start_epoch < config.finetune.epochs:
            say(f"  fine-tune {job.label}: resumed at epoch {job.start_epoch + 1}/{config.finetune.epochs} "
                f"from its Ray Train checkpoint")
        elif job.start_epoch >= config.finetune.epochs:
            say(f"  fine-tune {job.label}: finished before the interruption (its Ray Train checkpoint)")
    return {job.label: test_accuracy(job.model, data, device=config.device) for job in jobs}


def finetune_model(model: torch.nn.Module, config: ExperimentConfig, data: DataSplits,
                   log: Optional[Log] = None, label: str = "", checkpoint: Optional[Path] = None,
                   teacher: Optional[torch.nn.Module] = None, recalibrate: bool = True) -> EvalResult:
    """The one full fine-tune every pruned model gets (ours or a peer's, so they compare):
    BN recalibration (not for a recovered candidate), `config.finetune` with the best epoch on
    validation (the start among them), then test once. `teacher` (the unpruned base) is
    distilled in when the recipe says `distill`."""
    torch.manual_seed(config.seed)
    ft = config.finetune
    train = data.loader("train", ft.batch_size, shuffle=True, seed=config.seed)
    device = resolve_device(config.device)
    with on_device(model, device), _teacher_on(teacher if ft.distill else None, device) as on:
        if recalibrate:
            recalibrate_bn(model, train, config.search.bn_batches)   # same start as the search's trials
        fit(model, train, ft, val=data.loader("val", 256), checkpoint=checkpoint, teacher=on,
            meter=TrainingProgress(f"fine-tune {label}", ft.epochs, len(train), ft.batch_size, log) if log else None)
        return evaluate(model, data.loader("test", 256))


@contextlib.contextmanager
def _teacher_on(teacher: Optional[torch.nn.Module], device: torch.device):
    """The teacher on the student's device in eval mode for the block (left as it was after)."""
    if teacher is None:
        yield None
        return
    was = teacher.training
    with on_device(teacher, device) as on:
        yield on.eval()
    teacher.train(was)
