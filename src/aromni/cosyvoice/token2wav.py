"""Speech tokens -> 24 kHz waveform: the flow-matching token-to-mel model followed by the HiFT vocoder, offline
and streaming as CosyVoice2 does it (``CosyVoice2Model.tts`` / ``token2wav``, omnivivo.md §3.6).

Streaming: a chunk is decoded once ``hop + 3`` new tokens exist (3 = the flow encoder's look-ahead); the hop
starts at 25 tokens (the flow's training chunk) and doubles after each chunk up to 100. Each chunk re-runs the
flow on every token so far (``finalize=False`` holds back the look-ahead tokens' frames) and keeps only the frames
after the last chunk; the vocoder then runs on the previous chunk's last 8 mel frames plus the new frames, with the
previous NSF source carried over (``cache_source``) so the excitation stays continuous, and its first 3,840
samples are cross-faded (Hamming window of 7,680) with the previous chunk's held-back last 3,840 samples. The
stream is therefore not bit-exact with offline synthesis; ``benchmarks/token2wav_streaming.py`` and the tests
measure by how much.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aromni.cosyvoice.flow import Token2Mel
from aromni.cosyvoice.hift import HiFTGenerator
from aromni.errors import CheckpointError, InputError
from aromni.tokenizers.streaming import SpeechStreamDecoder
from aromni.utils.io import JSONValue, atomic_dir, atomic_write_json, read_json

__all__ = ["StreamState", "Token2Wav", "Token2WavConfig", "Token2WavStream"]

#: 24 kHz samples per mel frame (50 Hz) and per token (25 Hz).
SAMPLES_PER_FRAME = 480
TOKEN_MEL_RATIO = 2


@dataclass(frozen=True)
class Token2WavConfig:
    """CosyVoice2's streaming settings (``cosyvoice/cli/model.py``) and the flow's sampler."""

    token_hop_len: int = 25
    token_max_hop_len: int = 100
    stream_scale_factor: int = 2
    pre_lookahead_len: int = 3
    mel_cache_len: int = 8
    n_timesteps: int = 10
    cfg_rate: float = 0.7
    seed: int = 0  # of the vocoder's NSF source noise

    @property
    def source_cache_len(self) -> int:
        """Samples of NSF source (and of held-back speech) carried between chunks: 8 frames x 480."""
        return self.mel_cache_len * SAMPLES_PER_FRAME

    def __post_init__(self) -> None:
        if min(self.token_hop_len, self.token_max_hop_len, self.stream_scale_factor, self.mel_cache_len,
               self.n_timesteps) < 1 or self.pre_lookahead_len < 0:
            raise InputError(f"invalid token2wav settings {self}", "hops, scale, cache and steps must be >= 1")


def hamming_crossfade(new: torch.Tensor, old_tail: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Cross-fade the first ``len(window) // 2`` samples of ``new [B, T]`` with ``old_tail [B, >= overlap]``'s last
    ones: the rising half of the Hamming window on ``new``, the falling half on the old audio."""
    n = window.shape[0] // 2
    out = new.clone()
    out[:, :n] = new[:, :n] * window[:n] + old_tail[:, -n:] * window[n:]
    return out


