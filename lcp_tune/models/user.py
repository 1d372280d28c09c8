"""A user's own architecture, named "package.module:factory"."""
from __future__ import annotations

from torch import nn

from lcp_tune.errors import LcpTuneError
from lcp_tune.trust import call_factory, import_factory


def user_model(spec: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build "package.module:factory", passing num_classes / in_channels if the factory takes them."""
    what = f"architecture {spec!r}"
    model = call_factory(import_factory(spec, what, "--arch"), what, num_classes=num_classes,
                         in_channels=in_channels)
    if not isinstance(model, nn.Module):
        raise LcpTuneError(f"{what}: the factory returned {type(model).__name__}, not an nn.Module")
    return model
