"""Constants shared by the data pipeline and the models (neither imports the other)."""

VISUAL_TOKEN = -200
"""Placeholder id of one visual token in ``input_ids`` (LLaVA's IMAGE_TOKEN_INDEX convention):
no tokenizer produces it; the model writes projected visual features at these positions."""

IGNORE_INDEX = -100
"""Label of positions that carry no loss (torch's cross-entropy default)."""
