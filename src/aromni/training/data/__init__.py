"""Training data: the shard format, readers, builders, mixing and batching."""
