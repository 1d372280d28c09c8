"""Progress of long training work: one bar updating in place on a terminal (tqdm), a few plain
lines anywhere else (a log file, a pipe, a Ray worker), both with throughput and time left.

An ImageNet epoch takes many minutes, so progress moves within the epoch (per step), not only
at its end; a digits fine-tune on a terminal is one line that updates, not fifteen.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional

Log = Callable[[str], None]
MILESTONES = (0.25, 0.5, 0.75)   # plain-line mode: a line at each, at the end, and every
QUIET_S = 60.0                   # QUIET_S seconds in between (long epochs never look frozen)


class TrainingProgress:
    """Progress over `epochs` epochs of `steps_per_epoch` SGD steps of `batch_size` images each.

    training.fit calls `start(first epoch)` (a resumed run starts where it was), `step(index)`
    after every step, `epoch(...)` after every epoch and `close()` at the end.
    """

    def __init__(self, label: str, epochs: int, steps_per_epoch: int, batch_size: int, log: Log,
                 interactive: Optional[bool] = None):
        self.label, self.epochs, self.per_epoch, self.batch, self.log = label, epochs, steps_per_epoch, batch_size, log
        self.total = max(1, epochs * steps_per_epoch)
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.started = self.last_line = time.monotonic()
        self.first = self.done = 0            # the first step this process runs (after a resume)
        self.next_milestone = 0
        self.info = ""
        self.bar = None

    def start(self, epoch: int) -> None:
        self.first = self.done = epoch * self.per_epoch
        if epoch >= self.epochs:
            return                                # finished before: nothing runs, nothing to show
        self.next_milestone = sum(self.done / self.total >= m for m in MILESTONES)
        if self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc=f"  {self.label}", unit="step",
                            dynamic_ncols=True, leave=True, file=sys.stdout,
                            bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}<{remaining}{postfix}]")
        elif epoch:
            self.log(f"  {self.label:<12} resuming at epoch {epoch + 1}/{self.epochs}")

    def step(self, index: int) -> None:
        self.done = index + 1
        if self.bar is not None:
            self.bar.update(1)
            if self.done % 10 == 0:
                self.bar.set_postfix_str(self._rate() + (", " + self.info if self.info else ""), refresh=False)
            return
        now = time.monotonic()
        if self.done == self.total:
            return                            # the last epoch's line says it
        if self.next_milestone < len(MILESTONES) and self.done / self.total >= MILESTONES[self.next_milestone]:
            self.next_milestone += 1
            self._line(now)
        elif now - self.last_line >= QUIET_S:
            self._line(now)

    def epoch(self, epoch: int, train_loss: float, val_acc: Optional[float]) -> None:
        self.info = f"epoch {epoch + 1}/{self.epochs}, train loss {train_loss:.3f}" + (
            f", val acc {val_acc:.4f}" if val_acc is not None else "")
        if self.bar is not None:
            self.bar.set_postfix_str(self._rate() + ", " + self.info)
        elif epoch + 1 == self.epochs:
            self._line(time.monotonic())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _rate(self) -> str:
        ran = self.done - self.first
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{ran * self.batch / elapsed:,.0f} img/s"

    def _line(self, now: float) -> None:
        self.last_line = now
        ran = max(self.done - self.first, 1)
        elapsed = now - self.started
        left = elapsed / ran * (self.total - self.done)
        bar = "#" * round(20 * self.done / self.total)
        self.log(f"  {self.label:<12} [{bar:<20}] {100 * self.done / self.total:3.0f}%  {self._rate()}, "
                 f"{elapsed:.0f}s, ~{left:.0f}s left" + (f"  {self.info}" if self.info else ""))
