"""Where the driver's work runs (base training, fine-tunes, BN recalibration, tests, export timing).

`--device auto` is CUDA when torch sees a GPU, else the CPU; `cuda` and `cuda:N` must exist, and
saying so before any work starts is the point of this module. Models leave the device as they
came (on the CPU), since planning and surgery run there.
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

import torch
from torch import nn

from .errors import LcpTuneError

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
ALLOWED = "auto, cpu, cuda or cuda:N"


def check_device_name(name: str) -> str:
    """The name itself (no hardware check): one of auto, cpu, cuda, cuda:N."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise LcpTuneError(f"--device must be {ALLOWED}, got {name!r}")
    return name


def resolve_device(name: str) -> torch.device:
    """The torch.device for a --device value on this machine, or one line saying why not."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        built = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
        raise LcpTuneError(f"--device {name}: torch (built {built}) sees no CUDA GPU on this machine; "
                           f"use --device cpu or --device auto")
    index = int(name.partition(":")[2] or torch.cuda.current_device())
    count = torch.cuda.device_count()
    if index >= count:
        raise LcpTuneError(f"--device {name}: this machine has {count} CUDA GPU{'s' * (count != 1)} "
                           f"(cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to `device`; on CUDA in channels_last with cuDNN autotuning, both of which
    pay when input shapes are fixed (every dataset here resizes to one size)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


def device_name(device: torch.device) -> str:
    """For logs and reports: "cpu" or "cuda:0 (NVIDIA H200)"."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The model on `device` for the block, back on the CPU (plain memory format) after it:
    planning, surgery and saving all expect a CPU model."""
    try:
        yield place(model, device)
    finally:
        if device.type != "cpu":
            model.to("cpu", memory_format=torch.contiguous_format)
