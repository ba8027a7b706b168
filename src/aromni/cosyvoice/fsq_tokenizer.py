"""CosyVoice2's supervised semantic speech tokenizer at toy scale: FSQ tokens at 25 Hz trained through an ASR loss.

Network (reference §3.1, §4.1; shapes for a batch of ``B`` clips)::

    wav16k -> Whisper log-mel [B, 128, M]                                (100 frames/s)
           -> Conv1d(k3, s2, p1) + GELU -> Conv1d(k3, s2, p1) + GELU     [B, F, d], F = ceil(M / 4) (25 Hz)
           -> encoder 1 (FSMN-attention blocks)                          [B, F, d]
           -> FSQ: Proj_down, tanh * 0.999, round (STE)                  tokens [B, F] in [0, 3**D)
           -> Proj_up -> encoder 2 (blocks)                              [B, F, d]
           -> CTC head (unfold x u, LayerNorm, Linear)                   logits [B, u*F, 1 + |alphabet|]

Blocks follow the release's ``ResidualAttentionBlock``: LN -> multi-head attention with rotary positions plus an
FSMN memory (a depthwise convolution over the values) -> residual; LN -> MLP (4x, GELU) -> residual.

:class:`FSQSpeechTokenizer` is a :class:`~aromni.tokenizers.base.SpeechTokenizer` whose waveform side is 24 kHz
(the stack's output rate; ``hop_length`` 960 = 25 Hz): :meth:`~FSQSpeechTokenizer.encode` resamples to 16 kHz.
Tokens are semantic, so the tokenizer alone cannot turn them back into audio: :meth:`~FSQSpeechTokenizer.decode`
and :meth:`~FSQSpeechTokenizer.stream_decoder` go through an attached :class:`TokenVocoder` (flow matching + vocoder),
loaded from a ``token2wav/`` subfolder by :func:`load_token2wav` or attached with
:meth:`~FSQSpeechTokenizer.attach_token2wav`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from aromni.cosyvoice.fsq import FSQ
from aromni.cosyvoice.fsq_config import FSQTokenizerConfig
from aromni.cosyvoice.mel import WHISPER_HOP, WHISPER_SAMPLE_RATE, whisper_log_mel
from aromni.errors import CheckpointError, InputError
from aromni.tokenizers.base import SpeechTokenizer
from aromni.tokenizers.speech.audio_io import resample
from aromni.tokenizers.streaming import SpeechStreamDecoder
from aromni.utils.io import JSONValue, atomic_dir, atomic_write_json, read_json

__all__ = ["FSQForward", "FSQSpeechTokenizer", "SAMPLES_16K_PER_TOKEN", "TOKEN2WAV_DIR", "TOKEN2WAV_TYPES",
           "TokenVocoder", "ctc_greedy", "load_token2wav", "normalize_text", "text_to_ids"]

FORMAT_VERSION = 1
OUTPUT_SAMPLE_RATE = 24000
OUTPUT_HOP = 960  # 24 kHz samples per token (25 Hz)
MEL_PER_TOKEN = 4  # two stride-2 convolutions
SAMPLES_16K_PER_TOKEN = WHISPER_HOP * MEL_PER_TOKEN  # 640
TOKEN2WAV_DIR = "token2wav"


@runtime_checkable
class TokenVocoder(Protocol):
    """Tokens -> 24 kHz audio (CosyVoice2's flow matching + HiFT); attached to a :class:`FSQSpeechTokenizer`."""

    sample_rate: int

    def synthesize(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, F]`` (long) -> ``wav [B, F * 960]`` at 24 kHz."""
        ...

    def stream_decoder(self, batch_size: int) -> SpeechStreamDecoder:
        """A streaming decoder for ``batch_size`` rows (:mod:`aromni.tokenizers.streaming`)."""
        ...


#: ``token2wav/config.json["type"]`` -> ``"module:Class"`` whose ``from_pretrained(folder)`` gives a
#: :class:`TokenVocoder`; imported lazily (flow matching + HiFT are not needed to encode). Tests may add entries.
TOKEN2WAV_TYPES: dict[str, str] = {"cosyvoice_token2wav": "aromni.cosyvoice.token2wav:Token2Wav"}


def load_token2wav(folder: Path) -> TokenVocoder | None:
    """The :class:`TokenVocoder` saved in ``folder`` (a tokenizer's ``token2wav/``), or ``None`` when it is absent."""
    if not folder.is_dir():
        return None
    meta = read_json(folder / "config.json")
    kind = meta.get("type") if isinstance(meta, dict) else None
    if kind not in TOKEN2WAV_TYPES:
        raise CheckpointError(f"{folder / 'config.json'}: unknown token-to-waveform type {kind!r}",
                              f"known: {', '.join(TOKEN2WAV_TYPES)}")
    module, cls = TOKEN2WAV_TYPES[str(kind)].split(":")
    return getattr(importlib.import_module(module), cls).from_pretrained(folder)


def normalize_text(text: str, alphabet: str) -> str:
    """Lower-cased, characters outside ``alphabet`` dropped, runs of white space collapsed to one space."""
    return " ".join("".join(c for c in text.lower() if c in alphabet or c.isspace()).split())


def text_to_ids(text: str, alphabet: str) -> list[int]:
    """A transcript -> CTC targets (``alphabet[i]`` is ``i + 1``; 0 is the blank) of :func:`normalize_text`."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    return [index[c] for c in normalize_text(text, alphabet)]


def ctc_greedy(logits: torch.Tensor, lengths: torch.Tensor, alphabet: str) -> list[str]:
    """CTC best path: ``logits [B, T, V]`` with ``lengths [B]`` valid frames -> one text per row."""
    out = []
    for row, n in zip(logits.argmax(-1).tolist(), lengths.tolist()):
        prev, chars = 0, []
        for t in row[:n]:
            if t != prev and t != 0:
                chars.append(alphabet[t - 1])
            prev = t
        out.append(" ".join("".join(chars).split()))
    return out


def _rotary(frames: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``[frames, width]`` of rotary positions (the release's ``rotate_half`` layout, base 10000)."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, width, 2, device=device).float() / width))
    ang = torch.outer(torch.arange(frames, device=device).float(), inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x [B, F, H, w]`` rotated by position (``rotate_half``: pairs ``(i, i + w/2)``)."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None] + turned * sin[:, None]


class FSMNBlock(nn.Module):
    """LN -> attention (rotary, padding-masked keys) + FSMN memory -> residual; LN -> MLP -> residual.
    ``x [B, F, d]``, ``mask [B, F]`` (True = a real frame) -> ``[B, F, d]``."""

    def __init__(self, dim: int, heads: int, kernel: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.attn_ln = nn.LayerNorm(dim)
        self.query, self.key = nn.Linear(dim, dim), nn.Linear(dim, dim, bias=False)
        self.value, self.out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.fsmn = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False)
        self.mlp_ln = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, f, d = x.shape
        h = self.attn_ln(x)
        q, k, v = (p(h).view(b, f, self.heads, d // self.heads) for p in (self.query, self.key, self.value))
        q, k = _rotate(q, *rope), _rotate(k, *rope)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask[:, None, None, :])
        vm = v.reshape(b, f, d) * mask[..., None]
        memory = (self.fsmn(vm.transpose(1, 2)).transpose(1, 2) + vm) * mask[..., None]
        x = x + self.out(att.transpose(1, 2).reshape(b, f, d)) + memory
        return x + self.mlp(self.mlp_ln(x))


@dataclass
class FSQForward:
    """A training forward pass: ``codes [B, F]`` (long; 0 past ``lengths``), ``lengths [B]`` tokens per clip,
    ``logits [B, u*F, V]`` of the CTC head with ``logit_lengths [B] = u * lengths``, and the quantised levels
    ``levels [B, F, D]``."""

    codes: torch.Tensor
    lengths: torch.Tensor
    logits: torch.Tensor
    logit_lengths: torch.Tensor
    levels: torch.Tensor


def _conv_len(n: torch.Tensor) -> torch.Tensor:
    return (n - 1) // 2 + 1  # Conv1d(k3, s2, p1): ceil(n / 2)


class FSQSpeechTokenizer(SpeechTokenizer):
    """Supervised FSQ speech tokens (module docstring). Build from a :class:`FSQTokenizerConfig`."""

    type_name = "fsq_speech"

    def __init__(self, config: FSQTokenizerConfig | None = None):
        super().__init__()
        self.config = c = config or FSQTokenizerConfig()
        self.conv1 = nn.Conv1d(c.n_mels, c.dim, 3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(c.dim, c.dim, 3, stride=2, padding=1)
        self.encoder1 = nn.ModuleList(FSMNBlock(c.dim, c.heads, c.fsmn_kernel, c.mlp_ratio)
                                      for _ in range(c.encoder1_layers))
        self.fsq = FSQ(c.dim, c.code_dims)
        self.encoder2 = nn.ModuleList(FSMNBlock(c.dim, c.heads, c.fsmn_kernel, c.mlp_ratio)
                                      for _ in range(c.encoder2_layers))
        self.unfold = nn.Linear(c.dim, c.ctc_upsample * c.dim)
        self.head_ln = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.vocab_size)
        # Kept outside the module tree: a TokenVocoder that is an nn.Module must not join this state dict.
        object.__setattr__(self, "_token2wav", None)

    @property
    def token2wav(self) -> TokenVocoder | None:
        """The attached token-to-waveform model (``None``: :meth:`decode` raises)."""
        return self._token2wav

    # ------------------------------------------------------------------ protocol facts
    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def sample_rate(self) -> int:
        return OUTPUT_SAMPLE_RATE

    @property
    def hop_length(self) -> int:
        return OUTPUT_HOP

    def metadata(self) -> dict[str, JSONValue]:
        return {"type": self.type_name, "codebook_size": self.codebook_size, "code_dims": self.config.code_dims,
                "sample_rate": self.sample_rate, "hop_length": self.hop_length, "frame_rate": self.frame_rate,
                "codes_per_second": self.frame_rate, "encoder_sample_rate": WHISPER_SAMPLE_RATE,
                "n_mels": self.config.n_mels, "token2wav_attached": self.token2wav is not None,
                "parameters": sum(p.numel() for p in self.parameters())}

    # ------------------------------------------------------------------ network
    def features(self, wavs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz clips (each ``[T_i]``) -> padded log-mel ``[B, n_mels, M]`` and ``mel_len [B]``.

        Each clip is zero-padded to whole tokens (a multiple of 640 samples, so ``M_i = 4 * ceil(T_i / 640)``)
        and its mel computed alone: Whisper's normalisation uses the clip's own maximum, so a clip gives the
        same features alone as in any batch."""
        if not wavs:
            raise InputError("no audio to encode", "pass at least one clip")
        mels = []
        for i, w in enumerate(wavs):
            if w.dim() != 1 or w.numel() == 0:
                raise InputError(f"clip {i}: expected a non-empty mono waveform [T], got shape {tuple(w.shape)}")
            n = math.ceil(w.numel() / SAMPLES_16K_PER_TOKEN) * SAMPLES_16K_PER_TOKEN
            mels.append(whisper_log_mel(F.pad(w.float(), (0, n - w.numel()))[None], self.config.n_mels)[0])
        lengths = torch.tensor([m.shape[-1] for m in mels])
        mel = torch.zeros(len(mels), self.config.n_mels, int(lengths.max()))
        for i, m in enumerate(mels):
            mel[i, :, : m.shape[-1]] = m
        return mel.to(self.conv1.weight.device), lengths.to(self.conv1.weight.device)

    def encoder1_states(self, mel: torch.Tensor, mel_len: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``mel [B, n_mels, M]``, ``mel_len [B]`` -> encoder-1 states ``[B, F, d]``, token ``lengths [B]``,
        ``mask [B, F]`` and the rotary tables. Padded frames are zeroed before each convolution."""
        m = torch.arange(mel.shape[-1], device=mel.device)[None] < mel_len[:, None]
        x = F.gelu(self.conv1(mel * m[:, None]))
        n = _conv_len(mel_len)
        m = torch.arange(x.shape[-1], device=x.device)[None] < n[:, None]
        x = F.gelu(self.conv2(x * m[:, None]))
        n = _conv_len(n)
        mask = torch.arange(x.shape[-1], device=x.device)[None] < n[:, None]
        x = x.transpose(1, 2)
        rope = _rotary(x.shape[1], self.config.dim // self.config.heads, x.device)
        for block in self.encoder1:
            x = block(x, mask, rope)
        return x, n, mask, rope

    def forward(self, mel: torch.Tensor, mel_len: torch.Tensor) -> FSQForward:
        """The training pass (see :class:`FSQForward`)."""
        x, lengths, mask, rope = self.encoder1_states(mel, mel_len)
        q = self.fsq(x)
        h = q.up
        for block in self.encoder2:
            h = block(h, mask, rope)
        b, f, d = h.shape
        u = self.config.ctc_upsample
        logits = self.head(self.head_ln(self.unfold(h).view(b, f * u, d)))
        return FSQForward(q.codes * mask, lengths, logits.float(), lengths * u, q.levels)

    # ------------------------------------------------------------------ encoding
    @torch.no_grad()
    def encode_16k(self, wav16k: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz audio -> ``(codes [B, F] long, lengths [B])``, ``lengths[i] = ceil(T_i / 640)`` tokens and codes
        past a row's length set to 0. Pass a padded batch ``[B, T]`` with ``lengths [B]`` (samples per row;
        default: every row is full), or a list of ``[T_i]`` clips. Each row's tokens equal its tokens alone."""
        if isinstance(wav16k, torch.Tensor):
            if wav16k.dim() != 2:
                raise InputError(f"encode_16k expects a waveform batch [B, T], got shape {tuple(wav16k.shape)}",
                                 "add a batch dimension: wav[None]")
            if lengths is None:
                lengths = torch.full((wav16k.shape[0],), wav16k.shape[1])
            if lengths.shape != (wav16k.shape[0],) or bool((lengths < 1).any() | (lengths > wav16k.shape[1]).any()):
                raise InputError(f"lengths {lengths.tolist()} do not fit a batch of shape {tuple(wav16k.shape)}",
                                 "one length per row, each in [1, T]")
            clips = [wav16k[i, : int(n)] for i, n in enumerate(lengths.tolist())]
        else:
            clips = list(wav16k)
        was_training = self.training
        self.eval()
        try:
            mel, mel_len = self.features([c.detach().cpu() for c in clips])
            x, n, mask, _ = self.encoder1_states(mel, mel_len)
            codes = self.fsq.quantize(x)[1] * mask
        finally:
            self.train(was_training)
        return codes, n

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, T]`` at 24 kHz -> ``codes [B, ceil(T / 960)]`` (each row padded to whole tokens, resampled to
        16 kHz with soxr, then :meth:`encode_16k`)."""
        if wav.dim() != 2:
            raise InputError(f"encode expects a waveform batch [B, T] at 24 kHz, got shape {tuple(wav.shape)}",
                             "add a batch dimension: wav[None]")
        if wav.shape[-1] == 0:
            raise InputError("encode got empty audio (0 samples)", "pass at least one sample")
        frames = math.ceil(wav.shape[-1] / OUTPUT_HOP)
        padded = F.pad(wav.detach().float().cpu(), (0, frames * OUTPUT_HOP - wav.shape[-1])).numpy()
        rows = [torch.from_numpy(np.ascontiguousarray(resample(r, OUTPUT_SAMPLE_RATE, WHISPER_SAMPLE_RATE)))
                for r in padded]
        rows = [F.pad(r, (0, max(0, frames * SAMPLES_16K_PER_TOKEN - r.numel())))[: frames * SAMPLES_16K_PER_TOKEN]
                for r in rows]
        return self.encode_16k(rows)[0].to(wav.device)

    @torch.no_grad()
    def transcribe_16k(self, clips: Sequence[torch.Tensor]) -> list[str]:
        """Greedy-CTC transcripts of 16 kHz clips (each ``[T_i]``): the supervision head's reading."""
        was_training = self.training
        self.eval()
        try:
            out = self(*self.features(clips))
        finally:
            self.train(was_training)
        return ctc_greedy(out.logits, out.logit_lengths, self.config.alphabet)

    # ------------------------------------------------------------------ decoding (through TokenVocoder)
    def attach_token2wav(self, token2wav: TokenVocoder | None) -> None:
        """Attach (or, with ``None``, detach) the token-to-waveform model behind :meth:`decode`."""
        if token2wav is not None and not isinstance(token2wav, TokenVocoder):
            raise InputError(f"{type(token2wav).__name__} is not a TokenVocoder",
                             "it needs sample_rate, synthesize(codes) and stream_decoder(batch_size)")
        object.__setattr__(self, "_token2wav", token2wav)

    def _require_token2wav(self) -> TokenVocoder:
        if self.token2wav is None:
            raise CheckpointError("FSQ speech tokens need a token-to-waveform model to decode, and none is attached",
                                  f"call attach_token2wav(t2w) or save one in the tokenizer's {TOKEN2WAV_DIR}/ "
                                  "folder")
        return self.token2wav

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, F]`` -> ``wav [B, F * 960]`` at 24 kHz through the attached :class:`TokenVocoder`."""
        t2w = self._require_token2wav()
        if codes.dim() != 2:
            raise InputError(f"decode expects codes [B, F], got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise InputError(f"codes must lie in [0, {self.codebook_size}), got {int(codes.min())}..{int(codes.max())}")
        return t2w.synthesize(codes.long())

    def stream_decoder(self, batch_size: int = 1, **options: object) -> SpeechStreamDecoder:
        return self._require_token2wav().stream_decoder(batch_size)

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write ``config.json`` (``"type": "fsq_speech"``) + ``model.safetensors`` into ``path`` atomically.
        An attached :class:`TokenVocoder` is not written (it saves itself into ``path/token2wav/``)."""
        with atomic_dir(path, overwrite=overwrite) as tmp:
            atomic_write_json(tmp / "config.json", {"type": self.type_name, "format_version": FORMAT_VERSION,
                                                    "config": self.config.to_dict(), "metadata": self.metadata()})
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": self.type_name})

    @classmethod
    def from_pretrained(cls, path: str | Path, *, map_location: str | torch.device = "cpu",
                        **kwargs: object) -> FSQSpeechTokenizer:
        """Load a directory written by :meth:`save_pretrained`, attaching ``path/token2wav/`` when present
        (:func:`load_token2wav`). A missing, corrupt or mismatching file raises :class:`CheckpointError`."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: no config.json", "pass a directory written by save_pretrained")
        meta = read_json(path / "config.json")
        if not isinstance(meta, dict) or meta.get("type") != cls.type_name or not isinstance(meta.get("config"), dict):
            raise CheckpointError(f"{path / 'config.json'} does not describe an {cls.type_name} tokenizer",
                                  f"expected {{'type': '{cls.type_name}', 'config': {{...}}}}")
        if meta.get("format_version", 1) != FORMAT_VERSION:
            raise CheckpointError(f"{path}: format_version {meta.get('format_version')!r} is not {FORMAT_VERSION}")
        model = cls(FSQTokenizerConfig.from_dict(meta["config"]))
        weights = path / "model.safetensors"
        try:
            state = load_file(str(weights), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{weights}: missing, not a safetensors file, or corrupt "
                                  f"({' '.join(str(e).split())[:160]})", "re-export the tokenizer") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{weights}: does not match the config ({str(e).splitlines()[0][:200]})",
                                  "re-export the tokenizer") from None
        model.attach_token2wav(load_token2wav(path / TOKEN2WAV_DIR))
        return model.to(map_location).eval()
