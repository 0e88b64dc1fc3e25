"""The `clip_vision` family: a CLIP vision tower trained to tell the anomaly classes of video clips apart.

It pretrains the tiny CPU demo's vision tower (``conf/experiment/tiny/anomshield_vision.yaml``),
standing in for OpenAI CLIP's pretraining as ``tiny/anomshield_llm`` stands in for Mistral's: a
random-init tower trained only through the LLM never learns to see the anomalies. Its export's
``hf/`` folder is a plain ``CLIPVisionModel`` directory, loaded as ``model.vision.pretrained``
through the same code that loads ``openai/clip-vit-large-patch14``.
"""
