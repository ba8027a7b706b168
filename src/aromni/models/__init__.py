"""The Chameleon-architecture decoder, its configuration and checkpoint formats.

Public contract::

    from aromni.models import load_decoder
    decoder = load_decoder("path/to/checkpoint", dtype=torch.bfloat16)   # any supported layout
    logits = decoder(tokens)                                              # [B, T] -> [B, T, V]
"""

from aromni.models.checkpoint import load_decoder, save_decoder
from aromni.models.config import PRESETS, DecoderConfig
from aromni.models.decoder import Decoder

__all__ = ["Decoder", "DecoderConfig", "PRESETS", "load_decoder", "save_decoder"]
