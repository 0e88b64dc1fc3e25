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

    def __init__(self, encoder: CLIPPatchEncoder, num_classes: int, pool: str = "max", grid_pool: int = 1) -> None:
        super().__init__()
        self.encoder, self.pool, self.grid_pool = encoder, pool, grid_pool
        self.head = nn.Linear(encoder.hidden_size, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, t = pixel_values.shape[:2]
        patches = self.encoder(pixel_values.flatten(0, 1))  # [B*T, P, D]
        if self.grid_pool > 1:  # the patch grid averaged as AnomShield pools it before its projector
            g = self.encoder.grid
            grid = patches.transpose(1, 2).reshape(b * t, -1, g, g)
            patches = torch.nn.functional.avg_pool2d(grid, self.grid_pool).flatten(2).transpose(1, 2)
        tokens = patches.reshape(b, t * patches.shape[1], -1)
        pooled = tokens.amax(1) if self.pool == "max" else tokens.mean(1)
        return self.head(pooled.to(self.head.weight.dtype))
