"""The final fine-tunes on Ray Train: DistributedDataParallel over N workers, checkpointed by
Ray Train after every epoch, several fine-tunes at once when the cluster fits them.

Each fine-tune is one `TorchTrainer` run named after its label and plan digest under the
experiment's `finetune/ray/` folder. Ray Train (v2) picks up the run's snapshot when a run of
the same name starts again, so a killed fine-tune resumes at the epoch after its last finished
one; the snapshot is JSON and the checkpoint holds tensors only (read `weights_only`), so
nothing in a folder someone handed you is unpickled.

Every worker trains on its shard of the training split (DistributedSampler, seeded by the
experiment's seed and the epoch) with batch_size / N images per step, so the global batch and
the learning-rate schedule are the recipe's. BatchNorm statistics are per worker, as plain DDP
keeps them; the buffers are rank 0's after every step (DDP broadcasts them).
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from lcp_tune.config import ExperimentConfig
from lcp_tune.errors import LcpTuneError, first_line
from lcp_tune.training import FitStore

Log = Callable[[str], None]
STATE_FILE = "fit_state.pt"


@dataclass
class FinetuneJob:
    """One fine-tune: a pruned network (on the CPU), its label and its Ray Train run name."""

    label: str
    model: torch.nn.Module
    run_name: str
    recalibrate: bool = True   # False: a recovered candidate, continued as the search measured it
    start_epoch: int = field(default=0, init=False)   # where it resumed (set when it ran)


@dataclass(frozen=True)
class _WorkerSpec:
    config: ExperimentConfig
    label: str
    threads: int
    data_factories: dict = field(default_factory=dict)   # Python functions, shipped by value
    trusted: tuple[str, ...] = ()                          # module:factory names the user gave
    recalibrate: bool = True                               # BN recalibration before the first epoch


def check_finetune_resources(config: ExperimentConfig, cluster: Optional[dict] = None) -> None:
    """Refuse, before any work, fine-tune workers the cluster cannot host (it says what it has)."""
    workers = config.finetune_workers
    if workers <= 1:
        return
    cluster = cluster if cluster is not None else _local_resources()
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    need = workers * config.finetune_cpus_per_worker
    if need > cpus:
        raise LcpTuneError(f"--finetune-workers {workers} with --finetune-cpus-per-worker "
                           f"{config.finetune_cpus_per_worker} needs {need} CPUs; the Ray cluster has {cpus:g} "
                           f"CPUs and {gpus:g} GPUs")
    if _on_gpu(config) and workers > gpus:
        raise LcpTuneError(f"--finetune-workers {workers} on {config.device} needs a GPU per worker; the Ray "
                           f"cluster has {gpus:g} GPUs and {cpus:g} CPUs")


def _local_resources() -> dict:
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    return {"CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count()}


def _on_gpu(config: ExperimentConfig) -> bool:
    from lcp_tune.devices import resolve_device

    return resolve_device(config.device).type == "cuda"


def jobs_at_once(config: ExperimentConfig, jobs: int) -> int:
    """How many fine-tunes run together: what the cluster's CPUs (and GPUs) fit, at least one."""
    import ray

    resources = ray.cluster_resources()
    fit = int(resources.get("CPU", 1) // (config.finetune_workers * config.finetune_cpus_per_worker))
    if _on_gpu(config):
        fit = min(fit, int(resources.get("GPU", 0) // config.finetune_workers))
    return max(1, min(jobs, fit))


def run_finetunes(jobs: Sequence[FinetuneJob], config: ExperimentConfig, storage: Path,
                  teacher: Optional[torch.nn.Module], log: Log,
                  data_factories: Optional[dict] = None) -> list[torch.nn.Module]:
    """Fine-tune every job on Ray Train (Ray must be running); returns each job's network with
    its best-on-validation weights, on the CPU. Runs `jobs_at_once` of them concurrently."""
    import ray
    from ray.util.queue import Queue

    from lcp_tune.trust import trusted

    storage = Path(storage).resolve()   # Ray Train wants an absolute folder (or a URI)
    teacher_ref = ray.put(teacher.cpu()) if teacher is not None and config.finetune.distill else None
    lines: Queue = Queue()
    results: dict[str, Any] = {}
    pending = list(jobs)
    running: dict[str, threading.Thread] = {}
    limit = jobs_at_once(config, len(jobs))
    if limit > 1:
        log(f"  {limit} fine-tunes at once, {config.finetune_workers} Ray Train workers each")

    def run(job: FinetuneJob) -> None:
        spec = _WorkerSpec(config, job.label, config.finetune_cpus_per_worker, dict(data_factories or {}), trusted(),
                           job.recalibrate)
        try:
            results[job.label] = _fit_one(job, spec, storage, ray.put(job.model.cpu()), teacher_ref, lines)
        except BaseException as exc:   # reported by the main thread
            results[job.label] = exc

    try:
        while pending or running:
            while pending and len(running) < limit:
                job = pending.pop(0)
                running[job.label] = threading.Thread(target=run, args=(job,), daemon=True)
                running[job.label].start()
            _drain(lines, log)
            for label in [label for label, thread in running.items() if not thread.is_alive()]:
                del running[label]
                if isinstance(results[label], BaseException):
                    raise _failure(label, results[label])
            time.sleep(0.2)
        _drain(lines, log)
    finally:
        lines.shutdown()
    out = []
    for job in jobs:
        state, job.start_epoch = results[job.label]
        job.model.load_state_dict(state)
        out.append(job.model)
    return out


def _drain(lines, log: Log) -> None:
    while not lines.empty():
        log(lines.get())


def _failure(label: str, exc: BaseException) -> BaseException:
    if isinstance(exc, (LcpTuneError, KeyboardInterrupt)):
        return exc
    cause = getattr(exc, "worker_failures", None) or getattr(exc, "__cause__", None)
    message = first_line(exc)
    for worker_exc in (cause.values() if isinstance(cause, dict) else []):
        message = str(worker_exc).strip().splitlines()[-1] or message
    return LcpTuneError(f"the Ray Train fine-tune of {label} failed: {message}")


def _fit_one(job: FinetuneJob, spec: _WorkerSpec, storage: Path, model_ref, teacher_ref, lines):
    """One TorchTrainer run to the end; (best weights, the epoch it started at)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    config = spec.config
    gpu = _on_gpu(config)
    start_epoch = checkpointed_epoch(storage / job.run_name)
    trainer = TorchTrainer(
        _worker, train_loop_config={"spec": spec, "model": model_ref, "teacher": teacher_ref, "lines": lines},
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=config.finetune_workers, use_gpu=gpu,
                                     resources_per_worker={"CPU": config.finetune_cpus_per_worker,
                                                           **({"GPU": 1} if gpu else {})}),
        run_config=RunConfig(name=job.run_name, storage_path=str(storage),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=0)))
    try:
        result = trainer.fit()
    except Exception as exc:
        if "snapshot" in str(exc).lower() or "CheckpointManagerInitialization" in type(exc).__name__:
            raise LcpTuneError(f"the Ray Train state of fine-tune {job.label} in {storage / job.run_name} is "
                               f"damaged; delete that folder to fine-tune it from the start") from None
        raise
    if result.checkpoint is None:
        raise LcpTuneError(f"the Ray Train fine-tune of {job.label} ended without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        state = _read_state(Path(folder) / STATE_FILE)
    if int(state["epoch"]) < config.finetune.epochs:   # stopped before its last epoch: not a result
        raise KeyboardInterrupt
    return (state["best"] or state["model"]), start_epoch


def checkpointed_epoch(run: Path) -> int:
    """The epochs a Ray Train run folder holds a checkpoint for (0: none): read from the JSON
    snapshot Ray Train resumes from, so the driver can say where a fine-tune resumes."""
    import json

    try:
        latest = json.loads((run / "checkpoint_manager_snapshot.json").read_text()).get("latest_checkpoint_result")
        return int((latest or {}).get("metrics", {}).get("epoch", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _read_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LcpTuneError(f"Ray Train checkpoint {path} is not a fine-tune state lcp-tune wrote "
                           f"({type(exc).__name__}); delete its run folder to fine-tune from the start") from None


class RayTrainStore(FitStore):
    """fit's per-epoch state as a Ray Train checkpoint: every rank reports, rank 0 writes."""

    def __init__(self, rank: int):
        self.rank = rank

    def load(self) -> Optional[dict]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        return state

    def save(self, state: dict) -> None:
        import ray.train

        metrics = {"epoch": state["epoch"], "best_val_loss": state["best_loss"]}
        if self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / STATE_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    def describe(self) -> str:
        return "the Ray Train checkpoint of this fine-tune"


def _worker(loop: dict) -> None:
    """One DDP rank: its shard of the training split, the recipe, a checkpoint every epoch."""
    import ray
    import ray.train
    import ray.train.torch
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    from lcp_tune.data import load_experiment_data
    from lcp_tune.data.user import register_factory
    from lcp_tune.devices import place
    from lcp_tune.progress import TrainingProgress
    from lcp_tune.training import fit, recalibrate_bn
    from lcp_tune.trust import trust

    spec: _WorkerSpec = loop["spec"]
    config, ft = spec.config, spec.config.finetune
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    trust(spec.trusted)
    for factory in spec.data_factories.values():
        register_factory(factory)
    data = load_experiment_data(config)
    torch.set_num_threads(data.compute_threads(spec.threads))   # loader workers count against the CPUs
    device = ray.train.torch.get_device()
    model = place(ray.get(loop["model"]), device)
    teacher = place(ray.get(loop["teacher"]), device).eval() if loop["teacher"] is not None else None
    per_worker = max(1, ft.batch_size // world)
    sampler = DistributedSampler(data.train, num_replicas=world, rank=rank, shuffle=True, seed=config.seed,
                                 drop_last=True)
    train = DataLoader(data.train, batch_size=per_worker, sampler=sampler, drop_last=True,
                       num_workers=data.loader_workers(spec.threads), pin_memory=device.type == "cuda")
    torch.manual_seed(config.seed)
    sampler.set_epoch(-1)
    if spec.recalibrate:   # the in-process fine-tune's start
        recalibrate_bn(model, train, config.search.bn_batches)
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    def before_epoch(epoch: int) -> None:
        sampler.set_epoch(epoch)                              # the shard order of this epoch
        torch.manual_seed(config.seed * 1_000_003 + epoch * world + rank)   # its augmentations

    meter = None
    if rank == 0:
        meter = TrainingProgress(f"fine-tune {spec.label} ({world} workers)", ft.epochs, len(train),
                                 per_worker * world, loop["lines"].put, interactive=False)
    fit(ddp, train, ft, val=data.loader("val", 256), teacher=teacher, meter=meter, store=RayTrainStore(rank),
        before_epoch=before_epoch)


def run_name(label: str, digest: str, config: ExperimentConfig) -> str:
    """A fine-tune's Ray Train run: another worker count shards differently, so it is another run."""
    return f"{label}-{digest}-w{config.finetune_workers}"


def describe_workers(config: ExperimentConfig) -> str:
    return (f"{config.finetune_workers} Ray Train workers (DistributedDataParallel, "
            f"{'NCCL' if _on_gpu(config) else 'gloo'})")

