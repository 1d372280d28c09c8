"""A user's own architecture, named "package.module:factory"."""
from __future__ import annotations

import importlib
import inspect

from torch import nn

from lcp_tune.errors import LcpTuneError, first_line


def user_model(spec: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build "package.module:factory", passing num_classes / in_channels if the factory takes them."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise LcpTuneError(f"architecture {spec!r}: cannot import module {module_name!r} "
                           f"({first_line(exc)})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise LcpTuneError(f"architecture {spec!r}: module {module_name!r} has no callable {attr!r}")
    try:
        params = inspect.signature(factory).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        params, accepts_any = {}, False
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
              if accepts_any or k in params}
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise LcpTuneError(f"architecture {spec!r}: the factory raised {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise LcpTuneError(f"architecture {spec!r}: the factory returned {type(model).__name__}, "
                           f"not an nn.Module")
    return model
