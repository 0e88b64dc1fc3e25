"""Data pipeline of the `clip_vision` family: frames + the clip's anomaly-class index."""

from __future__ import annotations

from typing import Any

import torch

from vau.data.loading.shard_datamodule import ShardDataModule
from vau.data.media.decode import MediaWrapper, SampleDecoder


def clip_label(annotation: dict, classes: list[str], normal: str) -> int:
    """Index in ``classes`` of a clip's class: ``normal`` unless ``anomaly.abnormal``, else its first class.

    Raises:
        ValueError: The annotation has no ``anomaly`` block, or its class is not in ``classes``.
    """
    anomaly = annotation.get("anomaly")
    if not isinstance(anomaly, dict):
        raise ValueError("annotation has no anomaly block (data.classes labels read anomaly.abnormal/classes)")
    name = (anomaly.get("classes") or [None])[0] if anomaly.get("abnormal") else normal
    if name not in classes:
        raise ValueError(f"anomaly class {name!r} is not one of data.classes={classes}")
    return classes.index(name)


class ClipVisionDecoder(MediaWrapper):
    """Raw sample -> ``key``, ``pixel_values [T, 3, S, S]`` (an image repeated to T frames), ``label``."""

    def __init__(self, cfg: Any, train: bool) -> None:
        d = cfg.data
        self.media = SampleDecoder(d.decode, train=train, seed=cfg.run.seed, need_media=True)
        self.classes, self.normal, self.frames = list(d.classes), d.normal, d.decode.frames

    def __call__(self, sample: dict) -> dict[str, Any]:
        out = self.media(sample)
        label = clip_label(out["annotation"], self.classes, self.normal)  # before any frame work is kept
        pixels = out["video"] if "video" in out else out["image"].expand(self.frames, -1, -1, -1)
        return {"key": out["key"], "pixel_values": pixels, "label": torch.tensor(label)}


class ClipVisionDataModule(ShardDataModule):
    """ShardDataModule yielding ``pixel_values``/``label`` batches."""

    def decoder(self, train: bool) -> ClipVisionDecoder:
        return ClipVisionDecoder(self.cfg, train)
