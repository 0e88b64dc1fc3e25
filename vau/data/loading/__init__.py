"""Loading for training: the shard stream (mixing, shuffling, rank/worker split, exact resume), map-style sampler, the DataModule bases."""
