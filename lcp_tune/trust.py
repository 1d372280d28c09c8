"""Which `package.module:factory` names may be imported and called in this process.

A name read from a file (config.yaml, plan.json, compensation.json) is data, and data never
runs code: a factory runs only when the user named it on the command line (`--arch`, `--data`)
or in Python (`trust_code=True`, or a setting given to lcp_tune.search). The search ships the
names its user trusted to its Ray workers.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Callable, Iterable

from .errors import LcpTuneError, first_line

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


def import_factory(spec: str, what: str, flag: str) -> Callable[..., Any]:
    """Import the callable named "package.module:factory" once the user has given it.

    `what` prefixes every message (e.g. "--data 'pkg.mod:make'"); the current folder is
    searched too, as `python -m` does, since a console script does not put it on sys.path.
    """
    require_trusted(spec, "architecture" if flag == "--arch" else "dataset", flag)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise LcpTuneError(f"{what}: a user factory is named package.module:factory")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise LcpTuneError(f"{what}: cannot import module {module_name!r} ({first_line(exc)}); it must be "
                           f"importable (on PYTHONPATH or in the current folder)") from None
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise LcpTuneError(f"{what}: module {module_name!r} has no callable {attr!r}")
    return factory


def call_factory(factory: Callable[..., Any], what: str, **offered: Any) -> Any:
    """Call a user's factory with the offered keywords it accepts; its exception becomes one line."""
    try:
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        params, takes_any = {}, False
    try:
        return factory(**{k: v for k, v in offered.items() if takes_any or k in params})
    except LcpTuneError:
        raise
    except Exception as exc:
        raise LcpTuneError(f"{what}: the factory raised {first_line(exc)}") from None
