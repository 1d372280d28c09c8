"""Fine-tuning, evaluation and BatchNorm recalibration in plain torch (no Ray here)."""
from __future__ import annotations

import contextlib
import itertools
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from .config import TrainConfig
from .errors import LcpTuneError
from .progress import TrainingProgress
from .store.files import atomic_path


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` intra-op threads: float sums depend on the thread count, and
    100 SGD steps amplify that into a different val loss (0.490 against 0.505 on Fashion-MNIST),
    so one candidate is only scored alike by code that uses the same count."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float   # top-1, in [0, 1]
    samples: int
    top5: float = float("nan")   # when there are more than 5 classes


def evaluate(model: nn.Module, loader: Iterable) -> EvalResult:
    """Mean cross-entropy and top-1 accuracy over a loader, in eval mode."""
    was = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)   # loss, correct, correct in top 5: on the device,
    n, classes = 0, 0                            # read once at the end (no host sync per batch)
    with torch.no_grad():
        for x, y in loader:
            x, y = to_device(x, y, model)
            out = model(x)
            classes = out.shape[1]
            top5 = (out.topk(5, 1).indices == y[:, None]).any(1).sum() if classes > 5 else out.new_zeros(())
            sums = sums.to(out.device) + torch.stack([
                nn.functional.cross_entropy(out.float(), y, reduction="sum").double(),
                (out.argmax(1) == y).sum().double(), top5.double()])
            n += y.numel()
    model.train(was)
    total_loss, correct, correct5 = sums.tolist()
    top5 = correct5 / max(n, 1) if classes > 5 else float("nan")
    return EvalResult(total_loss / max(n, 1), correct / max(n, 1), n, top5)


def recalibrate_bn(model: nn.Module, loader: Iterable, num_batches: int) -> None:
    """Re-estimate BatchNorm running statistics on a few training batches (EagleEye).

    Pruning changes every layer's input distribution; fresh statistics make a pruned network's
    loss a far better predictor of its accuracy after fine-tuning than stale ones.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if num_batches <= 0 or not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None          # cumulative average over the batches seen
    model.train()
    with torch.no_grad():
        for x, _ in itertools.islice(cycle(loader), num_batches):
            model(to_device(x, x, model)[0])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def to_device(x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to wherever the model's weights live (CPU, or a trial's GPU)."""
    device = next(model.parameters()).device
    if x.device == device:
        return x, y
    if device.type == "cuda" and x.dim() == 4:   # the layout devices.place gives the weights
        return x.to(device, non_blocking=True, memory_format=torch.channels_last), y.to(device, non_blocking=True)
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def cycle(loader: Iterable) -> Iterator:
    """Endless iteration over a loader, reshuffling every pass (an empty loader is an error)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training loader yields no batch: the split is empty")


def sgd(model: nn.Module, lr: float, weight_decay: float = 5e-4, momentum: float = 0.9,
        nesterov: bool = True) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                           weight_decay=weight_decay)


@dataclass(frozen=True)
class Distillation:
    """A teacher (the unpruned base, in eval mode, on the student's device) and how much of the
    loss follows it: (1 - weight) * CE(labels) + weight * T^2 * KL(teacher_T || student_T)."""

    teacher: nn.Module
    temperature: float = 4.0
    weight: float = 0.9

    def loss(self, x: torch.Tensor, logits: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = nn.functional.softmax(self.teacher(x).float() / self.temperature, dim=1)
        soft = nn.functional.kl_div(nn.functional.log_softmax(logits.float() / self.temperature, dim=1), target,
                                    reduction="batchmean") * self.temperature ** 2
        return (1.0 - self.weight) * hard + self.weight * soft


def train_steps(model: nn.Module, batches: Iterator, steps: int, optimizer: torch.optim.Optimizer,
                schedule: Optional[Callable[[int], float]] = None, start: int = 0,
                label_smoothing: float = 0.0, amp: bool = False,
                distill: Optional[Distillation] = None, on_step: Optional[Callable[[int], None]] = None) -> float:
    """Run `steps` SGD steps from the `batches` iterator; returns the mean train loss.

    `amp` runs the forward pass in bfloat16 autocast on a GPU (no loss scaling needed);
    `distill` adds the teacher's softened outputs to the labels; `on_step` gets each step's
    index (`start` + i) once it is done.
    """
    model.train()
    total = torch.zeros((), dtype=torch.float64)   # summed on the device: no host sync per step
    for i in range(steps):
        if schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = schedule(start + i)
        x, y = to_device(*next(batches), model)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)
            if distill is not None:
                loss = distill.loss(x, logits, loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total = total.to(loss.device) + loss.detach().double()
        if on_step is not None:
            on_step(start + i)
    return float(total) / max(steps, 1)


def cosine(lr: float, total_steps: int, warmup: int = 0) -> Callable[[int], float]:
    """Cosine decay to zero over `total_steps`, after a linear warm-up."""
    def schedule(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * lr * (1 + math.cos(math.pi * min(1.0, progress)))
    return schedule


def multistep(lr: float, steps_per_epoch: int, milestones: Sequence[int], gamma: float,
              warmup: int = 0) -> Callable[[int], float]:
    """lr x gamma at every milestone epoch (He et al. 2016; torchvision's reference recipe)."""
    def schedule(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        epoch = step // max(1, steps_per_epoch)
        return lr * gamma ** sum(epoch >= m for m in milestones)
    return schedule


def make_schedule(recipe: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    warmup = min(steps_per_epoch, 50) if recipe.warmup else 0
    if recipe.schedule == "multistep":
        return multistep(recipe.lr, steps_per_epoch, recipe.milestones, recipe.gamma, warmup)
    return cosine(recipe.lr, recipe.epochs * steps_per_epoch, warmup)


class FitStore:
    """Where `fit` keeps its per-epoch training state: a file here, a Ray Train checkpoint in
    the distributed fine-tune. `load` returns the last saved state or None; `save` replaces it."""

    def load(self) -> Optional[dict]:
        raise NotImplementedError

    def save(self, state: dict) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class FileStore(FitStore):
    """The state in one torch file, replaced atomically (a kill mid-save leaves the previous
    epoch's) and read back tensors-only."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> Optional[dict]:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, state: dict) -> None:
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def describe(self) -> str:
        return f"fine-tune checkpoint {self.path}"


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def fit(model: nn.Module, train: DataLoader, recipe: TrainConfig, val: Optional[DataLoader] = None,
        progress: Optional[Callable[[int, float, Optional[EvalResult]], None]] = None,
        checkpoint: Optional[Path] = None, teacher: Optional[nn.Module] = None,
        meter: Optional[TrainingProgress] = None, store: Optional[FitStore] = None,
        before_epoch: Optional[Callable[[int], None]] = None) -> nn.Module:
    """Train with SGD + Nesterov under `recipe`; keep the best-on-validation weights.

    With `teacher` and `recipe.distill`, the teacher's outputs are distilled into the model
    (the teacher must be on the model's device). `meter` shows progress within the epochs.
    `model` may be wrapped in DistributedDataParallel; `before_epoch(epoch)` then sets up that
    epoch's shard (the sampler's epoch, the augmentation seed).

    With `checkpoint` (a file) or `store`, the full training state (weights, optimizer, epoch,
    best weights, the shuffling generator) is saved after every epoch and a later call resumes
    from it, giving the same result as an uninterrupted run. The starting weights are scored on
    validation too and kept when no epoch beats them. Without a validation loader the last epoch
    is kept.
    """
    store = store if store is not None else (FileStore(checkpoint) if checkpoint is not None else None)
    net = unwrap(model)
    optimizer = sgd(model, recipe.lr, recipe.weight_decay, recipe.momentum, recipe.nesterov)
    per_epoch = len(train)
    schedule = make_schedule(recipe, per_epoch)
    start_epoch, best_loss, best_state = _resume(store, net, optimizer, train)
    if start_epoch == 0 and val is not None:   # the start competes too: a fine-tune never ends below it
        best_loss = evaluate(net, val).loss
        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    amp = recipe.amp and next(model.parameters()).is_cuda
    distill = None
    if recipe.distill and teacher is not None:
        distill = Distillation(teacher.eval(), recipe.distill_temperature, recipe.distill_weight)
    if meter is not None:
        meter.start(start_epoch)
    for epoch in range(start_epoch, recipe.epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        batches = iter(train)
        loss = train_steps(model, batches, per_epoch, optimizer, schedule, start=epoch * per_epoch,
                           label_smoothing=recipe.label_smoothing, amp=amp, distill=distill,
                           on_step=meter.step if meter is not None else None)
        result = evaluate(net, val) if val is not None else None
        if meter is not None:
            meter.epoch(epoch, loss, result.accuracy if result is not None else None)
        if result is not None and result.loss < best_loss:
            best_loss = result.loss
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if store is not None:
            store.save(_fit_state(net, optimizer, train, epoch + 1, best_loss, best_state))
        if progress is not None:
            progress(epoch, loss, result)
    if meter is not None:
        meter.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    return model


def _fit_state(model: nn.Module, optimizer, train: DataLoader, epoch: int, best_loss: float,
               best_state: Optional[dict]) -> dict:
    state = {"epoch": epoch, "best_loss": best_loss, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "best": best_state or {}}
    if getattr(train, "generator", None) is not None:
        state["generator"] = train.generator.get_state()
    return state


def _resume(store: Optional[FitStore], model: nn.Module, optimizer, train: DataLoader):
    """(first epoch to run, best val loss, best weights) from the store's state, if any."""
    if store is None:
        return 0, math.inf, None
    try:
        state = store.load()
        if state is None:
            return 0, math.inf, None
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "generator" in state and getattr(train, "generator", None) is not None:
            train.generator.set_state(state["generator"])
        return int(state["epoch"]), float(state["best_loss"]), (state["best"] or None)
    except Exception as exc:   # never unpickled beyond tensors; any other damage says the same
        why = ("it holds pickled Python objects besides tensors, which lcp-tune never loads"
               if isinstance(exc, pickle.UnpicklingError) else type(exc).__name__)
        raise LcpTuneError(f"{store.describe()} is not one lcp-tune wrote for this model ({why}); "
                           f"delete it to fine-tune from the start") from None
