"""Datasets: the registry (`load_data`, `list_datasets`), seeded splits and loaders, digits,
the real image formats (CIFAR, ImageFolder/ImageNet, CUB-200, MNIST/Fashion-MNIST IDX) and users'
own factories."""
from .registry import DATASETS, list_datasets, load_data, load_experiment_data
from .splits import DataSplits, stratified_split
from . import digits  # noqa: F401  (registers digits)
from . import images  # noqa: F401  (registers cifar10, cifar100, imagenet, cub200)
from . import idx  # noqa: F401  (registers fashion-mnist, mnist)

__all__ = ["DATASETS", "DataSplits", "list_datasets", "load_data", "load_experiment_data",
           "stratified_split"]
