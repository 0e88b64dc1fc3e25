"""Pure PyTorch / Hugging Face models. Nothing here imports Lightning, DeepSpeed or WebDataset."""
