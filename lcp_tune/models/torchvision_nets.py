"""torchvision's families: any classifier by its torchvision name, MobileNetV2 (with LeGR's
CIFAR strides) and narrow twins of each family for tests. Builders only: catalog.py registers them."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from torch import nn

from lcp_tune.errors import LcpTuneError, first_line

from .adapt import adapt_in_channels


@lru_cache(maxsize=1)
def torchvision_names() -> frozenset[str]:
    import torchvision
    return frozenset(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(name: str, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """torchvision.models.get_model(name) with random weights (never downloads)."""
    import torchvision
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except Exception as exc:
        raise LcpTuneError(f"torchvision could not build architecture {name!r}: {first_line(exc)}") from None
    return adapt_in_channels(model, in_channels)


# (expansion t, out channels c, blocks n, stride s) of MobileNetV2; for CIFAR the first conv and the
# second stage keep stride 1 (LeGR / kuangliu's CIFAR MobileNetV2), so 32x32 ends at 4x4.
MBV2_CIFAR = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
              [6, 160, 3, 2], [6, 320, 1, 1]]


def mobilenet_v2(cifar: bool, width: float = 1.0, blocks: int | None = None, num_classes: int = 10,
                 in_channels: int = 3) -> nn.Module:
    """torchvision's MobileNetV2, stride-adapted for 32x32 when `cifar`; `blocks` caps n per stage."""
    from torchvision.models import MobileNetV2
    setting = [[t, c, n if blocks is None else min(n, blocks), s] for t, c, n, s in MBV2_CIFAR]
    if not cifar:
        setting[1][3] = 2
    model = MobileNetV2(num_classes=num_classes, width_mult=width, inverted_residual_setting=setting)
    if cifar:
        model.features[0][0].stride = (1, 1)
    return adapt_in_channels(model, in_channels)


def tv_resnet_twin(block: str, depths: Sequence[int], widths: Sequence[int] = (8, 16, 32, 64),
                   groups: int = 1, width_per_group: int = 64, num_classes: int = 10,
                   in_channels: int = 3) -> nn.Module:
    """A narrow torchvision ResNet / ResNeXt: torchvision's own blocks and forward, smaller widths."""
    from torchvision.models import resnet as tvr

    class NarrowResNet(tvr.ResNet):
        def __init__(self):
            nn.Module.__init__(self)
            kind = tvr.BasicBlock if block == "basic" else tvr.Bottleneck
            self._norm_layer, self.dilation = nn.BatchNorm2d, 1
            self.inplanes, self.groups, self.base_width = widths[0], groups, width_per_group
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.bn1, self.relu = nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1, self.layer2, self.layer3, self.layer4 = (
                self._make_layer(kind, w, d, stride=1 if i == 0 else 2)
                for i, (w, d) in enumerate(zip(widths, depths)))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(widths[-1] * kind.expansion, num_classes)

    return NarrowResNet()


def tiny_densenet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from torchvision.models import DenseNet
    model = DenseNet(growth_rate=4, block_config=(2, 2, 2), num_init_features=8, bn_size=2,
                     num_classes=num_classes)
    return adapt_in_channels(model, in_channels)


def tiny_efficientnet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from torchvision.models import efficientnet
    setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    model = efficientnet.EfficientNet(setting, 0.2, num_classes=num_classes, last_channel=last)
    return adapt_in_channels(model, in_channels)


def tiny_regnet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from torchvision.models import regnet
    params = regnet.BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=4,
                                                 se_ratio=0.25)
    return adapt_in_channels(regnet.RegNet(params, num_classes=num_classes, stem_width=8), in_channels)


def tiny_mobilenet_v3(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from torchvision.models import mobilenetv3
    setting, last = mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    return adapt_in_channels(mobilenetv3.MobileNetV3(setting, last, num_classes=num_classes), in_channels)
