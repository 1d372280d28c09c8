"""Timing on the target device: one forward pass of a network, or one layer alone at given widths.

The latency model (latency.py) is built from these: each layer shape is rebuilt standalone at a
grid of widths and timed, and whole networks are timed to calibrate the sum. Plain torch.
"""
from __future__ import annotations

import platform

import torch
from torch import nn

from .groups import CONV_TYPES, hooked_forward


def device_model(device: str) -> str:
    """The processor behind a device name: the GPU's name, or the CPU's model line."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_latency(model: nn.Module, example: torch.Tensor, threads: int = 1, min_run_time: float = 0.2) -> float:
    """Median seconds of one forward pass on `example`'s device, after warm-up, in eval mode."""
    import logging

    # importing torch.utils.benchmark warns "No CUDA runtime is found" on CPU machines: noise in a report
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(3):
                model(example)
            timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": example}, num_threads=threads)
            measurement = timer.blocked_autorange(min_run_time=min_run_time)
    finally:
        model.train(was)
    return float(measurement.median)



def input_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Each module's input shape per sample (channels excluded: they are the table's axis)."""
    shapes: dict[str, tuple[int, ...]] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(mod, inputs, _out):
        x = inputs[0]
        shapes[names[mod]] = tuple(x.shape[2:]) if not isinstance(mod, nn.Linear) else tuple(x.shape[1:-1])

    hooked_forward(model, input_shape, CONV_TYPES + (nn.Linear, nn.modules.batchnorm._BatchNorm), hook)
    return shapes


def layer_signature(module: nn.Module) -> tuple:
    """What, beside its widths and input size, decides a layer's time: two layers alike here share a table."""
    if isinstance(module, CONV_TYPES):
        return (type(module).__name__, module.kernel_size, module.stride, module.padding, module.dilation,
                module.groups, module.bias is not None, module.padding_mode)
    if isinstance(module, nn.Linear):
        return ("Linear", module.bias is not None)
    return (type(module).__name__,)


def standalone(module: nn.Module, info, w_in: int, w_out: int, shape: tuple[int, ...], batch: int,
                device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """A fresh module like `module` at widths (w_in, w_out) and a random input for it."""
    if isinstance(module, CONV_TYPES):
        groups = w_out if info.kind == "depthwise" else module.groups
        in_channels = w_out if info.kind == "depthwise" else w_in
        layer = type(module)(in_channels, w_out, module.kernel_size, module.stride, module.padding,
                             module.dilation, groups, module.bias is not None, module.padding_mode)
        x = torch.randn(batch, in_channels, *shape)
    elif isinstance(module, nn.Linear):
        layer = nn.Linear(w_in, w_out, bias=module.bias is not None)
        x = torch.randn(batch, *shape, w_in)
    else:
        layer = type(module)(w_out)
        x = torch.randn(batch, w_out, *shape)
    return layer.to(device).eval(), x.to(device)


def module_named(model: nn.Module, name: str) -> nn.Module:
    """The submodule at a dotted name."""
    return dict(model.named_modules())[name]


class torch_threads:
    """Torch's intra-op thread count set for a block, and restored after it."""

    def __init__(self, count: int):
        self.count = count

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(max(1, self.count))

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
