"""Chameleon-compatible VQGAN image tokenizer: model, official-file loaders, pre/post-processing, I/O, trainer.

``VQGAN.from_pretrained(dir)`` (our format), ``VQGAN.from_chameleon(yaml, ckpt)`` (Meta),
``VQGAN.from_hf_chameleon(dir)`` (HF, encoder only); ``load_image`` / ``save_image`` for files.
"""

from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.image_io import load_image, save_image
from aromni.tokenizers.image.vqgan import VQGAN

__all__ = ["VQGAN", "VQGANConfig", "load_image", "save_image"]
