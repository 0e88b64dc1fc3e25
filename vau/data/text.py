"""Annotation text from shards as causal-LM sequences (the `lm_text` family's data)."""

from __future__ import annotations

from typing import Any

import torch

from vau.constants import IGNORE_INDEX
from vau.data.annotation import parse_annotation
from vau.data.conversation import mistral, turns_from_annotation
from vau.data.shard_datamodule import ShardDataModule
from vau.data.tokenizer import Tokenizer, build_tokenizer


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