class Token2Wav:
    """``codes [B, F]`` (25 Hz speech tokens) -> ``wav [B, F * 960]`` at 24 kHz.

    Args:
        flow: the token-to-mel model (its speaker vector, if any, is used when ``speaker`` is None).
        hift: the vocoder.
        speaker: an optional 192-d speaker embedding ``[192]`` (L2-normalised by the flow).
        config: streaming and sampler settings.
    """

    sample_rate = 24000
    hop_length = SAMPLES_PER_FRAME * TOKEN_MEL_RATIO

    def __init__(self, flow: Token2Mel, hift: HiFTGenerator, *, speaker: torch.Tensor | None = None,
                 config: Token2WavConfig | None = None):
        self.flow = flow.eval()
        self.hift = hift.eval()
        self.speaker = speaker
        self.config = config or Token2WavConfig()
        window = torch.hamming_window(2 * self.config.source_cache_len, periodic=False)
        self.window = window.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.flow.parameters()).device

    @property
    def codebook_size(self) -> int:
        return int(self.flow.config.vocab_size)

    # --- the two halves ----------------------------------------------------------------------------------------
    def _check(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise InputError(f"token2wav expects integer codes [B, F], got {codes.dtype} {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise InputError(f"speech token ids must lie in [0, {self.codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]", "strip EOS and special tokens first")
        return codes.to(self.device)

    def _speaker(self, batch: int) -> torch.Tensor | None:
        if self.speaker is None:
            return None
        return self.speaker.to(self.device).reshape(1, -1).expand(batch, -1)

    @torch.inference_mode()
    def mel(self, codes: torch.Tensor, *, finalize: bool = True, streaming: bool = False) -> torch.Tensor:
        """``codes [B, F] -> mel [B, 80, 2F]`` (``finalize=False``: without the look-ahead tokens' frames;
        ``streaming``: the chunk-masked attention the flow was trained with for streaming)."""
        codes = self._check(codes)
        b, f = codes.shape
        lens = torch.full((b,), f, dtype=torch.long, device=codes.device)
        return self.flow.inference(codes, lens, spk=self._speaker(b), n_timesteps=self.config.n_timesteps,
                                   cfg_rate=self.config.cfg_rate, finalize=finalize, streaming=streaming)

    @torch.inference_mode()
    def synthesize(self, codes: torch.Tensor) -> torch.Tensor:
        """Offline synthesis: ``codes [B, F] -> wav [B, F * 960]`` (float32, 24 kHz)."""
        if codes.dim() == 2 and codes.shape[1] == 0:
            return torch.zeros(codes.shape[0], 0)
        wav, _ = self.hift.inference(self.mel(codes), generator=self.source_generator())
        return wav.float().cpu()

    def source_generator(self) -> torch.Generator:
        """The seeded generator of the vocoder's source noise (equal inputs give equal audio)."""
        return torch.Generator(device=self.device).manual_seed(self.config.seed)

    def stream_decoder(self, batch_size: int = 1) -> Token2WavStream:
        """A decoder, already streaming: push codes, receive 24 kHz audio chunks."""
        return Token2WavStream(self, batch_size)

    # --- files ---------------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """``path/{config.json, flow/, hift/, speaker.safetensors?}``, written atomically."""
        from safetensors.torch import save_file

        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.flow.save_pretrained(tmp / "flow")
            self.hift.save_pretrained(tmp / "hift")
            if self.speaker is not None:
                save_file({"embedding": self.speaker.detach().float().cpu().contiguous()},
                          str(tmp / "speaker.safetensors"))
            cfg: dict[str, JSONValue] = {"type": "cosyvoice_token2wav", **asdict(self.config)}
            atomic_write_json(tmp / "config.json", cfg)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device = "cpu") -> Token2Wav:
        from safetensors.torch import load_file

        path = Path(path)
        cfg = read_json(path / "config.json") if (path / "config.json").is_file() else None
        if not isinstance(cfg, dict) or cfg.get("type") != "cosyvoice_token2wav":
            raise CheckpointError(f"{path}: not a token2wav directory (config.json type 'cosyvoice_token2wav')",
                                  "write one with Token2Wav.save_pretrained or `aromni cosyvoice token2wav-pack`")
        settings = {k: v for k, v in cfg.items() if k != "type"}
        try:
            config = Token2WavConfig(**settings)
        except TypeError as e:
            raise CheckpointError(f"{path / 'config.json'}: {e}") from None
        flow = Token2Mel.from_pretrained(path / "flow").to(device)
        hift = HiFTGenerator.from_pretrained(path / "hift").to(device)
        speaker = None
        if (path / "speaker.safetensors").is_file():
            speaker = load_file(str(path / "speaker.safetensors"))["embedding"]
        return cls(flow, hift, speaker=speaker, config=config)


@dataclass
class StreamState:
    """One utterance of a :class:`Token2WavStream` (all rows advance together)."""

    tokens: torch.Tensor  # [B, n] every token pushed so far
    offset: int = 0  # tokens whose audio has been emitted (up to the held-back tail)
    hop: int = 25
    mel_cache: torch.Tensor | None = None  # [B, 80, 8] the last mel frames given to the vocoder
    source_cache: torch.Tensor | None = None  # [B, 1, 3840] the NSF source under them
    speech_tail: torch.Tensor | None = None  # [B, 3840] held-back audio, cross-faded into the next chunk
    generator: torch.Generator | None = None  # the vocoder's source noise, seeded once per utterance


class Token2WavStream(SpeechStreamDecoder[StreamState]):
    """CosyVoice2's chunked token2wav on our streaming protocol (``push`` codes, receive audio)."""

    exact = False

    def __init__(self, model: Token2Wav, batch_size: int = 1):
        self.model = model
        self.lookahead_frames = model.config.pre_lookahead_len
        super().__init__(batch_size)

    def init_state(self, batch_size: int) -> StreamState:
        return StreamState(tokens=torch.zeros(batch_size, 0, dtype=torch.long), hop=self.model.config.token_hop_len,
                           generator=self.model.source_generator())

    def step(self, codes: torch.Tensor, state: StreamState) -> torch.Tensor:
        state.tokens = torch.cat([state.tokens, codes.long().cpu()], dim=1)
        cfg = self.model.config
        out = [torch.zeros(self.batch_size, 0)]
        while state.tokens.shape[1] - state.offset >= state.hop + cfg.pre_lookahead_len:
            end = state.offset + state.hop + cfg.pre_lookahead_len
            out.append(self._chunk(state, state.tokens[:, :end], finalize=False))
            state.offset += state.hop
            state.hop = min(cfg.token_max_hop_len, state.hop * cfg.stream_scale_factor)
        return torch.cat(out, dim=1)

    def finish(self, state: StreamState) -> torch.Tensor:
        if state.tokens.shape[1] == 0:
            return torch.zeros(self.batch_size, 0)
        return self._chunk(state, state.tokens, finalize=True)

    @torch.inference_mode()
    def _chunk(self, state: StreamState, tokens: torch.Tensor, *, finalize: bool) -> torch.Tensor:
        """Audio of the frames after ``state.offset`` given ``tokens``; updates the vocoder caches."""
        m = self.model
        mel = m.mel(tokens, finalize=finalize, streaming=True)[:, :, state.offset * TOKEN_MEL_RATIO:]
        if state.mel_cache is not None:
            mel = torch.cat([state.mel_cache, mel], dim=2)
        wav, source = m.hift.inference(mel, cache_source=state.source_cache, generator=state.generator)
        wav = wav.float()
        if state.speech_tail is not None:
            wav = hamming_crossfade(wav, state.speech_tail, m.window)
        if finalize:
            return wav.cpu()
        n = m.config.source_cache_len
        state.mel_cache = mel[:, :, -m.config.mel_cache_len:]
        state.source_cache = source[:, :, -n:]
        state.speech_tail = wav[:, -n:]
        return wav[:, :-n].cpu()
