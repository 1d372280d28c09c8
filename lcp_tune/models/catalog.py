"""Every named architecture, registered with the input side it is meant for.

One table for the whole catalogue: the papers' CIFAR networks, torchvision's families and a
tiny twin of each (same topology, narrower and shallower, so a test sees every group kind in
milliseconds). Any other torchvision name and "module:factory" resolve in registry.py.
"""
from __future__ import annotations

from functools import partial

from torch import nn

from .cifar import CifarVGG, cifar_resnet
from .torchvision_nets import (mobilenet_v2, tiny_densenet, tiny_efficientnet, tiny_mobilenet_v3,
                               tiny_regnet, torchvision_model, tv_resnet_twin)
from .registry import register


def resnet20_narrow(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-20 at half width (8/16/32): sized for the 8x8 digits, where the 16/32/64 original
    loses almost nothing even at 7% of its FLOPs and so cannot tell pruning methods apart."""
    return cifar_resnet(20, (8, 16, 32), num_classes, in_channels)


for _depth in (20, 32, 56, 110):
    register(f"resnet{_depth}", partial(cifar_resnet, _depth, (16, 32, 64)), 32)
    # same depth and topology, 4x narrower: for tests that must see every group kind fast
    register(f"resnet{_depth}_tiny", partial(cifar_resnet, _depth, (4, 8, 16)), 32)
register("resnet20_narrow", resnet20_narrow, 32)
register("vgg16_bn_cifar", partial(CifarVGG, 1.0), 32)
register("vgg16_bn_cifar_tiny", partial(CifarVGG, 1 / 8), 32)
# VGG-16 at a quarter width (16..128), four pools and a global average: 12.9 MFLOPs on 28x28
# Fashion-MNIST. Plain and deep, with its redundancy uneven across layers, where allocation matters
register("vgg16_bn_narrow", partial(CifarVGG, 1 / 4, last_pool=False), 28)
# ResNet-56 at half width (8/16/32), the papers' depth at the width of resnet20_narrow: 24 MFLOPs
# on 28x28, a third of the 16/32/64 original's cost, so its Fashion-MNIST table fits two cores
register("resnet56_narrow", partial(cifar_resnet, 56, (8, 16, 32)), 28)
register("mobilenet_v2_cifar", partial(mobilenet_v2, True), 32)
register("mobilenet_v2_cifar_tiny", partial(mobilenet_v2, True, 0.25, 1), 32)
register("mobilenet_v2", partial(mobilenet_v2, False))
register("mobilenet_v2_tiny", partial(mobilenet_v2, False, 0.25, 1), 32)
for _name in ("resnet18", "resnet34", "resnet50"):
    register(_name, partial(torchvision_model, _name))
register("resnet18_tiny", partial(tv_resnet_twin, "basic", (2, 2, 2, 2)), 32)
register("resnet34_tiny", partial(tv_resnet_twin, "basic", (3, 4, 6, 3)), 32)
register("resnet50_tiny", partial(tv_resnet_twin, "bottleneck", (1, 2, 2, 1)), 32)
register("resnext50_tiny", partial(tv_resnet_twin, "bottleneck", (1, 1, 1, 1), groups=4,
                                   width_per_group=16), 32)
register("densenet121_tiny", tiny_densenet, 32)
register("efficientnet_b0_tiny", tiny_efficientnet, 32)
register("regnet_y_400mf_tiny", tiny_regnet, 32)
register("mobilenet_v3_small_tiny", tiny_mobilenet_v3, 32)
