"""Fine-tuning, evaluation and BatchNorm recalibration in plain torch (no Ray here)."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float   # top-1, in [0, 1]
    samples: int


def evaluate(model: nn.Module, loader: Iterable) -> EvalResult:
    """Mean cross-entropy and top-1 accuracy over a loader, in eval mode."""
    was = model.training
    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = to_device(x, y, model)
            out = model(x)
            total_loss += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += y.numel()
    model.train(was)
    return EvalResult(total_loss / max(n, 1), correct / max(n, 1), n)


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
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def cycle(loader: Iterable) -> Iterator:
    """Endless iteration over a loader, reshuffling every pass."""
    while True:
        yield from loader


def sgd(model: nn.Module, lr: float, weight_decay: float = 5e-4, momentum: float = 0.9) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True,
                           weight_decay=weight_decay)


def train_steps(model: nn.Module, batches: Iterator, steps: int, optimizer: torch.optim.Optimizer,
                schedule: Optional[Callable[[int], float]] = None, start: int = 0) -> float:
    """Run `steps` SGD steps from the endless `batches` iterator; returns the mean train loss."""
    model.train()
    total = 0.0
    for i in range(steps):
        if schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = schedule(start + i)
        x, y = to_device(*next(batches), model)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / max(steps, 1)


def cosine(lr: float, total_steps: int, warmup: int = 0) -> Callable[[int], float]:
    """Cosine decay to zero over `total_steps`, after a linear warm-up."""
    def schedule(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * lr * (1 + math.cos(math.pi * min(1.0, progress)))
    return schedule


def fit(model: nn.Module, train: DataLoader, epochs: int, lr: float, weight_decay: float = 5e-4,
        val: Optional[DataLoader] = None, progress: Optional[Callable[[int, float, Optional[EvalResult]], None]] = None
        ) -> nn.Module:
    """Train for `epochs` with SGD + Nesterov and a cosine schedule; keep the best-on-val weights.

    With no validation loader the last epoch's weights are kept.
    """
    optimizer = sgd(model, lr, weight_decay)
    per_epoch = len(train)
    schedule = cosine(lr, epochs * per_epoch, warmup=min(per_epoch, 50))
    batches = cycle(train)
    best_loss, best_state = math.inf, None
    for epoch in range(epochs):
        loss = train_steps(model, batches, per_epoch, optimizer, schedule, start=epoch * per_epoch)
        result = evaluate(model, val) if val is not None else None
        if result is not None and result.loss < best_loss:
            best_loss = result.loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress is not None:
            progress(epoch, loss, result)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model
