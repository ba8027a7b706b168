"""Checkpoint formats of the decoder: ours, Meta-native, and both Hugging Face layouts.

:func:`load_decoder` detects the layout of a path and builds the model on the meta device, then assigns the
(memory-mapped) weights, so loading never holds two copies in memory.
"""

from aromni.models.checkpoint.aromni_format import load_decoder, save_decoder

__all__ = ["load_decoder", "save_decoder"]
