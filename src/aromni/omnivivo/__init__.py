"""OmniVIVO components (``../shared/papers/omnivivo-paper.txt``): a LlamaGen-compatible text-to-image backbone
that stays frozen, per-row LoRA adapters in peft's format, and the text conditioners. The speech branch, the
joint decoding loop and training are still to come (issue 12)."""
