"""WavTokenizer (jishengpeng/WavTokenizer) re-implemented: official checkpoints load into :class:`WavTokenizer`.

Modules: ``config`` (dataclass, presets, official yaml), ``encoder`` (SEANet), ``quantizer`` (codebook),
``backbone`` (Vocos), ``head`` (ISTFT), ``official`` (checkpoint keys, weight-norm folding), ``model``
(the tokenizer), ``streaming`` (chunked approximate decoding). See ``docs/wavtokenizer.md``.
"""

from aromni.tokenizers.speech.wavtokenizer.config import PRESETS, WavTokenizerConfig
from aromni.tokenizers.speech.wavtokenizer.model import WavTokenizer

__all__ = ["PRESETS", "WavTokenizer", "WavTokenizerConfig"]
