"""An image dataset's training augmentation redone on batches of decoded uint8 tensors.

torchvision's PIL transforms work on one image at a time on the CPU; the search's shared subsets
(search_subsets.py) are decoded once, so their augmentation must run on tensors, a whole batch
at once and on the trial's GPU when it has one. Crop, resize and flip are one batched
`grid_sample`: each image gets an affine map from the output square to its crop box (mirrored
when flipped). The random draws come from a CPU generator, so a candidate sees the same crops
on any device (the search's common random numbers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

KINDS = ("pad_crop", "resized_crop")
TRIES = 10   # torchvision's RandomResizedCrop tries 10 boxes before its centre-crop fallback


@dataclass(frozen=True)
class TensorAugment:
    """How one dataset's training images are augmented and every image is normalised.

    `pad_crop` is CIFAR's: a random `size` crop of the image padded by `padding` zeros, so an
    integer shift (nearest sampling: pixels are copied, not blended). `resized_crop` is
    ImageNet's RandomResizedCrop(size, scale, ratio), bilinear, with `scale` read against the
    stored image (a centre square of side size * 256 / 224), not the original file.
    """

    kind: str
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    padding: int = 0
    flip: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"augmentation kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float, scaled to [0, 1] and normalised (ToTensor + Normalize),
        in place on one new tensor: a validation batch of 256 at 224 px is 154 MB of floats."""
        scale = 1 / (255 * torch.tensor(self.std, device=images.device).view(1, -1, 1, 1))
        shift = 255 * torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        return images.float().sub_(shift).mul_(scale)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random augmentation of uint8 (N, C, H, W) images, normalised, `size` x `size`."""
        n, _, height, width = images.shape
        if self.kind == "pad_crop":
            theta, mode = self._shifts(n, height, width, generator), "nearest"
        else:
            theta, mode = self._boxes(n, height, width, generator), "bilinear"
        if self.flip:
            mirrored = torch.rand(n, generator=generator) < 0.5
            theta[mirrored, 0, 0] *= -1   # x_in = centre - scale * x_out: the crop read right to left
        x = images.float().div_(255)     # zero padding in [0, 1] is the PIL pad's black, as in torchvision
        grid = F.affine_grid(theta.to(x.device), [n, x.shape[1], self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)

    def _shifts(self, n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """Identity scale, an integer shift in [-padding, padding] on each axis."""
        shifts = torch.randint(-self.padding, self.padding + 1, (n, 2), generator=generator).float()
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = self.size / width
        theta[:, 1, 1] = self.size / height
        theta[:, 0, 2] = 2 * shifts[:, 1] / width     # a centred crop moved by the shift
        theta[:, 1, 2] = 2 * shifts[:, 0] / height
        return theta

    def _boxes(self, n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """torchvision's RandomResizedCrop.get_params for n images at once, as affine maps."""
        area = height * width
        target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(n, TRIES, generator=generator))
        low, high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(low + (high - low) * torch.rand(n, TRIES, generator=generator))
        w = torch.sqrt(target * aspect).round()
        h = torch.sqrt(target / aspect).round()
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.float().argmax(1)                       # the first try that fits
        w = w.gather(1, first[:, None]).squeeze(1)
        h = h.gather(1, first[:, None]).squeeze(1)
        fallback = ~fits.any(1)
        if fallback.any():                                   # the whole image, clamped to the ratios
            fw, fh = self._fallback(height, width)
            w[fallback], h[fallback] = fw, fh
        u = torch.rand(n, 2, generator=generator)
        top = torch.floor(u[:, 0] * (height - h + 1))
        left = torch.floor(u[:, 1] * (width - w + 1))
        top[fallback] = ((height - h[fallback]) // 2)
        left[fallback] = ((width - w[fallback]) // 2)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = w / width                           # normalised coordinates, align_corners=False:
        theta[:, 1, 1] = h / height                          # pixel edge j maps to 2 j / width - 1
        theta[:, 0, 2] = (2 * left + w) / width - 1
        theta[:, 1, 2] = (2 * top + h) / height - 1
        return theta

    def _fallback(self, height: int, width: int) -> tuple[float, float]:
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            return float(width), float(round(width / min(self.ratio)))
        if in_ratio > max(self.ratio):
            return float(round(height * max(self.ratio))), float(height)
        return float(width), float(height)
