"""Tokenizers behind one small interface: the LLM's own (HF, local files) or bytes for demos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol


BYTE_TOKENIZER_FILE = "byte_tokenizer.json"
"""Marks a model folder whose tokenizer is :class:`ByteTokenizer`."""


class Tokenizer(Protocol):
    """What the data pipeline and generation need from a tokenizer."""

    bos_id: int | None
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``, special tokens dropped."""

    def save(self, folder: Path) -> None:
        """Writes the tokenizer files into ``folder`` (exports)."""


class ByteTokenizer:
    """UTF-8 bytes as ids, for random-init demo models that have no tokenizer files.

    Ids 0/1/2 are pad/bos/eos (control bytes that text does not use); bytes ``>= vocab_size``
    (non-ASCII for a 128-token model) map to ``?``.
    """

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        return [b if 2 < b < self.vocab_size else ord("?") for b in text.encode()]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 2 < i < 256).decode("utf-8", "replace")

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BYTE_TOKENIZER_FILE).write_text(json.dumps({"type": "bytes", "vocab_size": self.vocab_size}) + "\n")


class HFTokenizer:
    """A Hugging Face tokenizer loaded from local files."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        self.bos_id = tok.bos_token_id
        if tok.eos_token_id is None:
            raise ValueError(f"tokenizer {tok.name_or_path}: no eos token")
        self.eos_id = tok.eos_token_id
        # Padded positions are masked out of attention and loss, so any id works; eos is the usual choice.
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def save(self, folder: Path) -> None:
        self.tok.save_pretrained(str(folder))


def build_tokenizer(llm: Any) -> ByteTokenizer | HFTokenizer:
    """The LLM's tokenizer for a pretrained model (``model.llm.pretrained``, local files), else bytes."""
    if not llm.pretrained:
        return ByteTokenizer(llm.vocab_size)
    byte_file = Path(llm.pretrained) / BYTE_TOKENIZER_FILE
    if byte_file.is_file():  # a demo model exported by `vau train` (see ByteTokenizer.save)
        return ByteTokenizer(int(json.loads(byte_file.read_text())["vocab_size"]))
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": llm.gguf_file} if llm.gguf_file else {}
    tok = AutoTokenizer.from_pretrained(llm.pretrained, local_files_only=True,
                                        trust_remote_code=llm.trust_remote_code, **kwargs)
    return HFTokenizer(tok)
