"""Architecture registry: the papers' networks, any torchvision classifier, user factories.

Registered: CIFAR-style ResNet-20/32/56/110 (He et al. 2016, section 4.2; option-B projection
shortcuts, which Torch-Pruning traces into channel groups, option A's zero padding is not
prunable), MobileNetV2 for CIFAR (stride-adapted as in LeGR), VGG-16-BN for CIFAR, torchvision's
ResNet-18/34/50 and MobileNetV2, and a tiny twin of every family for tests (same topology,
narrower and shallower, so a test sees every group kind in milliseconds). Any other torchvision
classification model is built by its torchvision name, and "package.module:factory" builds a
user model. Every factory takes `num_classes` and `in_channels`.
"""
from __future__ import annotations

import importlib
import inspect
from functools import lru_cache, partial
from typing import Callable, Sequence

import torch
from torch import nn

from .registry import LcpTuneError, Registry


class ArchRegistry(Registry):
    """The registered names, plus torchvision names and "module:factory" resolved on demand."""

    def get(self, name: str) -> Callable[..., nn.Module]:
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return partial(_user_model, name)
        if name in _torchvision_names():
            return partial(_torchvision_model, name)
        raise LcpTuneError(
            f"unknown architecture {name!r}: must be one of {', '.join(self.names())}, a torchvision "
            f"classification model name (e.g. resnext50_32x4d, efficientnet_b0) or package.module:factory")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or ":" in name or name in _torchvision_names())


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


@lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    import torchvision
    return frozenset(torchvision.models.list_models(module=torchvision.models))


def _torchvision_model(name: str, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """torchvision.models.get_model(name) with random weights (never downloads)."""
    import torchvision
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except Exception as exc:
        raise LcpTuneError(f"torchvision could not build architecture {name!r}: {_first_line(exc)}") from None
    return adapt_in_channels(model, in_channels)


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


def _user_model(spec: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build "package.module:factory", passing num_classes / in_channels if the factory takes them."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise LcpTuneError(f"architecture {spec!r}: cannot import module {module_name!r} "
                           f"({_first_line(exc)})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise LcpTuneError(f"architecture {spec!r}: module {module_name!r} has no callable {attr!r}")
    try:
        params = inspect.signature(factory).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        params, accepts_any = {}, False
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
              if accepts_any or k in params}
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise LcpTuneError(f"architecture {spec!r}: the factory raised {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise LcpTuneError(f"architecture {spec!r}: the factory returned {type(model).__name__}, "
                           f"not an nn.Module")
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:160]}" if text else type(exc).__name__


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
    INPUT_SIZES[f"resnet{depth}"] = INPUT_SIZES[f"resnet{depth}_tiny"] = 32


for _depth in (20, 32, 56, 110):
    _register_cifar_resnet(_depth)


@ARCHS.register("resnet20_narrow")
def resnet20_narrow(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-20 at half width (8/16/32): sized for the 8x8 digits, where the 16/32/64 original
    loses almost nothing even at 7% of its FLOPs and so cannot tell pruning methods apart."""
    return CifarResNet(20, (8, 16, 32), num_classes, in_channels)


INPUT_SIZES["resnet20_narrow"] = 32


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class CifarVGG(nn.Module):
    """VGG-16-BN for 32x32 inputs: 13 conv-BN-ReLU, 5 max-pools, one linear classifier."""

    def __init__(self, widths_per_64: float = 1.0, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            width = max(4, int(item * widths_per_64))
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


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


def _tiny_densenet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from torchvision.models import DenseNet
    model = DenseNet(growth_rate=4, block_config=(2, 2, 2), num_init_features=8, bn_size=2,
                     num_classes=num_classes)
    return adapt_in_channels(model, in_channels)


def _tiny_efficientnet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from torchvision.models import efficientnet
    setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    model = efficientnet.EfficientNet(setting, 0.2, num_classes=num_classes, last_channel=last)
    return adapt_in_channels(model, in_channels)


def _tiny_regnet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from torchvision.models import regnet
    params = regnet.BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=4,
                                                 se_ratio=0.25)
    return adapt_in_channels(regnet.RegNet(params, num_classes=num_classes, stem_width=8), in_channels)


def _tiny_mobilenet_v3(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from torchvision.models import mobilenetv3
    setting, last = mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    return adapt_in_channels(mobilenetv3.MobileNetV3(setting, last, num_classes=num_classes), in_channels)


def _register(name: str, factory: Callable[..., nn.Module], size: int = 224) -> None:
    ARCHS.register(name, factory)
    if size != 224:
        INPUT_SIZES[name] = size


_register("vgg16_bn_cifar", partial(CifarVGG, 1.0), 32)
_register("vgg16_bn_cifar_tiny", partial(CifarVGG, 1 / 8), 32)
_register("mobilenet_v2_cifar", partial(mobilenet_v2, True), 32)
_register("mobilenet_v2_cifar_tiny", partial(mobilenet_v2, True, 0.25, 1), 32)
_register("mobilenet_v2", partial(mobilenet_v2, False))
_register("mobilenet_v2_tiny", partial(mobilenet_v2, False, 0.25, 1), 32)
for _name in ("resnet18", "resnet34", "resnet50"):
    _register(_name, partial(_torchvision_model, _name))
_register("resnet18_tiny", partial(tv_resnet_twin, "basic", (2, 2, 2, 2)), 32)
_register("resnet34_tiny", partial(tv_resnet_twin, "basic", (3, 4, 6, 3)), 32)
_register("resnet50_tiny", partial(tv_resnet_twin, "bottleneck", (1, 2, 2, 1)), 32)
_register("resnext50_tiny", partial(tv_resnet_twin, "bottleneck", (1, 1, 1, 1), groups=4,
                                    width_per_group=16), 32)
_register("densenet121_tiny", _tiny_densenet, 32)
_register("efficientnet_b0_tiny", _tiny_efficientnet, 32)
_register("regnet_y_400mf_tiny", _tiny_regnet, 32)
_register("mobilenet_v3_small_tiny", _tiny_mobilenet_v3, 32)
