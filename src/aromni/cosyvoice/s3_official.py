"""CosyVoice2's released speech tokenizer (``speech_tokenizer_v2.onnx``) run through PyPI ``s3tokenizer``
(Apache-2.0), from a file the user already has: nothing is downloaded.

``s3tokenizer.load_model`` would download the file and check its SHA256, so it is not used. Instead
:meth:`S3OfficialTokenizer.from_onnx` converts the user's ONNX weights with s3tokenizer's own converter
(``s3tokenizer.utils.onnx2torch``), builds ``S3TokenizerV2`` with the sizes read off those weights (the release:
128 mels, width 1280, 20 heads of 64, 6 blocks, 8 FSQ dimensions) and loads them strictly. Features are our
:func:`~aromni.cosyvoice.mel.whisper_log_mel` of each clip as it is (CosyVoice's ``_extract_speech_token``:
Whisper's 128-bin log-mel, no padding), so a clip of ``M`` mel frames gives ``ceil(M / 4)`` tokens at 25 Hz in
``[0, 6561)``.

s3tokenizer imports ``torchaudio`` at the top of its ``utils`` module, only for its audio-file loader, which this
path does not use. Where torchaudio is missing or cannot load with this torch (torchaudio's wheels trail torch's
releases), :func:`import_s3tokenizer` imports s3tokenizer with a placeholder ``torchaudio`` that exists only while
s3tokenizer is imported and fails with a clear error if anything calls it.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from aromni.cosyvoice.mel import WHISPER_SAMPLE_RATE, whisper_log_mel
from aromni.errors import CheckpointError, InputError, MissingExtraError
from aromni.tokenizers.speech.audio_io import resample

__all__ = ["MAX_SECONDS", "S3OfficialTokenizer", "import_s3tokenizer"]

#: CosyVoice's frontend refuses longer clips (s3tokenizer would window them, which CosyVoice does not do).
MAX_SECONDS = 30.0
_INSTALL = 'pip install "aromni[s3]" and pip install --no-deps "s3tokenizer>=0.3.0"'
_HEAD_DIM = 64  # s3tokenizer's AudioEncoderV2 builds its rotary table for heads of 64


def _placeholder_torchaudio() -> ModuleType:
    stub = ModuleType("torchaudio")

    def missing(name: str) -> None:
        raise MissingExtraError(f"s3tokenizer's audio helpers need torchaudio (torchaudio.{name}), which cannot be "
                                "imported here", "load audio with aromni.tokenizers.speech.audio_io.load_audio")

    stub.__getattr__ = missing  # type: ignore[method-assign]
    return stub


def import_s3tokenizer() -> ModuleType:
    """The ``s3tokenizer`` package, also where torchaudio is absent or broken (module docstring); its other
    requirements missing (``onnx``, ``einops``, s3tokenizer itself) raise one :class:`MissingExtraError` line."""
    try:
        return importlib.import_module("s3tokenizer")
    except ModuleNotFoundError as e:
        if e.name != "torchaudio" and not (e.name or "").startswith("torchaudio."):
            raise MissingExtraError(f"CosyVoice2's official speech tokenizer needs the '{e.name}' package, which is "
                                    "not installed", _INSTALL) from None
    except OSError:  # a torchaudio wheel built for another torch: its compiled library fails to load
        pass
    for name in [n for n in sys.modules if n == "s3tokenizer" or n.startswith(("s3tokenizer.", "torchaudio"))]:
        del sys.modules[name]
    sys.modules["torchaudio"] = _placeholder_torchaudio()
    try:
        return importlib.import_module("s3tokenizer")
    except ModuleNotFoundError as e:
        raise MissingExtraError(f"CosyVoice2's official speech tokenizer needs the '{e.name}' package, which is not "
                                "installed", _INSTALL) from None
    finally:
        del sys.modules["torchaudio"]  # s3tokenizer.utils keeps its reference; nobody else sees the placeholder


def _model_sizes(weights: dict[str, torch.Tensor], path: Path) -> dict[str, int]:
    """``S3TokenizerV2``'s ``ModelConfig`` fields read off converted weights (``encoder.conv1.weight`` is
    ``[width, n_mels, 3]``; blocks are ``encoder.blocks.<i>.*``)."""
    conv1 = weights.get("encoder.conv1.weight")
    down = weights.get("quantizer._codebook.project_down.weight")
    if conv1 is None or conv1.dim() != 3 or down is None or down.shape[0] != 8:
        raise CheckpointError(f"{path}: not CosyVoice2's speech tokenizer v2 (no conv1 / 8-dimensional FSQ "
                              "projection found by s3tokenizer's converter)", "pass speech_tokenizer_v2.onnx")
    width, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    if width % _HEAD_DIM:
        raise CheckpointError(f"{path}: width {width} is not a multiple of s3tokenizer's head width {_HEAD_DIM}")
    blocks = {int(m.group(1)) for k in weights if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
    return {"n_mels": n_mels, "n_audio_state": width, "n_audio_head": width // _HEAD_DIM,
            "n_audio_layer": len(blocks)}


class S3OfficialTokenizer:
    """The released ONNX tokenizer as s3tokenizer's PyTorch model (module docstring). Build with
    :meth:`from_onnx`. Encoding only: 16 kHz audio -> 25 Hz tokens in ``[0, 6561)``."""

    codebook_size = 3 ** 8
    frame_rate = 25.0

    def __init__(self, model: torch.nn.Module, n_mels: int):
        self.model, self.n_mels = model.eval(), n_mels

    @classmethod
    def from_onnx(cls, path: str | Path) -> S3OfficialTokenizer:
        """Load ``speech_tokenizer_v2.onnx`` from ``path`` (never downloaded)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file", "pass the speech_tokenizer_v2.onnx of a CosyVoice2 release "
                                                      "(this package never downloads it)")
        s3 = import_s3tokenizer()
        try:
            weights = s3.onnx2torch(str(path), None, False)
        except Exception as e:  # onnx's parser raises its own types (DecodeError, ...) on a damaged file
            raise CheckpointError(f"{path}: s3tokenizer could not read it as an ONNX tokenizer "
                                  f"({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                                  "pass speech_tokenizer_v2.onnx") from None
        sizes = _model_sizes(weights, path)
        model = s3.S3TokenizerV2("speech_tokenizer_v2_25hz", s3.model_v2.ModelConfig(**sizes))
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: its weights do not fit S3TokenizerV2 ({' '.join(str(e).split())[:240]})",
                                  "pass speech_tokenizer_v2.onnx (v1 and v3 are other models)") from None
        return cls(model, sizes["n_mels"])

    @torch.no_grad()
    def encode_16k(self, wav16k: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz audio (a padded batch ``[B, T]`` with ``lengths [B]`` samples, or a list of ``[T_i]`` clips)
        -> ``(codes [B, F] long, lengths [B])``, codes past a row's length 0. Each clip's tokens do not depend
        on its batch."""
        if isinstance(wav16k, torch.Tensor):
            if wav16k.dim() != 2:
                raise InputError(f"encode_16k expects a waveform batch [B, T], got shape {tuple(wav16k.shape)}")
            n = lengths.tolist() if lengths is not None else [wav16k.shape[1]] * wav16k.shape[0]
            clips = [wav16k[i, : int(k)] for i, k in enumerate(n)]
        else:
            clips = list(wav16k)
        if not clips:
            raise InputError("no audio to encode", "pass at least one clip")
        mels = []
        for i, c in enumerate(clips):
            if c.dim() != 1 or c.numel() < 160:
                raise InputError(f"clip {i}: expected a mono waveform [T] of at least 160 samples (one mel frame), "
                                 f"got shape {tuple(c.shape)}")
            if c.numel() > MAX_SECONDS * WHISPER_SAMPLE_RATE:
                raise InputError(f"clip {i} is {c.numel() / WHISPER_SAMPLE_RATE:.1f} s long; CosyVoice2's tokenizer "
                                 f"takes at most {MAX_SECONDS:.0f} s", "split the audio")
            mels.append(whisper_log_mel(c.detach().float().cpu()[None], self.n_mels)[0])
        mel_len = torch.tensor([m.shape[-1] for m in mels])
        mel = torch.zeros(len(mels), self.n_mels, int(mel_len.max()))
        for i, m in enumerate(mels):
            mel[i, :, : m.shape[-1]] = m
        codes, code_len = self.model.quantize(mel, mel_len)
        codes, code_len = codes.long(), code_len.long()
        keep = torch.arange(codes.shape[1])[None] < code_len[:, None]
        return codes * keep, code_len

    def encode_24k(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, T]`` at 24 kHz (the stack's output rate) -> resampled to 16 kHz (soxr) -> :meth:`encode_16k`."""
        if wav.dim() != 2:
            raise InputError(f"encode_24k expects a waveform batch [B, T], got shape {tuple(wav.shape)}")
        rows = [torch.from_numpy(np.ascontiguousarray(resample(r, 24000, WHISPER_SAMPLE_RATE)))
                for r in wav.detach().float().cpu().numpy()]
        return self.encode_16k(rows)
