"""A CLIP vision tower with a linear head over one pooled vector per clip."""

from __future__ import annotations

import torch
from torch import nn

from vau.models.vision import CLIPPatchEncoder


class ClipClassifier(nn.Module):
    """``[B, T, 3, S, S]`` frames -> ``[B, classes]`` logits.

    The head reads the encoder's ``select_layer`` patch features (what AnomShield's connector
    reads), pooled over every frame and patch, so pretraining shapes exactly those features.
    """

    def __init__(self, encoder: CLIPPatchEncoder, num_classes: int, pool: str = "max") -> None:
        super().__init__()
        self.encoder, self.pool = encoder, pool
        self.head = nn.Linear(encoder.hidden_size, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, t = pixel_values.shape[:2]
        patches = self.encoder(pixel_values.flatten(0, 1))  # [B*T, P, D]
        tokens = patches.reshape(b, t * patches.shape[1], -1)
        pooled = tokens.amax(1) if self.pool == "max" else tokens.mean(1)
        return self.head(pooled.to(self.head.weight.dtype))
