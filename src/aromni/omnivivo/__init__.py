"""OmniVIVO components (``../shared/papers/omnivivo-paper.txt``): a LlamaGen-compatible text-to-image backbone
that stays frozen, per-row LoRA adapters in peft's format, the text conditioners, the speech branch
(``VivoModel``) and one parallel decoding loop that draws the image and streams the speech (``vivo_generate``).
Training, the toy bundle and the user commands are still to come (issue 12)."""
