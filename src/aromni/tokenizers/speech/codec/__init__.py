"""Our exactly-streaming speech codec (``"type": "aromni_codec"``). See ``docs/speech_codec.md``."""

from aromni.tokenizers.speech.codec.config import PRESETS, CodecConfig
from aromni.tokenizers.speech.codec.model import CodecStreamDecoder, StreamingCodec

__all__ = ["PRESETS", "CodecConfig", "CodecStreamDecoder", "StreamingCodec"]
