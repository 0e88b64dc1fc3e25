"""vau: a training platform for video anomaly understanding models."""

__version__ = "0.1.0"
