"""Speech judge: a small word-level CTC recognizer over the world's closed spoken vocabulary.

log-mel (64 bins, 25 ms / 10 ms) -> per-utterance mean/variance normalisation -> two strided 1-D convolutions
(40 ms frames) -> 2-layer bidirectional GRU -> linear over ``[blank] + words``. Greedy CTC decoding. Word units
suit a closed ~100-word vocabulary: outputs are always world words and the model needs no spelling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aromni.errors import ConfigError
from aromni.tokenizers.speech.audio_io import load_audio, resample
from aromni.tokenizers.speech.mel import LogMel, MelConfig
from aromni.toyworld.judges.store import default_judge_dir, load_judge_files, save_judge

JUDGE_TYPE = "toyworld-speech-judge"


@dataclass
class SpeechJudgeConfig:
    words: list[str] = field(default_factory=list)
    sample_rate: int = 16000
    n_mels: int = 64
    n_fft: int = 400
    hop_length: int = 160
    conv_channels: int = 192
    hidden: int = 128
    layers: int = 2

    def __post_init__(self) -> None:
        if not self.words or len(set(self.words)) != len(self.words):
            raise ConfigError("speech judge needs a non-empty list of distinct words")

    def mel_config(self) -> MelConfig:
        return MelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                         n_mels=self.n_mels)


class SpeechJudgeModel(nn.Module):
    """``wav [B, T]`` -> CTC log-probs ``[B, F, 1 + len(words)]`` with ``F ≈ T / (4 * hop)``."""

    def __init__(self, cfg: SpeechJudgeConfig):
        super().__init__()
        self.cfg = cfg
        self.mel = LogMel(cfg.mel_config())
        c = cfg.conv_channels
        self.conv1 = nn.Conv1d(cfg.n_mels, c, 5, stride=2, padding=2)
        self.conv2 = nn.Conv1d(c, c, 5, stride=2, padding=2)
        self.rnn = nn.GRU(c, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True, dropout=0.1)
        self.head = nn.Linear(2 * cfg.hidden, 1 + len(cfg.words))

    def features(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``wav [B, T], lengths [B] -> normalised log-mel [B, n_mels, frames]``."""
        return self.normalize(self.mel(wav), self.mel_frames(lengths))

    def mel_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths // self.cfg.hop_length + 1

    @staticmethod
    def normalize(m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Mean/variance-normalise log-mels ``[B, M, F]`` over each clip's first ``n[b]`` frames; zero the rest."""
        n = n.clamp(max=m.shape[-1])
        mask = (torch.arange(m.shape[-1])[None, :] < n[:, None]).to(m.dtype)[:, None, :]  # [B, 1, F]
        mean = (m * mask).sum(-1, keepdim=True) / n[:, None, None]
        var = (((m - mean) * mask) ** 2).sum(-1, keepdim=True) / n[:, None, None]
        return (m - mean) / (var.sqrt() + 1e-5) * mask

    def forward_features(self, feats: torch.Tensor, n_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats [B, n_mels, frames]`` with ``n_frames [B]`` valid -> ``(log-probs [B, F, V], lengths [B])``."""
        n1 = (n_frames + 1) // 2  # frames after conv1
        n2 = (n1 + 1) // 2
        x = nn.functional.gelu(self.conv1(feats))
        # Zero the padded tail so a clip's output does not depend on what it was batched with.
        x = x * (torch.arange(x.shape[-1])[None, None, :] < n1[:, None, None])
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)  # [B, F, C]
        out_len = n2.clamp(max=x.shape[1])
        packed = nn.utils.rnn.pack_padded_sequence(x, out_len.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.head(y).log_softmax(-1), out_len

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_features(self.features(wav, lengths), self.mel_frames(lengths))


def greedy_decode(logp: torch.Tensor, lengths: torch.Tensor, words: list[str]) -> list[str]:
    """CTC best path: ``[B, F, V]`` -> one space-joined word string per row."""
    best = logp.argmax(-1)
    out = []
    for row, n in zip(best.tolist(), lengths.tolist()):
        prev, ids = 0, []
        for t in row[:n]:
            if t != prev and t != 0:
                ids.append(t)
            prev = t
        out.append(" ".join(words[i - 1] for i in ids))
    return out


class SpeechJudge:
    """Transcribes 16 kHz mono waveforms into world words."""

    def __init__(self, model: SpeechJudgeModel):
        self.model = model.eval()
        self.cfg = model.cfg

    @classmethod
    def load(cls, path: str | Path | None = None) -> SpeechJudge:
        """Load a saved judge (default: the one shipped with the package)."""
        config, state = load_judge_files(path or default_judge_dir("speech"), JUDGE_TYPE)
        config.pop("type", None)
        config.pop("metrics", None)
        model = SpeechJudgeModel(SpeechJudgeConfig(**config))
        model.load_state_dict(state)
        return cls(model)

    def save(self, out: str | Path, metrics: dict | None = None) -> None:
        save_judge(out, self.model, {"type": JUDGE_TYPE, **asdict(self.cfg), "metrics": metrics or {}})

    @torch.inference_mode()
    def transcribe(self, wavs, *, sample_rate: int | None = None, batch_size: int = 32) -> list[str]:
        """Transcribe a list of 1-D waveforms (numpy or torch; at ``sample_rate``, default 16 kHz)."""
        sr = sample_rate or self.cfg.sample_rate
        items = [np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float32).reshape(-1)
                 for w in wavs]
        items = [resample(w, sr, self.cfg.sample_rate) if sr != self.cfg.sample_rate else w for w in items]
        out: list[str] = []
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            wav, lengths = pad_batch(chunk)
            logp, out_len = self.model(wav, lengths)
            out += greedy_decode(logp, out_len, self.cfg.words)
        return out

    def transcribe_files(self, paths, **kw) -> list[str]:
        return self.transcribe([load_audio(p, self.cfg.sample_rate) for p in paths], **kw)


def pad_batch(items) -> tuple[torch.Tensor, torch.Tensor]:
    """List of 1-D arrays -> ``(wav [B, T_max] zero-padded, lengths [B])``. Clips shorter than 0.1 s are padded."""
    lengths = torch.tensor([max(len(w), 1600) for w in items])
    wav = torch.zeros(len(items), int(lengths.max()))
    for j, w in enumerate(items):
        wav[j, : len(w)] = torch.as_tensor(w, dtype=torch.float32)
    return wav, lengths
