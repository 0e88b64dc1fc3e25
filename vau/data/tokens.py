"""Synthetic token data: arithmetic progressions mod vocab (learnable, deterministic)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from vau.data.datamodule import VauDataModule
from vau.errors import ConfigError


class TokenPatternDataset(Dataset):
    """Sequence i is ``(s + d*k) mod V`` for k < L, with (s, d) drawn from a seed-i generator.

    A next-token model can learn it (the step d is visible after two tokens), so training
    loss visibly falls. Sample i depends only on (seed, i): identical across ranks, workers
    and restarts.
    """

    def __init__(self, num: int, seq_len: int, vocab_size: int, seed: int) -> None:
        self.num, self.seq_len, self.vocab_size, self.seed = num, seq_len, vocab_size, seed

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        start = int(torch.randint(self.vocab_size, (1,), generator=g))
        step = int(torch.randint(1, 8, (1,), generator=g))
        ids = (start + step * torch.arange(self.seq_len)) % self.vocab_size
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


class TokenDataModule(VauDataModule):
    """DataModule of the `lm` family over :class:`TokenPatternDataset`."""

    collate_fn = None  # default collate stacks the equal-length tensors

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        d = cfg.data
        if d.vocab_size > cfg.model.llm.vocab_size and not cfg.model.llm.pretrained:
            raise ConfigError(
                f"data.vocab_size={d.vocab_size} exceeds model.llm.vocab_size={cfg.model.llm.vocab_size}"
            )

    def train_dataset(self) -> TokenPatternDataset:
        d = self.cfg.data
        return TokenPatternDataset(d.num_train, d.seq_len, d.vocab_size, seed=self.cfg.run.seed)

    def val_dataset(self) -> TokenPatternDataset | None:
        d = self.cfg.data
        if d.num_val <= 0:
            return None
        return TokenPatternDataset(d.num_val, d.seq_len, d.vocab_size, seed=self.cfg.run.seed + 7919)
