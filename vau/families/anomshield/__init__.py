"""The `anomshield` family (ECVA §IV): CLIP-L -> spatio-temporal embeddings -> BiMamba -> pool ->
MLP -> Mistral + LoRA, trained in three curriculum stages (stages are configs)."""
