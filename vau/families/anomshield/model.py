"""AnomShield (ECVA §IV, Fig. 5): CLIP patches -> spatio-temporal embeddings -> BiMamba -> pool -> MLP -> LLM."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vau.constants import VISUAL_TOKEN
from vau.models.blocks.connector import build_connector
from vau.models.llm import build_causal_lm
from vau.models.vision import build_clip_vision, clip_geometry
from vau.errors import ConfigError


def tokens_per_frame(cfg: Any) -> int:
    """Visual tokens per frame after pooling, ``(patch grid / pool)^2``, from the tower's geometry alone."""
    image_size, patch_size = clip_geometry(cfg.vision)
    return ((image_size // patch_size) // cfg.pool) ** 2


class AnomShield(nn.Module):
    """The AnomShield video LLM.

    Parameter name prefixes (used by the stage configs' ``trainable`` patterns):
    ``vision.``, ``temporal_embed``, ``spatial_embed``, ``connector.``, ``projector.``, ``llm.``.
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision = build_clip_vision(cfg.vision)
        d_vis, grid = self.vision.hidden_size, self.vision.grid
        if grid % cfg.pool:
            raise ConfigError(f"model.pool={cfg.pool} must divide the {grid}x{grid} patch grid")
        # ECVA Eq. 1: learned temporal p_t (T x D) and spatial p_s (M x D) embeddings added to patches.
        # Switched off (Tab. VIII "- soft prompt"), they are empty: the names stay for model.trainable.
        rows_t, rows_s = (cfg.max_frames, grid * grid) if cfg.st_embed else (0, 0)
        self.temporal_embed = nn.Parameter(torch.zeros(rows_t, d_vis))
        self.spatial_embed = nn.Parameter(torch.zeros(rows_s, d_vis))
        self.tokens_per_frame = tokens_per_frame(cfg)
        """Visual tokens per frame after pooling."""
        nn.init.trunc_normal_(self.temporal_embed, std=0.02)
        nn.init.trunc_normal_(self.spatial_embed, std=0.02)
        self.connector = build_connector(cfg.connector, d_vis)  # ECVA Eqs. 2-10
        self.llm = build_causal_lm(cfg.llm)
        d_llm = self.llm.get_input_embeddings().embedding_dim
        # ECVA §IV-B: two-layer MLP projector into the LLM's embedding space.
        self.projector = nn.Sequential(nn.Linear(d_vis, d_llm), nn.GELU(), nn.Linear(d_llm, d_llm))

    def encode_visual(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, S, S]`` frames -> ``[B, T * tokens_per_frame, D_llm]`` visual tokens."""
        b, t = pixel_values.shape[:2]
        if t > self.cfg.max_frames:
            raise ConfigError(f"{t} frames exceed model.max_frames={self.cfg.max_frames}")
        frozen = not any(p.requires_grad for p in self.vision.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            feats = self.vision(pixel_values.flatten(0, 1))  # [(b t), M, D]
        feats = feats.to(self.temporal_embed.dtype).unflatten(0, (b, t))
        if self.cfg.st_embed:
            feats = feats + self.temporal_embed[:t, None] + self.spatial_embed[None, :]  # Eq. 1
        else:  # the empty tables' sum (0) keeps them in the graph: DDP expects every trainable parameter used
            feats = feats + (self.temporal_embed.sum() + self.spatial_embed.sum())
        g, d = self.vision.grid, feats.shape[-1]
        x = self.connector(feats.reshape(b, t * g * g, d))  # frame-major `b (t h w) d`
        # ECVA §IV-B: AvgPool3d((1, 4, 4)) per frame: 16x16 patches -> 16 tokens.
        x = x.view(b, t, g, g, d).permute(0, 4, 1, 2, 3)
        x = F.avg_pool3d(x, kernel_size=(1, self.cfg.pool, self.cfg.pool))
        x = x.flatten(2).transpose(1, 2)  # [b, t*(g/p)^2, d], frame-major
        return self.projector(x)

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the visual tokens written into the placeholder positions."""
        slots = input_ids == VISUAL_TOKEN
        embeds = self.llm.get_input_embeddings()(input_ids.masked_fill(slots, 0))
        if pixel_values is None:
            if slots.any():
                raise ValueError("input_ids hold visual placeholders but no pixel_values were given")
            return embeds
        visual = self.encode_visual(pixel_values)
        counts = slots.sum(1)
        if not torch.all(counts == visual.shape[1]):
            raise ValueError(f"each sequence needs {visual.shape[1]} visual placeholders, got {counts.tolist()}")
        return embeds.masked_scatter(slots[..., None], visual.to(embeds.dtype))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None) -> Any:
        """Causal-LM forward (HF output with ``.loss`` when labels are given)."""
        return self.llm(inputs_embeds=self.embed(input_ids, pixel_values), attention_mask=attention_mask, labels=labels)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None,
                 **kwargs: Any) -> torch.Tensor:
        """Greedy/sampled continuation (new tokens only), via the LLM's ``generate`` on embeddings."""
        return self.llm.generate(inputs_embeds=self.embed(input_ids, pixel_values), attention_mask=attention_mask,
                                 **kwargs)
