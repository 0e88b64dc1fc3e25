"""Task of the `clip_vision` family: cross-entropy over clip classes; accuracy; an HF CLIP export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from vau.families.clip_vision.model import ClipClassifier
from vau.families.task import Task
from vau.models.vision import build_clip_vision


class ClipVisionTask(Task):
    """Trains :class:`ClipClassifier` on ``label``; exports the tower as a ``CLIPVisionModel`` folder."""

    batch_keys = ("pixel_values", "label")

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return ClipClassifier(build_clip_vision(m.vision), len(self.cfg.data.classes), m.pool, m.grid_pool)

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(model(batch["pixel_values"]), batch["label"])}

    def metrics(self) -> dict[str, Any]:
        from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

        # acc: clip class; detection: normal vs any anomaly (what the demo's LLM is later asked)
        return {"acc": MulticlassAccuracy(num_classes=len(self.cfg.data.classes), average="micro"),
                "detection": BinaryAccuracy()}

    def update_metrics(self, metrics: Mapping[str, Any], model: nn.Module, batch: Mapping[str, Any]) -> None:
        with torch.no_grad():
            pred = model(batch["pixel_values"]).argmax(-1)
        normal = list(self.cfg.data.classes).index(self.cfg.data.normal)
        metrics["acc"].update(pred, batch["label"])
        metrics["detection"].update((pred != normal).long(), (batch["label"] != normal).long())

    def predict(self, model: nn.Module, batch: Mapping[str, Any]) -> list[dict]:
        classes = list(self.cfg.data.classes)
        with torch.no_grad():
            probs = model(batch["pixel_values"]).softmax(-1)
        return [{"id": key, "label": classes[int(y)], "pred": classes[int(p.argmax())],
                 "probs": [round(float(v), 6) for v in p]}
                for key, y, p in zip(batch["key"], batch["label"], probs)]

    @classmethod
    def score(cls, records: list[dict]) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, balanced_accuracy_score

        y, p = [r["label"] for r in records], [r["pred"] for r in records]
        return {"accuracy": 100 * accuracy_score(y, p), "balanced_accuracy": 100 * balanced_accuracy_score(y, p),
                "n": float(len(records))}

    def export_extra(self, model: nn.Module, folder: Path) -> None:
        # A plain HF CLIPVisionModel directory: `model.vision.pretrained` of a later run loads it
        # exactly as it loads a released CLIP checkpoint.
        model.encoder.model.save_pretrained(str(folder / "hf"))
