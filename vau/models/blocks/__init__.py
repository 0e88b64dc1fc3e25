"""Shared model blocks: Mamba mixers and residual blocks, vision-to-LLM connectors."""

from vau.models.blocks.connector import CONNECTORS, ConnectorSection, build_connector
from vau.models.blocks.mamba import DropPath, Mamba, MambaBlock

__all__ = ["CONNECTORS", "ConnectorSection", "DropPath", "Mamba", "MambaBlock", "build_connector"]
