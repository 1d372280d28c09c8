"""Interruptions are interruptions: Ctrl-C or SIGTERM stops a run with a clear line, keeps
every finished trial, writes no final artefact and exits non-zero (130 for SIGINT, 143 for
SIGTERM); `lcp-tune search --resume` continues it.

SIGTERM is turned into SIGINT, so Ray Tune stops its trials and saves its state exactly as
for Ctrl-C; which signal came first decides the exit status.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

from lcp_tune.errors import LcpTuneError

EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
_received: list[int] = []
_depth = 0   # nesting: ray.init installs its own SIGTERM handler, so the search re-arms ours


class Interrupted(LcpTuneError):
    """The run was stopped by a signal before it finished; its message says how to resume."""

    def __init__(self, message: str, signum: Optional[int] = None):
        super().__init__(message)
        self.exit_code = EXIT_STATUS.get(signum or (_received[0] if _received else signal.SIGINT), 130)


@contextmanager
def catching_signals() -> Iterator[None]:
    """While the block runs, record SIGINT / SIGTERM and let SIGTERM stop Tune as Ctrl-C does.

    Enter it again after `ray.init`, which replaces the SIGTERM handler with one that aborts.
    """
    if threading.current_thread() is not threading.main_thread():
        yield   # signal handlers can only be set from the main thread
        return
    global _depth
    if _depth == 0:
        _received.clear()
    _depth += 1

    def on_term(signum, frame) -> None:
        _received.append(signum)
        os.kill(os.getpid(), signal.SIGINT)

    def on_int(signum, frame) -> None:
        _received.append(signum)
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_int = signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        _depth -= 1
        if _depth > 0:   # back in an outer block (after the search: the fine-tunes) that must still catch
            signal.signal(signal.SIGTERM, on_term)
            signal.signal(signal.SIGINT, on_int)
        else:   # a handler installed by C code reads as None and cannot be put back
            signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)
            signal.signal(signal.SIGINT, old_int if old_int is not None else signal.default_int_handler)


def was_interrupted() -> bool:
    return bool(_received)


def interrupted(where: str, resume_hint: str) -> Interrupted:
    """The error for a run stopped during `where`."""
    name = signal.Signals(_received[0]).name if _received else "SIGINT"
    return Interrupted(f"interrupted by {name} during {where}; nothing final was written. {resume_hint}")
