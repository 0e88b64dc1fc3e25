"""Annotation text from shards as causal-LM sequences (the `lm_text` family's data)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from vau.data.annotation import parse_annotation
from vau.data.shard_datamodule import ShardDataModule


class ByteTokenizer:
    """Bytes of UTF-8 text as token ids, for random-init demo models with no tokenizer files.

    Ids ``>= vocab_size`` (non-ASCII bytes for a 128-token model) map to ``?``; id 0 pads.
    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def __call__(self, text: str) -> list[int]:
        return [b if 0 < b < self.vocab_size else ord("?") for b in text.encode()]


def build_tokenizer(llm: Any) -> Callable[[str], list[int]]:
    """The LLM's own tokenizer for a pretrained model (local files only), else bytes."""
    if not llm.pretrained:
        return ByteTokenizer(llm.vocab_size)
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": llm.gguf_file} if llm.gguf_file else {}
    tok = AutoTokenizer.from_pretrained(llm.pretrained, local_files_only=True,
                                        trust_remote_code=llm.trust_remote_code, **kwargs)
    return lambda text: tok(text, add_special_tokens=True)["input_ids"]


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
