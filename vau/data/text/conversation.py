"""Conversation templates: annotation turns -> token ids + loss labels, visual placeholders expanded.

A ``<video>`` or ``<image>`` in a human turn becomes ``n_visual`` copies of
:data:`VISUAL_TOKEN`, a negative id no tokenizer produces: the model overwrites those
positions with the projected visual tokens (so sequence lengths are known before the
model runs). Only the answers (and their end-of-sequence token) are learned; prompts and
visual positions carry :data:`IGNORE_INDEX`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from vau.constants import IGNORE_INDEX, VISUAL_TOKEN
from vau.data.text.tokenizer import Tokenizer
from vau.registry import Registry
from vau.errors import ConfigError

PLACEHOLDER = re.compile(r"<video>|<image>")

Turn = tuple[str, str]
"""(human prompt, assistant answer)."""


@dataclass
class Example:
    """One tokenised training example."""

    input_ids: list[int]
    """Token ids, with ``VISUAL_TOKEN`` at the visual positions."""
    labels: list[int]
    """Targets; ``IGNORE_INDEX`` where no loss is taken."""


def _prompt_ids(text: str, tok: Tokenizer, n_visual: int) -> list[int]:
    ids: list[int] = []
    parts = PLACEHOLDER.split(text)
    for i, part in enumerate(parts):
        if i:
            ids += [VISUAL_TOKEN] * n_visual
        if part:
            ids += tok.encode(part)
    return ids


def _with_placeholder(turns: Sequence[Turn], n_visual: int) -> list[Turn]:
    turns = list(turns)
    if n_visual and turns and not any(PLACEHOLDER.search(h) for h, _ in turns):
        # Samples without an explicit placeholder still show the visual input first (LLaVA).
        turns[0] = ("<video>\n" + turns[0][0], turns[0][1])
    return turns


def plain(turns: Sequence[Turn], tok: Tokenizer, n_visual: int) -> Example:
    """LLaVA's ``plain`` pretraining format: visual tokens, then the first answer, then eos.

    The prompt text is dropped (alignment stages learn to describe, not to follow prompts).
    """
    answer = tok.encode(turns[0][1]) + [tok.eos_id]
    head = ([tok.bos_id] if tok.bos_id is not None else []) + [VISUAL_TOKEN] * n_visual
    return Example(head + answer, [IGNORE_INDEX] * len(head) + answer)


def mistral(turns: Sequence[Turn], tok: Tokenizer, n_visual: int) -> Example:
    """Mistral-Instruct format: ``<s>[INST] q [/INST] a</s>[INST] q2 [/INST] a2</s>``."""
    ids = [tok.bos_id] if tok.bos_id is not None else []
    labels = [IGNORE_INDEX] * len(ids)
    for human, answer in _with_placeholder(turns, n_visual):
        prompt = _prompt_ids(f"[INST] {human.strip()} [/INST]", tok, n_visual)
        reply = tok.encode(" " + answer.strip()) + [tok.eos_id]
        ids += prompt + reply
        labels += [IGNORE_INDEX] * len(prompt) + reply
    return Example(ids, labels)


TEMPLATES: Registry[Callable[[Sequence[Turn], Tokenizer, int], Example]] = Registry("conversation template")
TEMPLATES.register("plain", plain)
TEMPLATES.register("mistral", mistral)


def generation_prompt(template: str, question: str, tok: Tokenizer, n_visual: int) -> list[int]:
    """Prompt ids for generating an answer to ``question`` about the visual input."""
    if template == "plain":
        return ([tok.bos_id] if tok.bos_id is not None else []) + [VISUAL_TOKEN] * n_visual
    (human, _), = _with_placeholder([(question, "")], n_visual)
    bos = [tok.bos_id] if tok.bos_id is not None else []
    return bos + _prompt_ids(f"[INST] {human.strip()} [/INST]", tok, n_visual)


def truncate(ex: Example, max_length: int) -> Example:
    """Cuts an example to ``max_length`` tokens from the end; refuses to cut visual tokens.

    Raises:
        ValueError: The visual tokens alone do not fit.
    """
    if len(ex.input_ids) <= max_length:
        return ex
    last_visual = max((i for i, t in enumerate(ex.input_ids) if t == VISUAL_TOKEN), default=-1)
    if last_visual >= max_length:
        raise ValueError(f"{last_visual + 1} tokens up to the last visual token exceed max_length={max_length}")
    return Example(ex.input_ids[:max_length], ex.labels[:max_length])


def turns_from_annotation(ann: dict, target: str, prompt: str) -> list[Turn]:
    """Training turns from an annotation.

    Args:
        ann: A validated annotation.
        target: ``conversations`` (its human/gpt turns), ``caption`` (the main caption) or
            ``long_caption`` (the last of ``captions``, e.g. ShareGPT4V-style detail).
        prompt: Human prompt used for caption targets.

    Raises:
        ValueError: The annotation lacks what ``target`` needs.
    """
    if target == "conversations":
        conv = ann.get("conversations")
        if not conv:
            raise ValueError("annotation has no conversations")
        turns = []
        for i in range(0, len(conv) - 1, 2):
            h, g = conv[i], conv[i + 1]
            if h["from"] != "human" or g["from"] != "gpt":
                raise ValueError(f"conversations[{i}]: expected a human turn then a gpt turn")
            turns.append((h["value"], g["value"]))
        return turns
    if target == "caption":
        text = ann.get("caption") or (ann.get("captions") or [None])[0]
    elif target == "long_caption":
        text = (ann.get("captions") or [None])[-1] or ann.get("caption")
    else:
        raise ConfigError(f"data.target={target!r}: expected conversations, caption or long_caption")
    if not text:
        raise ValueError(f"annotation has no text for target {target!r}")
    return [(prompt, text)]
