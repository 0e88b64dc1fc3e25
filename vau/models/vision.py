"""CLIP vision towers: a local pretrained checkpoint or a random-init one of the same architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vau.models.llm import torch_dtype
from vau.errors import NotFoundError


class CLIPPatchEncoder(nn.Module):
    """Patch features of a CLIP vision tower from one hidden layer, CLS dropped.

    ECVA (as LLaVA) uses hidden layer -2: the last layer is shaped for the contrastive head.
    """

    def __init__(self, model: nn.Module, select_layer: int = -2) -> None:
        super().__init__()
        self.model, self.select_layer = model, select_layer
        c = model.config
        self.grid = c.image_size // c.patch_size
        self.hidden_size = c.hidden_size
        self.image_size = c.image_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per image (grid x grid)."""
        return self.grid * self.grid

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` -> ``[B, grid*grid, hidden]``."""
        out = self.model(pixel_values=pixel_values.to(self.model.dtype), output_hidden_states=True)
        return out.hidden_states[self.select_layer][:, 1:]


def build_clip_vision(cfg: Any) -> CLIPPatchEncoder:
    """Loads ``CLIPVisionModel`` from ``cfg.pretrained`` (local files) or builds it from cfg sizes.

    Raises:
        FileNotFoundError: ``cfg.pretrained`` is not a directory.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    dtype = torch_dtype(cfg.dtype)
    if cfg.pretrained:
        path = Path(cfg.pretrained)
        if not path.is_dir():
            raise NotFoundError(f"model.vision.pretrained={path}: not a directory (expected a local HF CLIP dir)")
        model = CLIPVisionModel.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    else:
        model = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
            image_size=cfg.image_size, patch_size=cfg.patch_size,
        )).to(dtype)
    return CLIPPatchEncoder(model, cfg.select_layer)


def clip_geometry(cfg: Any) -> tuple[int, int]:
    """``(image_size, patch_size)`` of the tower ``cfg`` describes, without loading weights."""
    if not cfg.pretrained:
        return cfg.image_size, cfg.patch_size
    from transformers import CLIPVisionConfig

    c = CLIPVisionConfig.from_pretrained(cfg.pretrained, local_files_only=True)
    return c.image_size, c.patch_size
