"""CosyVoice2's HiFT vocoder (24 kHz, 480 samples per mel frame): NSF source + HiFi-GAN + iSTFT head.

- :mod:`.config`: :class:`HiFTConfig` with the ``cosyvoice2`` and ``toy`` presets.
- :mod:`.f0`, :mod:`.source`, :mod:`.generator`: ``ConvRNNF0Predictor``, ``SourceModuleHnNSF`` (SineGen /
  SineGen2), :class:`HiFTGenerator` with CosyVoice's module tree and key names.
- :mod:`.official`: the released ``hift.pt`` -> :class:`HiFTGenerator`, strictly.
- :mod:`.pitch`: YIN F0 targets for training the F0 predictor; :mod:`.griffin_lim`: the no-training baseline.

Training lives in :mod:`aromni.training.recipes.cosyvoice_hift`.
"""

from aromni.cosyvoice.hift.config import HIFT_PRESETS, HiFTConfig
from aromni.cosyvoice.hift.generator import HiFTGenerator
from aromni.cosyvoice.hift.official import load_official_hift

__all__ = ["HIFT_PRESETS", "HiFTConfig", "HiFTGenerator", "load_official_hift"]
