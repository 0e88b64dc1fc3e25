"""The task contract: what the one LightningModule (:class:`vau.lit.module.VauModule`) needs from a family.

A family subclasses :class:`Task` once. The module builds the model through it, trains on
``losses``, logs every term, accumulates ``metrics`` over validation/test epochs (torchmetrics
sync them across ranks), turns batches into records with ``predict`` (``vau infer``) and scores
records with ``score`` (``vau eval``). Nothing here imports Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from vau.errors import BadInputError


class Task:
    """One family's training, evaluation and prediction logic over its pure PyTorch model.

    Args:
        cfg: The resolved run config (``cfg.model`` and ``cfg.data`` are the family's sections).
    """

    batch_keys: ClassVar[tuple[str, ...]] = ()
    """Batch entries ``losses`` reads; a batch without one fails in one line naming it."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    # -- model --------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The family's model (pure PyTorch/HF), randomly initialised or from local weights."""
        raise NotImplementedError

    def llm(self, model: nn.Module) -> nn.Module | None:
        """The model's language model, if any (``vau export --merge-lora`` merges its adapter)."""
        return None

    # -- training -----------------------------------------------------------------------
    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Loss terms of a batch; the total (what is optimised) under ``"loss"``."""
        raise NotImplementedError

    def check_batch(self, batch: Mapping[str, Any]) -> None:
        """Raises BadInputError naming the first of ``batch_keys`` the batch lacks."""
        missing = [k for k in self.batch_keys if k not in batch]
        if missing:
            raise BadInputError(f"batch has no {missing[0]!r} (the {type(self).__name__} reads "
                                f"{', '.join(self.batch_keys)}; check data.pipeline)")

    def batch_size(self, batch: Mapping[str, Any]) -> int:
        """Samples in a batch (for throughput and epoch means): the first batch key's length."""
        return len(batch[self.batch_keys[0]])

    def num_tokens(self, batch: Mapping[str, Any]) -> int:
        """Tokens in a batch (tokens/s); 0 for families that read no text."""
        return 0

    # -- evaluation ---------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Fresh torchmetrics ``Metric`` objects accumulated over a validation/test epoch."""
        return {}

    def update_metrics(self, metrics: Mapping[str, Any], model: nn.Module, batch: Mapping[str, Any]) -> None:
        """Updates ``metrics`` (from :meth:`metrics`) with one evaluation batch."""

    def predict(self, model: nn.Module, batch: Mapping[str, Any]) -> list[dict]:
        """Records of a batch for ``vau infer`` (JSON-able dicts, each with a unique ``"id"``)."""
        raise NotImplementedError(f"{type(self).__name__} has no predict")

    def validation_samples(self, model: nn.Module, batch: Mapping[str, Any], limit: int, *,
                           max_new_tokens: int, synced: bool = False) -> list[dict]:
        """Generated answers for at most ``limit`` clips of a validation batch, for the run's log.

        Each row: ``{"id", "image" (uint8 ``[H, W, 3]`` numpy or None), "question", "answer",
        "reference"}``; greedy, at most ``max_new_tokens`` new tokens; the model is left in the
        train/eval mode it had. ``synced``: every rank calls this together on its own batch
        (ZeRO-3 partitions the weights), so generation must step all ranks in lockstep. The
        default, for families without generation, logs nothing.
        """
        return []

    @classmethod
    def score(cls, records: list[dict]) -> dict[str, float]:
        """``vau eval``'s metrics of one predictions file (records from :meth:`predict`)."""
        raise NotImplementedError(f"{cls.__name__} has no score")

    # -- export -------------------------------------------------------------------------
    def export_extra(self, model: nn.Module, folder: Path) -> None:
        """Writes what an export needs besides the trained weights (tokenizer, PEFT adapter)."""


class LLMTask(Task):
    """A task whose model is or holds a Hugging Face causal LM (``cfg.model.llm``): counts text
    tokens, exports the PEFT adapter and the tokenizer the data pipeline used."""

    def num_tokens(self, batch: Mapping[str, Any]) -> int:
        return int(batch["attention_mask"].sum())  # non-padding tokens

    def llm(self, model: nn.Module) -> nn.Module | None:
        return getattr(model, "llm", model)

    @staticmethod
    def save_adapter(llm: nn.Module, folder: Path) -> bool:
        """Writes a PEFT model's LoRA adapter to ``folder/adapter``; False if ``llm`` is not PEFT."""
        if not hasattr(llm, "peft_config"):
            return False
        # PEFT's own format (adapter_config.json + adapter_model.safetensors): loads with
        # PeftModel.from_pretrained and merges with `merge_and_unload`.
        llm.save_pretrained(str(folder / "adapter"))
        return True

    def export_extra(self, model: nn.Module, folder: Path) -> None:
        from vau.data.text.tokenizer import build_tokenizer

        self.save_adapter(self.llm(model), folder)
        # The tokenizer the data pipeline used, so an export is self-contained for inference.
        build_tokenizer(self.cfg.model.llm).save(folder / "tokenizer")
