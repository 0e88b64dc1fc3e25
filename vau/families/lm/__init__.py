"""The `lm` family: a Hugging Face causal LM (optionally with LoRA) trained on next-token loss.

Two data pipelines: ``tokens`` (synthetic learnable token patterns, the platform tests) and
``text`` (annotation text from tar shards, the AnomShield demo's LLM pretraining).
"""
