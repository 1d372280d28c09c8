"""Starting points users bring: torchvision's pretrained weights, and heads for another class count."""
from __future__ import annotations

import torch
from torch import nn

from lcp_tune.pruning.groups import output_layers
from lcp_tune.errors import LcpTuneError


def classifier_head(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, nn.Linear]:
    """The Linear layer whose output is the network's output (name, module)."""
    heads = [m for m in output_layers(model.eval(), torch.zeros(1, *input_shape)) if isinstance(m, nn.Linear)]
    if not heads:
        raise LcpTuneError("cannot find the classifier head: no Linear layer produces the model's output")
    names = {m: n for n, m in model.named_modules()}
    return names[heads[0]], heads[0]


def adapt_head(model: nn.Module, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Replace the classifier by a fresh one with `num_classes` outputs (fine-tune it afterwards)."""
    name, head = classifier_head(model, input_shape)
    if head.out_features == num_classes:
        return model
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(head.in_features, num_classes, head.bias is not None))
    return model


def pretrained_model(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision's default pretrained weights for `arch` (downloaded by torchvision, cached in
    ~/.cache/torch), with the head adapted to `num_classes`; a clear error where that fails."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except Exception:
        raise LcpTuneError(f"--pretrained: torchvision has no pretrained weights named for {arch!r}; "
                           f"use a torchvision architecture name or --checkpoint") from None
    try:
        model = torchvision.models.get_model(arch, weights=weights)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise LcpTuneError(f"--pretrained: could not get torchvision weights {weights} for {arch!r} ({reason}); "
                           f"on a machine without internet pass --checkpoint with the weights file") from None
    if input_shape[0] != 3:
        raise LcpTuneError(f"--pretrained weights of {arch!r} read 3-channel images, the data has {input_shape[0]}")
    return adapt_head(model, num_classes, input_shape)
