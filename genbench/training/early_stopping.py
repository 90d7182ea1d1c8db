"""Early stopping: a held-out part of each member's training examples.

With ``TrainConfig.early_stopping_patience = p`` each member sets aside a fraction
``validation_fraction`` of its own training examples, drawn with a seed derived from
the run's seed. Those examples are never trained on. At every epoch end the member's
accuracy on them is measured with the member's own (possibly corrupted) labels; a
member whose held-out accuracy has not improved for ``p`` epochs stops
("early-stopped") and keeps the weights of its best held-out epoch.
"""

from __future__ import annotations

import torch

from genbench.seeding import derive_seed


def held_out_size(subset_size: int, fraction: float) -> int:
    """Examples set aside out of ``subset_size``: round(fraction · size), at least 1,
    leaving at least one to train on."""
    size = max(1, round(fraction * subset_size))
    if size >= subset_size:
        raise ValueError(
            f"validation_fraction {fraction} leaves no training examples out of {subset_size}"
        )
    return size


def validation_split(
    train_indices: torch.Tensor, seeds: list[int], fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each row of ``train_indices`` [M, m] into (kept [M, m − v], held out [M, v]).

    Member i's split is a function of ``seeds[i]`` and its row alone (so a run splits
    the same way alone and inside an ensemble); the kept indices stay in their
    original order."""
    rows = train_indices.cpu()
    subset_size = int(rows.shape[1])
    size = held_out_size(subset_size, fraction)
    kept, held = [], []
    for row, seed in zip(rows, seeds):
        generator = torch.Generator().manual_seed(derive_seed(seed, "validation"))
        permutation = torch.randperm(subset_size, generator=generator)
        held.append(row[permutation[:size].sort().values])
        kept.append(row[permutation[size:].sort().values])
    return torch.stack(kept).to(train_indices.device), torch.stack(held).to(train_indices.device)
