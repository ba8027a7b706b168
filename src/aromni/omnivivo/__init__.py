"""OmniVIVO components: a LlamaGen-compatible text-to-image backbone that stays frozen, and (to come) the LoRA
speech branch that makes the same backbone speak (``../shared/papers/omnivivo-paper.txt``)."""
