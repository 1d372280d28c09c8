"""What the driver does as a search runs: one compact line per finished trial (done / running,
result, best so far, time left), and signing Ray Tune's state files, both as Tune callbacks.

The callback is a module-level class, so it is given once in `RunConfig(callbacks=...)` and
Ray's own `Tuner.restore` brings it back from the experiment; it prints through whichever
printer the driver installed with `printing_to` (public API only, no Tuner internals).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from ray import tune

from lcp_tune.store.signing import snapshot, state_stamp

from .trial import METRIC, TRIAL_ERROR

_PRINTER: Optional["ProgressPrinter"] = None   # the driver's printer while a search runs
_SIGN_DIR: Optional[str] = None                 # the local Tune folder to sign while it runs
_SIGNED: tuple = ()                            # names, sizes and mtimes of the state last signed


class ProgressPrinter:
    """Counts finished trials and formats their lines."""

    def __init__(self, total: int, log: Callable[[str], None], already_done: int = 0):
        self.total, self.log = total, log
        self.done, self.start = already_done, time.time()
        self.best, self.best_flops, self.new = float("inf"), float("nan"), 0

    def trial_done(self, result: dict, running: int = 0) -> None:
        self.done += 1
        self.new += 1
        loss = result.get(METRIC, float("nan"))
        if loss == loss and loss < self.best:
            self.best, self.best_flops = loss, result.get("flops_ratio", float("nan"))
        elapsed = time.time() - self.start
        eta = elapsed / self.new * max(0, self.total - self.done)
        early = "" if result.get("step", 0) >= result.get("tau_hat", 0) else " (stopped early)"
        self.log(f"  [{self.done:>3}/{self.total} done, {running} running] val loss {loss:.4f} "
                 f"acc {result.get('val_acc', 0):.3f} flops {result.get('flops_ratio', 0):.3f}{early} | "
                 f"best {self.best:.4f} at flops {self.best_flops:.3f} | {elapsed:.0f}s, ~{eta:.0f}s left")

    def trial_failed(self, trial_id: str, why: str) -> None:
        self.done += 1
        self.log(f"  [{self.done:>3}/{self.total}] trial {trial_id} FAILED: {why}")


@contextmanager
def printing_to(printer: ProgressPrinter) -> Iterator[ProgressPrinter]:
    """Route ProgressCallback's lines to `printer` while the block runs."""
    global _PRINTER
    previous, _PRINTER = _PRINTER, printer
    try:
        yield printer
    finally:
        _PRINTER = previous


class SigningCallback(tune.Callback):
    """Signs Ray Tune's state files (lcp_tune.store.signing) as soon as Tune has written them.

    Like ProgressCallback it is restored by Ray with the experiment and acts on the folder the
    driver installed with `signing`, in the same controller step in which Tune wrote its state,
    so a kill leaves at most that step's state unsigned.
    """

    def on_step_end(self, iteration, trials, **info):
        global _SIGNED
        if _SIGN_DIR is None:
            return
        seen = state_stamp(_SIGN_DIR)
        if seen != _SIGNED:   # Tune wrote its state in this step: sign it before the next one
            snapshot(_SIGN_DIR)
            _SIGNED = seen

    def on_experiment_end(self, trials, **info):
        if _SIGN_DIR is not None:
            snapshot(_SIGN_DIR)


@contextmanager
def signing(folder: Optional[str]) -> Iterator[None]:
    """Sign the Tune experiment at `folder` (a folder or URI) while the block runs and once after it."""
    global _SIGN_DIR
    previous, _SIGN_DIR = _SIGN_DIR, folder
    try:
        yield
    finally:
        _SIGN_DIR = previous
        if folder is not None:
            snapshot(folder)


class ProgressCallback(tune.Callback):
    """Forwards finished and failed trials to the installed printer (none: silent)."""

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if _PRINTER is None:
            return
        if result.get(TRIAL_ERROR):
            _PRINTER.trial_failed(trial.trial_id, f"{result[TRIAL_ERROR]}; log: {result.get('error_log')}")
        else:
            # the finishing trial is still RUNNING while Tune calls this: not one of the others
            _PRINTER.trial_done(result, sum(t.status == "RUNNING" and t is not trial for t in trials))

    def on_trial_error(self, iteration, trials, trial, **info):
        if _PRINTER is not None:
            _PRINTER.trial_failed(trial.trial_id, f"its worker was lost (Ray's log: {trial.path})")
