"""``StreamingCodec``: our speech tokenizer whose chunked decoding equals offline decoding exactly.

One code per ``hop_length`` samples from one codebook. The decoder is causal over code frames plus a fixed
lookahead of ``lookahead`` frames (a delay), has no normalisation over time and no attention, and ends in an
ISTFT head whose overlap-add tail is carried between chunks. So decoding codes pushed one, two or N frames at a
time gives the same samples as decoding them all at once (up to float rounding), and audio for frame ``t`` is
final as soon as code ``t + lookahead`` has arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from aromni.errors import CheckpointError, InputError
from aromni.tokenizers.base import SpeechTokenizer
from aromni.tokenizers.speech.codec.config import CodecConfig
from aromni.tokenizers.speech.codec.networks import CodecDecoder, CodecEncoder
from aromni.tokenizers.speech.codec.quantizer import EMAVectorQuantizer, QuantizerOutput
from aromni.tokenizers.streaming import SpeechStreamDecoder, StreamingStates, init_states, installed
from aromni.utils.io import JSONValue, atomic_dir, atomic_write_json, read_json

FORMAT_VERSION = 1


@dataclass
class CodecOutput:
    """Training forward pass."""

    audio: torch.Tensor  # [B, F * hop] reconstruction
    target: torch.Tensor  # [B, F * hop] input padded to whole frames
    quant: QuantizerOutput


class StreamingCodec(SpeechTokenizer):
    """Speech <-> one code per ``hop_length`` samples; exactly streamable decoder. See :mod:`.model`."""

    type_name = "aromni_codec"

    def __init__(self, config: CodecConfig | None = None, *, dead_code_steps: int = 10, ema_decay: float = 0.95):
        """``dead_code_steps`` and ``ema_decay`` only matter in training (see :class:`EMAVectorQuantizer`)."""
        super().__init__()
        self.config = config or CodecConfig()
        self.encoder = CodecEncoder(self.config)
        self.quantizer = EMAVectorQuantizer(self.config.codebook_size, self.config.codebook_dim,
                                            decay=ema_decay, dead_code_steps=dead_code_steps)
        self.decoder = CodecDecoder(self.config)

    # --- protocol properties --------------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def lookahead_frames(self) -> int:
        return self.config.lookahead

    def metadata(self) -> dict[str, JSONValue]:
        return {"type": self.type_name, "codebook_size": self.codebook_size, "sample_rate": self.sample_rate,
                "hop_length": self.hop_length, "frame_rate": self.frame_rate, "codes_per_second": self.frame_rate,
                "lookahead_frames": self.lookahead_frames, "streaming_exact": True,
                "parameters": sum(p.numel() for p in self.parameters())}

    # --- encode / decode ----------------------------------------------------------------------------------------
    def _pad_to_frames(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 2:
            raise InputError(f"encode expects a waveform batch [B, T], got shape {tuple(wav.shape)}",
                             "add a batch dimension: wav[None]")
        frames = -(-wav.shape[-1] // self.hop_length)  # ceil(T / hop)
        return F.pad(wav.to(self.quantizer.embed.dtype), (0, frames * self.hop_length - wav.shape[-1]))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` float at :attr:`sample_rate` -> codes ``[B, ceil(T / hop)]`` (int64)."""
        x = self._pad_to_frames(wav.to(self.quantizer.embed.device))
        if x.shape[-1] == 0:
            return torch.zeros(x.shape[0], 0, dtype=torch.long, device=x.device)
        return self.quantizer.encode(self.encoder(x))

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.dtype.is_floating_point:
            raise InputError(f"codes must be an integer tensor [B, F], got {codes.dtype} {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise InputError(f"codes out of range [0, {self.codebook_size})",
                             "map token ids to codes with layout.speech.to_codes first")
        return codes.to(self.quantizer.embed.device)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, F]`` -> waveform ``[B, F * hop]`` (float32)."""
        return self.decode_vectors(self.quantizer.decode(self._check_codes(codes)))

    def decode_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[B, F, D]`` -> ``[B, F * hop]``; the end is decoded as if ``lookahead`` zero frames followed."""
        if vectors.shape[1] == 0:
            return vectors.new_zeros(vectors.shape[0], 0)
        return self.decoder(F.pad(vectors, (0, 0, 0, self.lookahead_frames)))

    def forward(self, wav: torch.Tensor) -> CodecOutput:
        """Training pass: ``wav [B, T]`` -> reconstruction of the frame-padded input, codes and VQ losses."""
        target = self._pad_to_frames(wav)
        quant = self.quantizer(self.encoder(target))
        return CodecOutput(self.decode_vectors(quant.quantized), target, quant)

    # --- streaming ----------------------------------------------------------------------------------------------
    def stream_decoder(self, batch_size: int = 1, **options: object) -> CodecStreamDecoder:
        if options:
            raise InputError(f"unknown stream_decoder options {sorted(options)}", "StreamingCodec takes none")
        return CodecStreamDecoder(self, batch_size)

    # --- files --------------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write ``config.json`` (``"type": "aromni_codec"``) + ``model.safetensors`` into ``path`` atomically."""
        from safetensors.torch import save_file

        with atomic_dir(path, overwrite=overwrite) as tmp:
            atomic_write_json(tmp / "config.json", {"type": self.type_name, "format_version": FORMAT_VERSION,
                                                    "config": self.config.to_dict(), "metadata": self.metadata()})
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "aromni_codec"})

    @classmethod
    def from_pretrained(cls, path: str | Path, *, map_location: str | torch.device = "cpu",
                        **kwargs: object) -> StreamingCodec:
        """Load a directory written by :meth:`save_pretrained`; a missing, corrupt or mismatching file raises
        :class:`CheckpointError` naming it."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        meta = read_json(path / "config.json")
        if not isinstance(meta, dict) or meta.get("type") != cls.type_name or "config" not in meta:
            raise CheckpointError(f"{path / 'config.json'} does not describe an aromni_codec",
                                  "expected {'type': 'aromni_codec', 'config': {...}}")
        version = meta.get("format_version", 1)
        if isinstance(version, bool) or not isinstance(version, int):
            raise CheckpointError(f"{path / 'config.json'}: format_version must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{path} was written by a newer aromni (format {version})", "upgrade aromni")
        config = CodecConfig.from_dict(meta["config"])
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{weights}: missing", "the directory must hold config.json + model.safetensors")
        try:
            state = load_file(str(weights), device=str(map_location))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{weights}: not a safetensors file, or corrupt ({' '.join(str(e).split())[:200]})",
                                  "re-save the codec") from None
        model = cls(config, **kwargs)
        own = model.state_dict()
        for k, v in state.items():
            if k in own and own[k].is_floating_point() and not v.is_floating_point():
                raise CheckpointError(f"{weights}: {k} has dtype {v.dtype}, not a float dtype", "re-save the codec")
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, OSError) as e:
            raise CheckpointError(f"{weights}: does not match the config ({str(e).splitlines()[0][:200]})",
                                  "was it saved by a different codec version?") from None
        return model.to(map_location).eval()


@dataclass
class CodecStreamState:
    """One stream's state: the decoder layers' states (caller-owned, so streams share the model) and counters."""

    layers: StreamingStates  # {decoder module name: its state}, see aromni.tokenizers.streaming.init_states
    frames_in: int = 0
    samples_out: int = 0


class CodecStreamDecoder(SpeechStreamDecoder[CodecStreamState]):
    """Exact incremental decoding (one state per stream; the model is shared).

    After pushing ``n`` frames in total, exactly ``max(0, n - lookahead) * hop`` samples have been returned;
    :meth:`flush` returns the last ``lookahead * hop``.
    """

    exact = True

    def __init__(self, codec: StreamingCodec, batch_size: int = 1):
        self.codec = codec
        self.lookahead_frames = codec.lookahead_frames
        super().__init__(batch_size)

    def init_state(self, batch_size: int) -> CodecStreamState:
        return CodecStreamState(init_states(self.codec.decoder, batch_size))

    def _run(self, vectors: torch.Tensor, state: CodecStreamState) -> torch.Tensor:
        with torch.no_grad(), installed(self.codec.decoder, state.layers):
            audio = self.codec.decoder(vectors)
        state.samples_out += audio.shape[-1]
        return audio

    def step(self, codes: torch.Tensor, state: CodecStreamState) -> torch.Tensor:
        codes = self.codec._check_codes(codes)
        state.frames_in += codes.shape[1]
        return self._run(self.codec.quantizer.decode(codes), state)

    def finish(self, state: CodecStreamState) -> torch.Tensor:
        """The last ``lookahead`` frames of audio, decoded as if zero frames followed (same as offline)."""
        embed = self.codec.quantizer.embed
        if state.frames_in == 0:
            return embed.new_zeros(self.batch_size, 0)
        return self._run(embed.new_zeros(self.batch_size, self.lookahead_frames, embed.shape[-1]), state)
