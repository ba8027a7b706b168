"""Checkpoint formats of the decoder: ours, Meta-native, and both Hugging Face layouts.

:func:`load_decoder` detects the layout of a path and builds the model on the meta device, then assigns the
(memory-mapped) weights, so loading never holds two copies of a weight in memory. :func:`save_checkpoint` writes
any of the formats; every file is written atomically.

========== ===================================================== ==============================================
format     files                                                  q/k rows, QK-norm
========== ===================================================== ==============================================
aromni     config.json + model.safetensors                        fused qkv, half-split, per-head ``[H, D]``
hf         config.json + model*.safetensors (transformers)        separate, half-split, ``[H, D]``
hf-anole   config.json + model*.safetensors (Anole / AR-Omni)     separate, interleaved, shared ``[D]``
meta       params.json + consolidated[.NN].pth                    separate, interleaved, ``[D]`` per shard
========== ===================================================== ==============================================
"""

from aromni.models.checkpoint.aromni_format import save_decoder
from aromni.models.checkpoint.auto import FORMATS, detect_format, load_decoder, save_checkpoint
from aromni.models.checkpoint.hf_format import save_hf
from aromni.models.checkpoint.meta_format import save_meta

__all__ = ["FORMATS", "detect_format", "load_decoder", "save_checkpoint", "save_decoder", "save_hf", "save_meta"]
