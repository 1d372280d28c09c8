"""Architecture registry: the papers' networks, any torchvision classifier, user factories.

Registered: CIFAR-style ResNet-20/32/56/110 (He et al. 2016, section 4.2; option-B projection
shortcuts, which Torch-Pruning traces into channel groups, option A's zero padding is not
prunable), MobileNetV2 for CIFAR (stride-adapted as in LeGR), VGG-16-BN for CIFAR, torchvision's
ResNet-18/34/50 and MobileNetV2, and a tiny twin of every family for tests (same topology,
narrower and shallower, so a test sees every group kind in milliseconds). Any other torchvision
classification model is built by its torchvision name, and "package.module:factory" builds a
user model. Every factory takes `num_classes` and `in_channels`; catalog.py registers the names."""
from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from lcp_tune.errors import LcpTuneError
from lcp_tune.registry import Registry
from lcp_tune.trust import require_trusted

from .torchvision_nets import torchvision_model, torchvision_names
from .user import user_model


class ArchRegistry(Registry):
    """The registered names, plus torchvision names and "module:factory" resolved on demand."""

    def get(self, name: str) -> Callable[..., nn.Module]:
        if name in self._items:
            return self._items[name]
        if ":" in name:
            require_trusted(name, "architecture", "--arch")
            return partial(user_model, name)
        if name in torchvision_names():
            return partial(torchvision_model, name)
        raise LcpTuneError(
            f"unknown architecture {name!r}: must be one of {', '.join(self.names())}, a torchvision "
            f"classification model name (e.g. resnext50_32x4d, efficientnet_b0) or package.module:factory")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or ":" in name or name in torchvision_names())


ARCHS: ArchRegistry = ArchRegistry("architecture")
# One sample's spatial size for archs whose natural input is not 224x224 (CIFAR-style nets, twins).
INPUT_SIZES: dict[str, int] = {}


def list_archs() -> list[str]:
    return ARCHS.names()


def build_model(arch: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build a freshly initialised model by registry name, torchvision name or module:factory."""
    factory = ARCHS.get(arch)
    model = factory(num_classes=num_classes, in_channels=in_channels)
    if not isinstance(model, nn.Module):
        raise LcpTuneError(f"architecture {arch!r} factory returned {type(model).__name__}, not an nn.Module")
    return model


def default_input_shape(arch: str, in_channels: int = 3) -> tuple[int, int, int]:
    """(C, H, W) the architecture is meant for: 32x32 for CIFAR nets and twins, else 224x224."""
    size = INPUT_SIZES.get(arch, 224)
    return (in_channels, size, size)


def register(name: str, factory: Callable[..., nn.Module], size: int = 224) -> None:
    """Register an architecture and the input side it is meant for (224 unless given)."""
    ARCHS.register(name, factory)
    if size != 224:
        INPUT_SIZES[name] = size
