"""Annotation text from shards as causal-LM sequences (the `lm_text` family's data)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from vau.data.annotation import parse_annotation
from vau.data.shard_datamodule import ShardDataModule
from vau.data.tokenizer import build_tokenizer


class TextDecoder:
    """Raw sample -> ``input_ids``/``attention_mask``/``labels`` of one annotation field.

    Media members are not decoded: this family reads text only.
    """

    def __init__(self, field: str, seq_len: int, tokenize: Callable[[str], list[int]]) -> None:
        self.field, self.seq_len, self.tokenize = field, seq_len, tokenize

    def __call__(self, sample: dict) -> dict[str, Any]:
        key = sample["__key__"]
        if "json" not in sample:
            raise ValueError(f"no {key}.json annotation in the sample")
        value = parse_annotation(sample["json"]).get(self.field)
        if isinstance(value, list):
            value = " ".join(map(str, value))
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key}.json has no text field {self.field!r}")
        ids = self.tokenize(value)[: self.seq_len]
        n = len(ids)
        pad = self.seq_len - n
        input_ids = torch.tensor(ids + [0] * pad)
        mask = torch.tensor([1] * n + [0] * pad)
        labels = input_ids.masked_fill(mask == 0, -100)
        return {"key": key, "input_ids": input_ids, "attention_mask": mask, "labels": labels}


class TextShardDataModule(ShardDataModule):
    """ShardDataModule whose samples are tokenised annotation text."""

    def decoder(self, train: bool) -> TextDecoder:
        d = self.cfg.data
        return TextDecoder(d.text, d.seq_len, build_tokenizer(self.cfg.model.llm))
