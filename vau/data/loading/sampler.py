"""A rank-aware, seeded, resumable sampler for map-style datasets.

Lightning re-creates no position for plain samplers on resume, and swapping in a
DistributedSampler would lose it; this sampler splits by rank itself and can skip the
samples already consumed in the epoch being resumed.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Yields this rank's sample indices for an epoch, optionally starting mid-epoch.

    The order is a function of (seed, epoch) only, so every rank and every restart agrees.
    Each rank takes a strided slice of the epoch's permutation, truncated so all ranks get
    the same count (as DistributedSampler with drop_last=True).

    Args:
        num_samples: Dataset length.
        shuffle: Permute indices each epoch (seeded by ``seed + epoch``).
        seed: Base seed.
        rank: This process's global rank.
        world_size: Number of processes.
    """

    def __init__(self, num_samples: int, *, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._skip_epoch: int | None = None
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the next permutation (Lightning calls this)."""
        self.epoch = epoch

    def resume(self, epoch: int, consumed: int) -> None:
        """Skips ``consumed`` samples of ``epoch`` the next time that epoch is iterated."""
        self.epoch = epoch
        self._skip_epoch, self._skip = epoch, consumed

    def __len__(self) -> int:
        # Full epoch length even when resuming: Lightning counts the skipped batches as done.
        return self.num_samples // self.world_size

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g)
        else:
            order = torch.arange(self.num_samples)
        mine = order[self.rank : len(self) * self.world_size : self.world_size].tolist()
        start = 0
        if self._skip_epoch == self.epoch:
            start, self._skip_epoch = self._skip, None
        return iter(mine[start:])
