"""Task of the `anomshield` family: next-token loss on the answers, one task for all three stages."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from vau.families.task import LLMTask


class AnomShieldTask(LLMTask):
    """Trains :class:`~vau.families.anomshield.model.AnomShield`; stages differ only in config."""

    batch_keys = ("input_ids", "attention_mask", "labels", "pixel_values")

    def build_model(self) -> nn.Module:
        from vau.families.anomshield.model import AnomShield

        return AnomShield(self.cfg.model)

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.cfg.model.loss == "answer":
            from vau.models.llm import answer_mean_loss

            out = model(batch["input_ids"], batch["attention_mask"], None, batch["pixel_values"])
            return {"loss": answer_mean_loss(out.logits, batch["labels"])}
        return {"loss": model(**{k: batch[k] for k in self.batch_keys}).loss}

    def validation_samples(self, model: nn.Module, batch: Mapping[str, Any], limit: int, *,
                           max_new_tokens: int, synced: bool = False) -> list[dict]:
        """The first training turn of each of the first ``limit`` clips, answered greedily (the
        question and reference are what the run trains on: ``data.target``'s first turn)."""
        from vau.data.media.video import frame_geometry, frame_strip
        from vau.data.text.conversation import turns_from_annotation
        from vau.data.text.tokenizer import build_tokenizer
        from vau.families.anomshield.predict import _question_text, generate_batch

        n = min(limit, len(batch["key"]))
        if n <= 0:
            return []
        d = self.cfg.data
        pairs = [turns_from_annotation(a, d.target, d.caption_prompt)[0] for a in batch["annotation"][:n]]
        if getattr(self, "_sample_tokenizer", None) is None:
            self._sample_tokenizer = build_tokenizer(self.cfg.model.llm)  # once per run, not per validation
        generation = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
        if synced:
            # HF's generate then keeps stepping (forward passes) on a rank whose answers ended,
            # until every rank's have: under ZeRO-3 each forward gathers weights from all ranks.
            generation["synced_gpus"] = True
        training = model.training
        model.eval()  # no dropout (the connector's drop_path) while answering
        try:
            with torch.no_grad():
                answers = generate_batch(model, self.cfg.model.template, self._sample_tokenizer,
                                         [q for q, _ in pairs], batch["pixel_values"][:n], generation)
        finally:
            model.train(training)
        _, mean, std = frame_geometry(d.decode)
        return [{"id": key, "image": frame_strip(pixels, mean, std), "question": _question_text(question),
                 "answer": answer, "reference": reference}
                for key, pixels, (question, reference), answer
                in zip(batch["key"][:n], batch["pixel_values"][:n], pairs, answers)]
