"""Architecture registry: CIFAR-style ResNets (He et al. 2016, section 4.2) and their tiny twins.

Every factory takes `num_classes` and `in_channels` so one name serves CIFAR (3 channels) and the
embedded digits data (1 channel). Shortcuts that change shape are 1x1 projections ("option B"),
which Torch-Pruning traces into proper channel groups; option A's zero padding is not prunable.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .registry import LcpTuneError, Registry

ARCHS: Registry[Callable[..., nn.Module]] = Registry("architecture")


def list_archs() -> list[str]:
    return ARCHS.names()


def build_model(arch: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build a freshly initialised model by registry name."""
    factory = ARCHS.get(arch)
    model = factory(num_classes=num_classes, in_channels=in_channels)
    if not isinstance(model, nn.Module):
        raise LcpTuneError(f"architecture {arch!r} factory returned {type(model).__name__}, not an nn.Module")
    return model


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual add; a 1x1 projection when stride or width changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: three stages of n blocks, widths w, 2w, 4w."""

    def __init__(self, depth: int, widths: Sequence[int] = (16, 32, 64), num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise LcpTuneError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages, in_planes = [], widths[0]
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _register_cifar_resnet(depth: int) -> None:
    def full(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return CifarResNet(depth, (16, 32, 64), num_classes, in_channels)

    def tiny(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        # Same depth and topology, 4x narrower: for tests that must see every group kind fast.
        return CifarResNet(depth, (4, 8, 16), num_classes, in_channels)

    ARCHS.register(f"resnet{depth}", full)
    ARCHS.register(f"resnet{depth}_tiny", tiny)


for _depth in (20, 32, 56, 110):
    _register_cifar_resnet(_depth)
