"""WavTokenizer: 24 kHz mono speech <-> one code per hop (40 or 75 codes/s), compatible with the official
checkpoints (``from_official``) and saved in our format (``save_pretrained``/``from_pretrained``).

``encode(wav [B, T]) -> codes [B, ceil(T / hop)]``; ``decode(codes [B, F]) -> wav [B, F * hop]``. Decoding is
not causal (global GroupNorm statistics and attention), so :meth:`WavTokenizer.stream_decoder` is a chunked
approximation (``exact = False``); see ``streaming.py``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aromni.errors import CheckpointError, InputError
from aromni.tokenizers.base import SpeechTokenizer
from aromni.tokenizers.speech.wavtokenizer.backbone import VocosBackbone
from aromni.tokenizers.speech.wavtokenizer.config import WavTokenizerConfig, config_from_official_yaml
from aromni.tokenizers.speech.wavtokenizer.encoder import SEANetEncoder
from aromni.tokenizers.speech.wavtokenizer.head import ISTFTHead
from aromni.tokenizers.speech.wavtokenizer.official import convert_official_state, load_official_checkpoint
from aromni.tokenizers.speech.wavtokenizer.quantizer import Codebook
from aromni.tokenizers.speech.wavtokenizer.streaming import ChunkedStreamDecoder
from aromni.utils.io import JSONValue, atomic_dir, atomic_write_json, read_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class WavTokenizer(SpeechTokenizer):
    """SEANet encoder -> nearest-neighbour codebook -> Vocos backbone -> ISTFT head."""

    type_name = "wavtokenizer"

    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SEANetEncoder(cfg)
        self.quantizer = Codebook(cfg.codebook_size, cfg.dimension)
        self.backbone = VocosBackbone(cfg)
        self.head = ISTFTHead(cfg.backbone_dim, cfg.n_fft, cfg.hop_length)
        self.eval()

    # ----------------------------------------------------------------------------------------- properties
    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    def metadata(self) -> dict[str, JSONValue]:
        return {"type": self.type_name, "codebook_size": self.codebook_size, "sample_rate": self.sample_rate,
                "hop_length": self.hop_length, "frame_rate": self.frame_rate, "n_fft": self.cfg.n_fft,
                "bandwidth_ids": self.cfg.adanorm_num_embeddings, "streaming_exact": False}

    # -------------------------------------------------------------------------------------------- encode
    def encode_features(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, T] -> continuous encoder output [B, dimension, ceil(T / hop)]`` (differentiable)."""
        if wav.dim() != 2 or wav.shape[-1] == 0:
            raise InputError(f"WavTokenizer.encode expects a non-empty waveform [B, T], got shape {tuple(wav.shape)}",
                             "add a batch axis with wav[None]")
        param = self.head.out.weight
        return self.encoder(wav.to(device=param.device, dtype=param.dtype)[:, None, :])

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, T]`` float at :attr:`sample_rate`, mono -> codes ``[B, ceil(T / hop)]`` (int64)."""
        return self.quantizer.encode(self.encode_features(wav))

    # -------------------------------------------------------------------------------------------- decode
    def _bandwidth(self, bandwidth_id: int | torch.Tensor, batch: int) -> torch.Tensor:
        bw = torch.as_tensor(bandwidth_id, dtype=torch.long, device=self.head.out.weight.device).reshape(-1)
        if bw.numel() not in (1, batch) or bool(((bw < 0) | (bw >= self.cfg.adanorm_num_embeddings)).any()):
            raise InputError(f"bandwidth_id {bandwidth_id} is invalid",
                             f"an int (or [B] ints) in 0..{self.cfg.adanorm_num_embeddings - 1}; AR-Omni uses 0")
        return bw

    def decode_features(self, vectors: torch.Tensor, bandwidth_id: int | torch.Tensor = 0) -> torch.Tensor:
        """``vectors [B, dimension, F] -> wav [B, F * hop]`` (differentiable; used by training and tests)."""
        bw = self._bandwidth(bandwidth_id, vectors.shape[0])
        return self.head(self.backbone(vectors, bw))

    def codes_to_features(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, F] -> codebook vectors [B, dimension, F]``, checking the code range."""
        if codes.dim() != 2 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise InputError(f"WavTokenizer.decode expects integer codes [B, F], got {codes.dtype} "
                             f"{tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise InputError(f"speech codes must lie in 0..{self.codebook_size - 1}, got "
                             f"{int(codes.min())}..{int(codes.max())}",
                             "convert token ids to codes with layout.speech.to_codes first")
        return self.quantizer.decode(codes.to(device=self.quantizer.embed.device, dtype=torch.long))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, bandwidth_id: int | torch.Tensor = 0) -> torch.Tensor:
        """Codes ``[B, F]`` -> waveform ``[B, F * hop]`` (float, unclipped)."""
        if codes.dim() == 2 and codes.shape[1] == 0:
            return self.head.out.weight.new_zeros(codes.shape[0], 0)
        return self.decode_features(self.codes_to_features(codes), bandwidth_id)

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    def stream_decoder(self, batch_size: int = 1, *, bandwidth_id: int = 0,
                       **options: int | str | None) -> ChunkedStreamDecoder:
        """Chunked approximate streaming decoder; see :class:`~.streaming.ChunkedStreamDecoder` for ``options``
        (``chunk_frames``, ``left_context``, ``lookahead``, ``crossfade``, ``crossfade_shape``);
        ``bandwidth_id`` picks the AdaLayerNorm row (AR-Omni uses 0)."""
        self._bandwidth(bandwidth_id, batch_size)  # refuse a bad id now, not at the first chunk
        return ChunkedStreamDecoder(functools.partial(self.decode, bandwidth_id=bandwidth_id), self.hop_length,
                                    batch_size, device=self.quantizer.embed.device, **options)

    # ------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_official(cls, config_yaml: str | Path | WavTokenizerConfig, ckpt: str | Path, *,
                      device: torch.device | str = "cpu") -> WavTokenizer:
        """Build from an official WavTokenizer yaml + ``.ckpt`` (weight norm folded, unused parts dropped).

        ``config_yaml`` may also be a :class:`WavTokenizerConfig`, for architectures the yaml cannot express
        (the official yaml fixes the encoder width; tests use tiny encoders).
        """
        if isinstance(config_yaml, WavTokenizerConfig):
            cfg = config_yaml
        else:
            cfg = config_from_official_yaml(config_yaml)
        state = load_official_checkpoint(ckpt)
        with torch.device("meta"):
            model = cls(cfg)
        ours = convert_official_state(state, model.state_dict(), source=str(ckpt))
        # clone: detach generator tensors from the (memory-mapped) file so it is released with ``state``
        ours = {k: v.to(device).clone() for k, v in ours.items()}
        model.load_state_dict(ours, strict=True, assign=True)
        return model.eval()

    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write ``config.json`` (``"type": "wavtokenizer"``) + ``model.safetensors`` (folded weights)."""
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_dir(path, overwrite=overwrite) as tmp:
            save_file(state, str(tmp / WEIGHTS), metadata={"type": self.type_name})
            atomic_write_json(tmp / CONFIG, {"type": self.type_name, "config": self.cfg.to_dict()})

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu", **_: object) -> WavTokenizer:
        path = Path(path)
        raw = read_json(path / CONFIG)
        if not isinstance(raw, dict) or raw.get("type") != cls.type_name or not isinstance(raw.get("config"), dict):
            raise CheckpointError(f"{path / CONFIG}: not a wavtokenizer config",
                                  "expected {'type': 'wavtokenizer', 'config': {...}}")
        cfg = WavTokenizerConfig.from_dict(raw["config"])
        weights = path / WEIGHTS
        if not weights.is_file():
            raise CheckpointError(f"{weights}: missing", "a wavtokenizer directory holds config.json + model.safetensors")
        try:
            state = load_file(str(weights), device=str(device))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({e})", "re-save the tokenizer") from None
        with torch.device("meta"):
            model = cls(cfg)
        expected = model.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise CheckpointError(f"{weights}: keys do not match config.json (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]})", "the weights and config come from different models")
        for k, ref in expected.items():
            if tuple(state[k].shape) != tuple(ref.shape):
                raise CheckpointError(f"{weights}: {k} has shape {tuple(state[k].shape)}, config expects "
                                      f"{tuple(ref.shape)}")
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()
