"""Post-surgery checks: cheap ones on every pruned model, a functional one once per structure.

Cheap (every candidate): each layer's (in, out) widths against the cost model, the parameter
count, and one forward pass counting MACs (the planner's FLOPs must equal what the module
does) and checking the output shape. A failure names the layer.

Functional (once per Pruner, and on request): the pruned model must compute exactly what the
base model computes with the dropped channels silenced (producer filters, biases and norm
affine set to zero), compared layer by layer. Shapes alone cannot see a channel wired to the
wrong input, which is how a Torch-Pruning index-mapping bug (e.g. a concatenation feeding a
residual add) shows; this check names the first layer whose outputs differ.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from .errors import PruningCheckError
from .groups import CONV_TYPES, NORM_TYPES, ChannelStructure
from .planner import Plan
from .resources import CostModel
from .surgery import prune_model, surgery_index


def _actual_widths(module: nn.Module) -> tuple[int, int] | None:
    if isinstance(module, CONV_TYPES):
        return module.in_channels // module.groups, module.out_channels
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, NORM_TYPES):
        return 0, module.num_features
    return None


def verify_pruned(model: nn.Module, structure: ChannelStructure, cost: CostModel, plan: Plan,
                  base: Optional[nn.Module] = None) -> None:
    """Raise PruningCheckError, naming the layer, unless `model` is exactly what `plan` says.

    With `base`, also run the functional check against the base model (costs two forwards and a
    copy of the base; Pruner runs it once per structure).
    """
    _check_widths(model, structure, cost, plan)
    params = sum(p.numel() for p in model.parameters())
    if params != plan.params:
        raise PruningCheckError(f"pruned model has {params} parameters, the plan predicted {plan.params}")
    flops, shape = _run_counting(model, structure.input_shape)
    if flops != plan.flops:
        raise PruningCheckError(f"pruned model costs {flops} FLOPs, the plan predicted {plan.flops}")
    if shape != tuple(structure.output_shape):
        raise PruningCheckError(f"pruned model outputs shape {shape}, the base model {structure.output_shape}")
    if base is not None:
        check_equivalent(model, base, structure, plan)


def _check_widths(model: nn.Module, structure: ChannelStructure, cost: CostModel, plan: Plan) -> None:
    expected = cost.expected_widths(plan.keep_counts)
    modules = dict(model.named_modules())
    for name, info in structure.layers.items():
        actual = _actual_widths(modules[name]) if name in modules else None
        if actual is None or info.kind == "fixed":
            continue
        want_in, want_out = expected[name]
        if info.kind == "norm":
            want_in = 0
        if actual != (want_in, want_out):
            raise PruningCheckError(f"layer {name!r} has (in, out) widths {actual} after pruning, "
                                    f"the plan expects {(want_in, want_out)}")


def _run_counting(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """One eval forward: (conv + linear MACs, output shape); a crash names the layer it hit."""
    total, last = [0], [""]
    names = {m: n for n, m in model.named_modules()}

    def count(mod, inputs, out):
        if isinstance(mod, CONV_TYPES):
            total[0] += out[0].numel() * (mod.in_channels // mod.groups) * int(np.prod(mod.kernel_size))
        else:
            total[0] += out[0].numel() * mod.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, CONV_TYPES + (nn.Linear,))]
    hooks += [m.register_forward_pre_hook(lambda mod, i: last.__setitem__(0, names[mod]))
              for m in model.modules() if not m._modules]
    was = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, *input_shape))
    except Exception as exc:
        raise PruningCheckError(f"pruned model fails to run at or after layer {last[0]!r} "
                                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}); the layers after it "
                                f"reshape channels in a way the tracer missed: pass {last[0]!r} in "
                                f"ignored_layers") from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return total[0], tuple(out.shape[1:])


def silenced_base(base: nn.Module, structure: ChannelStructure, plan: Plan) -> nn.Module:
    """A copy of `base` whose dropped channels output exactly zero (producers zeroed)."""
    full = Plan.from_dict({**plan.to_dict(), "kept": [list(range(n)) for n in plan.group_sizes]})
    silenced = prune_model(base, structure, full)      # a plain copy: every channel kept
    kept = surgery_index(structure).kept(plan)
    modules = dict(silenced.named_modules())
    with torch.no_grad():
        for (name, dim), idx in kept.items():
            if dim != "out" or idx is None:
                continue
            module = modules[name]
            dropped = torch.ones(structure.layers[name].out_dim, dtype=torch.bool)
            dropped[idx] = False
            for p in (module.weight, module.bias):
                if p is not None:
                    p[dropped] = 0
    return silenced


def check_equivalent(pruned: nn.Module, base: nn.Module, structure: ChannelStructure, plan: Plan,
                     seed: int = 0) -> None:
    """Compare every conv / linear / norm output of `pruned` with the silenced base's kept part."""
    reference = silenced_base(base, structure, plan)
    kept = surgery_index(structure).kept(plan)
    torch.manual_seed(seed)
    x = torch.randn(2, *structure.input_shape)
    ref_out = _record(reference, x)
    linear = {n for n, m in pruned.named_modules() if isinstance(m, nn.Linear)}
    new_out = _record(pruned, x)
    for name, value in new_out.items():
        want = ref_out[name]
        idx = kept.get((name, "out"))
        if idx is not None:   # a linear layer's features are its last dimension
            want = want.index_select(want.dim() - 1 if name in linear else 1, idx)
        scale = float(want.abs().max()) + 1e-6
        if want.shape != value.shape or float((want - value).abs().max()) > 1e-3 * scale:
            raise PruningCheckError(
                f"layer {name!r} computes different values after pruning than the base model with the "
                f"dropped channels silenced: its input channels are mis-indexed (a Torch-Pruning "
                f"index-mapping error); pass {name!r} or its producers in ignored_layers")


def _record(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of every conv / linear / norm layer, in execution order."""
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: outputs.setdefault(n, o.detach().clone()))
             for n, m in model.named_modules() if isinstance(m, CONV_TYPES + NORM_TYPES + (nn.Linear,))]
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    except Exception as exc:
        raise PruningCheckError(f"pruned model fails to run ({type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0][:160]})") from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return outputs
