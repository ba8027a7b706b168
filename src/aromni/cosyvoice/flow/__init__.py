"""CosyVoice2's flow-matching token-to-mel model (``CausalMaskedDiffWithXvec``) with the released parameter
names: :class:`Token2Mel` (model), :class:`FlowConfig` (presets ``cosyvoice2`` and ``toy``),
:func:`load_official_flow` (a released ``flow.pt``), :func:`final_frames` (which frames a streaming prefix fixes).
See ``docs/cosyvoice.md``."""

from aromni.cosyvoice.flow.cfm import CausalConditionalCFM, cosine_t_span
from aromni.cosyvoice.flow.config import CFMConfig, EncoderConfig, EstimatorConfig, FlowConfig
from aromni.cosyvoice.flow.encoder import UpsampleConformerEncoder, final_frames
from aromni.cosyvoice.flow.estimator import CausalConditionalDecoder
from aromni.cosyvoice.flow.model import FLOW_TYPE, FlowBatch, Token2Mel, load_speaker_embedding
from aromni.cosyvoice.flow.official import load_official_flow

__all__ = ["CFMConfig", "CausalConditionalCFM", "CausalConditionalDecoder", "EncoderConfig", "EstimatorConfig",
           "FLOW_TYPE", "FlowBatch", "FlowConfig", "Token2Mel", "UpsampleConformerEncoder", "cosine_t_span",
           "final_frames", "load_official_flow", "load_speaker_embedding"]
