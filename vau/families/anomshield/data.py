"""Data pipeline of the `anomshield` family: frames + a templated conversation per sample, padded into batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vau.constants import IGNORE_INDEX
from vau.data.text.conversation import PLACEHOLDER, TEMPLATES, truncate, turns_from_annotation
from vau.data.media.decode import MediaWrapper, SampleDecoder, sample_rng
from vau.data.loading.shard_datamodule import ShardDataModule
from vau.data.text.tokenizer import Tokenizer, build_tokenizer


class AnomShieldDecoder(MediaWrapper):
    """Raw sample -> ``pixel_values [T, 3, S, S]``, ``input_ids``, ``labels``.

    Images become ``T``-frame clips by repetition (as the ECVA reference does), so images and
    videos mix in one batch and every sample has the same number of visual tokens.
    """

    def __init__(self, cfg: Any, tok: Tokenizer, n_visual: int, train: bool) -> None:
        d = cfg.data
        self.frames = d.decode.frames
        # The target's text and a media member are checked (check_sample, as `vau shards
        # inspect --target` does) before any frame is decoded.
        self.media = SampleDecoder(d.decode, train=train, seed=cfg.run.seed, target=d.target,
                                   prompt=d.caption_prompt, need_media=True)
        self.template = TEMPLATES.get(cfg.model.template)
        self.tok, self.n_visual = tok, n_visual
        self.target, self.prompt, self.max_length = d.target, d.caption_prompt, d.max_length
        self.one_turn = d.turns == "one"

    def __call__(self, sample: dict) -> dict[str, Any]:
        out = self.media(sample)
        if "video" in out:
            pixels = out["video"]
        elif "image" in out:
            pixels = out["image"].expand(self.frames, -1, -1, -1)
        else:
            raise ValueError(f"{out['key']}: no video or image member")
        if pixels.shape[0] != self.frames:
            raise ValueError(f"{out['key']}: got {pixels.shape[0]} frames, expected {self.frames}")
        turns = turns_from_annotation(out["annotation"], self.target, self.prompt)
        if self.one_turn and len(turns) > 1:
            turns = [one_turn(turns, sample_rng(self.media.seed, self.media.epoch, out["key"] + "#turn"))]
        ex = truncate(self.template(turns, self.tok, self.n_visual), self.max_length)
        return {"key": out["key"], "pixel_values": pixels.contiguous(),
                "input_ids": torch.tensor(ex.input_ids), "labels": torch.tensor(ex.labels),
                "annotation": out["annotation"]}


def one_turn(turns: list[tuple[str, str]], rng: np.random.Generator) -> tuple[str, str]:
    """One question/answer pair of a conversation, its question without the visual placeholder
    (the template puts it first), as `vau infer` asks each question on its own.

    Later answers of a multi-turn conversation can be read off earlier ones (a description names
    the anomaly the next turn asks about); single pairs make every answer come from the frames.
    """
    question, answer = turns[int(rng.integers(len(turns)))]
    return PLACEHOLDER.sub("", question).lstrip("\n"), answer


def pad_collate(pad_id: int):
    """Collate function: right-pads ids (``pad_id``) and labels (ignored), stacks frames."""

    def collate(samples: list[dict]) -> dict[str, Any]:
        n = max(len(s["input_ids"]) for s in samples)
        ids = torch.full((len(samples), n), pad_id, dtype=torch.long)
        labels = torch.full((len(samples), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), n), dtype=torch.long)
        for i, s in enumerate(samples):
            k = len(s["input_ids"])
            ids[i, :k], labels[i, :k], mask[i, :k] = s["input_ids"], s["labels"], 1
        return {"key": [s["key"] for s in samples], "input_ids": ids, "labels": labels, "attention_mask": mask,
                "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
                "annotation": [s["annotation"] for s in samples]}

    return collate


def visual_tokens(cfg: Any) -> int:
    """Visual tokens per sample: frames x the model's tokens per frame."""
    from vau.families.anomshield.model import tokens_per_frame

    return cfg.data.decode.frames * tokens_per_frame(cfg.model)


class AnomShieldDataModule(ShardDataModule):
    """ShardDataModule yielding AnomShield batches."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.tokenizer = build_tokenizer(cfg.model.llm)
        self.n_visual = visual_tokens(cfg)
        self.collate_fn = pad_collate(self.tokenizer.pad_id)

    def decoder(self, train: bool) -> AnomShieldDecoder:
        return AnomShieldDecoder(self.cfg, self.tokenizer, self.n_visual, train)
