"""Data augmentation of minibatches inside the training step: random crop and flip of images,
random crop (a shift) of 1-D sequences."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_batch(x: torch.Tensor, padding: int, generators: list[torch.Generator]) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per example, for a
    batch of image minibatches ``x`` [M, B, C, H, W]; member m draws from generators[m].

    Each image is padded by ``padding`` pixels on every side, a random H×W window is
    cut out (offsets uniform in [0, 2·padding]), and it is mirrored left-right with
    probability 1/2 — the augmentation of Zhang et al. 2017's "random crop" rows and of
    the usual CIFAR-10 recipes. A 1-D sequence ``x`` [M, B, C, L] is cropped the same way
    along its length and never mirrored (mirroring a sequence changes what it shows, e.g. an
    MNIST-1D digit).
    """
    offsets, flips = augment_draws(generators, x.shape[1], padding)
    return augment_apply(x, padding, offsets, flips)


def augment_draws(generators: list[torch.Generator], batch: int, padding: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop offsets [M, batch, 2] and flip flags [M, batch], row m drawn from generators[m]."""
    offsets, flips = [], []
    for generator in generators:
        offsets.append(torch.randint(0, 2 * padding + 1, (batch, 2), generator=generator))
        flips.append(torch.rand(batch, generator=generator) < 0.5)
    return torch.stack(offsets), torch.stack(flips)


def augment_apply(x: torch.Tensor, padding: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Crop and flip the images ``x`` [M, B, C, H, W] as ``augment_draws`` decided; crop the
    sequences ``x`` [M, B, C, L] by the column offsets alone."""
    if x.dim() == 4:
        return _crop_sequences(x, padding, offsets[..., 1])
    if x.dim() != 5:
        raise ValueError(
            f"augmentation needs images (channels, height, width) or sequences (channels, length); got {tuple(x.shape[2:])}"
        )
    members, batch, channels, height, width = x.shape
    offset = offsets.to(x.device)
    flip = flips.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offset[..., 0, None] + torch.arange(height, device=x.device)
    columns = torch.arange(width, device=x.device).expand(members, batch, width)
    columns = torch.where(flip[..., None], width - 1 - columns, columns) + offset[..., 1, None]
    full_width = width + 2 * padding
    cropped = padded.gather(3, rows[:, :, None, :, None].expand(members, batch, channels, height, full_width))
    return cropped.gather(4, columns[:, :, None, None, :].expand(members, batch, channels, height, width))


def _crop_sequences(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """A random window of each zero-padded sequence ``x`` [M, B, C, L], starting at ``offsets`` [M, B]."""
    members, batch, channels, length = x.shape
    padded = F.pad(x, (padding, padding))
    positions = offsets.to(x.device)[..., None] + torch.arange(length, device=x.device)
    return padded.gather(3, positions[:, :, None, :].expand(members, batch, channels, length))
