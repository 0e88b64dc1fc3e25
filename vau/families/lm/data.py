"""Data pipelines of the `lm` family: ``tokens`` (synthetic token patterns, map-style) and
``text`` (annotation text from tar shards)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from vau.constants import IGNORE_INDEX
from vau.data.shards.annotation import parse_annotation
from vau.data.text.conversation import mistral, turns_from_annotation
from vau.data.loading.datamodule import VauDataModule
from vau.data.loading.shard_datamodule import ShardDataModule
from vau.data.text.tokenizer import Tokenizer, build_tokenizer
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


class TextDecoder:
    """Raw sample -> ``input_ids``/``attention_mask``/``labels`` of one annotation field.

    ``conversations`` are rendered in the Mistral instruction format with the visual
    placeholders dropped (domain-text pretraining of an LLM); other fields are plain text
    between bos and eos. Media members are not decoded: this family reads text only.
    """

    def __init__(self, field: str, seq_len: int, tok: Tokenizer) -> None:
        self.field, self.seq_len, self.tok = field, seq_len, tok

    def _ids(self, key: str, ann: dict) -> list[int]:
        if self.field == "conversations":
            return mistral(turns_from_annotation(ann, "conversations", ""), self.tok, n_visual=0).input_ids
        value = ann.get(self.field)
        if isinstance(value, list):
            value = " ".join(map(str, value))
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key}.json has no text field {self.field!r}")
        bos = [self.tok.bos_id] if self.tok.bos_id is not None else []
        return bos + self.tok.encode(value) + [self.tok.eos_id]

    def __call__(self, sample: dict) -> dict[str, Any]:
        key = sample["__key__"]
        if "json" not in sample:
            raise ValueError(f"no {key}.json annotation in the sample")
        ids = self._ids(key, parse_annotation(sample["json"]))[: self.seq_len]
        n = len(ids)
        pad = self.seq_len - n
        input_ids = torch.tensor(ids + [self.tok.pad_id] * pad)
        mask = torch.tensor([1] * n + [0] * pad)
        labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
        return {"key": key, "input_ids": input_ids, "attention_mask": mask, "labels": labels}


class TextShardDataModule(ShardDataModule):
    """ShardDataModule whose samples are tokenised annotation text."""

    def decoder(self, train: bool) -> TextDecoder:
        d = self.cfg.data
        return TextDecoder(d.text, d.seq_len, build_tokenizer(self.cfg.model.llm))
