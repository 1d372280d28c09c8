"""One writer per experiment folder: an advisory lock that search, finetune, export and analyze hold.

Two commands writing one folder at once mix their files (two searches' trials in one `search/`,
two fine-tunes each rewriting budgets.json without the other's row). The lock is `flock` on
`EXPERIMENT/.lcp-lock`, which records who holds it; the kernel drops it when its holder exits,
however it exits, so a crashed run never blocks the next one. Re-entrant within a process: a
search that goes on to fine-tune other budgets takes it once.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lcp_tune.errors import LcpTuneError

LOCK_NAME = ".lcp-lock"
_HELD: set[str] = set()   # folders this process holds


@contextmanager
def experiment_lock(folder: str | Path, command: str) -> Iterator[None]:
    """Hold `folder`'s lock for the block, or fail in one line naming its holder."""
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        yield
        return
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise LcpTuneError(f"cannot lock experiment folder {folder}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LcpTuneError(f"experiment folder {folder} is in use by {_holder(fd)}; wait for it to finish "
                               f"(or stop it), then run this again") from None
        _record(fd, command)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            if created:
                _remove_if_only_lock(folder)
    finally:
        os.close(fd)   # releases the lock


def _remove_if_only_lock(folder: Path) -> None:
    """A folder this command made and left empty (bad input found before any work) goes again:
    bad input writes nothing."""
    try:
        if [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            (folder / LOCK_NAME).unlink()
            folder.rmdir()
    except OSError:
        pass


def _record(fd: int, command: str) -> None:
    info = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": " ".join(sys.argv[:1] + sys.argv[1:])[:300]}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    except OSError:   # a full disk: the lock holds without its note
        pass


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"`lcp-tune {info['command']}` (pid {int(info['pid'])} on {info['host']}, since {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another lcp-tune command"
