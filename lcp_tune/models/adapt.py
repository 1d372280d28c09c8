"""The one model adapter every family shares: another input channel count."""
from __future__ import annotations

from torch import nn

from lcp_tune.errors import LcpTuneError


def adapt_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace the first conv (3 input channels) by a fresh one reading `in_channels` channels."""
    if in_channels == 3:
        return model
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], nn.Conv2d(
                in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                module.dilation, 1, module.bias is not None))
            return model
    raise LcpTuneError(f"cannot adapt the model to {in_channels} input channels: no conv reads 3 channels")
