"""Training: token shards, modality mixing and packing, weighted NTP + perceptual loss, recipes."""
