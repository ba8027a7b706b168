"""The Chameleon-architecture decoder, its configuration and checkpoint formats.

Public contract::

    from aromni.models import load_decoder
    decoder = load_decoder("path/to/checkpoint", dtype=torch.bfloat16)   # any supported layout
    logits = decoder(tokens)                                              # [B, T] -> [B, T, V]
    save_checkpoint(decoder, "out", "hf")                                 # aromni | hf | hf-anole | meta
"""

from aromni.models.checkpoint import FORMATS, detect_format, load_decoder, save_checkpoint, save_decoder
from aromni.models.config import PRESETS, DecoderConfig
from aromni.models.decoder import Decoder

__all__ = ["FORMATS", "PRESETS", "Decoder", "DecoderConfig", "detect_format", "load_decoder", "save_checkpoint",
           "save_decoder"]
