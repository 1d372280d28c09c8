"""The CIFAR-style networks of the papers: ResNet-20/32/56/110 (He et al. 2016, section 4.2,
option-B projection shortcuts, which Torch-Pruning traces into channel groups; option A's zero
padding is not prunable) and VGG-16-BN for 32x32 inputs. Builders only: catalog.py registers them."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lcp_tune.errors import LcpTuneError


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


def cifar_resnet(depth: int, widths: Sequence[int] = (16, 32, 64), num_classes: int = 10,
                 in_channels: int = 3) -> nn.Module:
    """A CIFAR ResNet of `depth` (6n+2) with the given stage widths."""
    return CifarResNet(depth, tuple(widths), num_classes, in_channels)


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class CifarVGG(nn.Module):
    """VGG-16-BN for 32x32 inputs: 13 conv-BN-ReLU, 5 max-pools, one linear classifier."""

    def __init__(self, widths_per_64: float = 1.0, num_classes: int = 10, in_channels: int = 3,
                 last_pool: bool = True):
        """`last_pool=False` drops the fifth max-pool and averages the last map instead, so the
        network also takes 28x28 inputs (MNIST, Fashion-MNIST), where five halvings leave nothing."""
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG16 if last_pool else VGG16[:-1]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            width = max(4, int(item * widths_per_64))
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        if not last_pool:
            layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
