"""Typed configuration of the FSQ speech tokenizer (:class:`~aromni.cosyvoice.fsq_tokenizer.FSQSpeechTokenizer`).

The released CosyVoice2 tokenizer (reference §3.1) is 128-mel -> two stride-2 convolutions (100 -> 25 Hz) ->
6 FSMN-attention blocks of width 1280 (20 heads of 64) -> FSQ with 8 three-level dimensions (6561 codes); its
training model continued with ``Proj_up`` and the rest of the SenseVoice ASR encoder and decoder. The toy keeps
every piece at width 128: 2 + 2 blocks around the FSQ and a CTC character head in place of the ASR decoder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue

__all__ = ["ALPHABET", "FSQTokenizerConfig"]

#: CTC output characters (the CTC blank is index 0, character ``i`` of this string is index ``i + 1``).
ALPHABET = "abcdefghijklmnopqrstuvwxyz '"


@dataclass(frozen=True)
class FSQTokenizerConfig:
    """Architecture of the FSQ speech tokenizer.

    ``dim``/``heads``: width and attention heads of every block (head width ``dim // heads``);
    ``encoder1_layers`` blocks before the quantiser, ``encoder2_layers`` after ``Proj_up``; ``code_dims``: ``D``,
    so ``3**D`` codes; ``fsmn_kernel``: the depthwise "memory" convolution over the attention values (the release
    uses 31 at 25 Hz); ``ctc_upsample``: the CTC head reads the 25 Hz states unfolded to ``ctc_upsample`` frames
    each (a learned ``Linear(d -> u*d)``), because the toy world speaks up to ~30 characters a second and CTC needs
    at least one frame per character; the tokens stay at 25 Hz.
    """

    n_mels: int = 128
    dim: int = 128
    heads: int = 2
    encoder1_layers: int = 2
    encoder2_layers: int = 2
    code_dims: int = 6
    fsmn_kernel: int = 15
    mlp_ratio: int = 4
    ctc_upsample: int = 2
    alphabet: str = ALPHABET

    def __post_init__(self) -> None:
        for name in ("n_mels", "dim", "heads", "encoder1_layers", "code_dims", "fsmn_kernel", "mlp_ratio",
                     "ctc_upsample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"fsq tokenizer config: {name} must be a positive integer, got {value!r}")
        if isinstance(self.encoder2_layers, bool) or not isinstance(self.encoder2_layers, int) \
                or self.encoder2_layers < 0:
            raise ConfigError(f"fsq tokenizer config: encoder2_layers must be >= 0, got {self.encoder2_layers!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ConfigError(f"fsq tokenizer config: dim {self.dim} must split into {self.heads} heads of even "
                              "width", "e.g. dim=128 heads=2")
        if self.code_dims > 16:
            raise ConfigError(f"fsq tokenizer config: code_dims {self.code_dims} gives 3**{self.code_dims} codes",
                              "use at most 16 (CosyVoice2 uses 8)")
        if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet):
            raise ConfigError(f"fsq tokenizer config: alphabet {self.alphabet!r} must be non-empty with no repeats")

    @property
    def codebook_size(self) -> int:
        return 3 ** self.code_dims

    @property
    def vocab_size(self) -> int:
        """CTC classes: the blank plus the alphabet."""
        return 1 + len(self.alphabet)

    def to_dict(self) -> dict[str, JSONValue]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FSQTokenizerConfig:
        return dataclass_from_dict(cls, d, "fsq tokenizer config")
