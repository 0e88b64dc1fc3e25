"""Text: tokenizers and conversation templates."""
