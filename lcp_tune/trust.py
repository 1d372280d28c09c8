"""Which `package.module:factory` names may be imported and called in this process.

A name read from a file (config.yaml, plan.json, compensation.json) is data, and data never
runs code: a factory runs only when the user named it on the command line (`--arch`, `--data`)
or in Python (`trust_code=True`, or a setting given to lcp_tune.search). The search ships the
names its user trusted to its Ray workers.
"""
from __future__ import annotations

from typing import Iterable

from .errors import LcpTuneError

_TRUSTED: set[str] = set()


def trust(names: Iterable[str]) -> None:
    """Allow these factory names in this process (the user gave them)."""
    _TRUSTED.update(n for n in names if isinstance(n, str) and ":" in n)


def trusted() -> tuple[str, ...]:
    return tuple(sorted(_TRUSTED))


def require_trusted(name: str, what: str, flag: str) -> None:
    """Refuse to import `name` unless the user gave it: one line that says how to allow it."""
    if name not in _TRUSTED:
        raise LcpTuneError(f"{what} {name!r} names code to run, and a file is not allowed to; if you trust "
                           f"it, give it yourself with {flag} {name}")
