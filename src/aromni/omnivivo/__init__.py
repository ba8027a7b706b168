"""OmniVIVO components (``../shared/papers/omnivivo-paper.txt``): a LlamaGen-compatible text-to-image backbone
that stays frozen, per-row LoRA adapters in peft's format, the text conditioners, the speech branch
(``VivoModel``), one parallel decoding loop that draws the image and streams the speech (``vivo_generate``),
the user API (``api.VivoPipeline``; ``aromni vivo``) and the dataset builder (``aromni omnivivo generate``).
Their training recipes live in :mod:`aromni.training.recipes` (``llamagen_vq``, ``llamagen_t2i``,
``omnivivo``). Still to come (issue 12): the trained toy bundle and the demo."""
