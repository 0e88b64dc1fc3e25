"""Evaluation metrics: caption metrics (pycocoevalcap), temporal IoU, timestamp parsing, classification."""

from vau.metrics.captions import caption_scores
from vau.metrics.classification import classification_accuracy
from vau.metrics.temporal import parse_segments, temporal_iou

__all__ = ["caption_scores", "classification_accuracy", "parse_segments", "temporal_iou"]
