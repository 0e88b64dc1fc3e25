"""AnomShield: the ECVA video LLM (pure PyTorch/transformers)."""

from vau.models.anomshield.model import AnomShield

__all__ = ["AnomShield"]
