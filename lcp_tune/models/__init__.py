"""Architectures: the registry (`build_model`, `list_archs`), the papers' CIFAR networks,
torchvision's families with tiny twins, user factories and pretrained starting points."""
from .registry import ARCHS, INPUT_SIZES, build_model, default_input_shape, list_archs
from . import catalog  # noqa: F401  (registers every named architecture)

__all__ = ["ARCHS", "INPUT_SIZES", "build_model", "default_input_shape", "list_archs"]
