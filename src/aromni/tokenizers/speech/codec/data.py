"""Training audio for the codec: files from a directory or glob, a held-out split, random fixed-length crops.

All clips are decoded once (mono, resampled to the codec rate with soxr) and kept in memory; the toy world's
corpus is a few hundred MB at most. Crops are drawn with an explicit ``torch.Generator`` whose state is part of
the trainer's checkpoint, so a resumed run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path

import torch
from tqdm.auto import tqdm

from aromni.errors import InputError
from aromni.tokenizers.speech.audio_io import load_audio

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def list_audio_files(spec: str) -> list[Path]:
    """A directory (searched recursively for audio files) or a glob pattern -> sorted list of files."""
    p = Path(spec)
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES]
    else:
        files = [Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file()]
    if not files:
        raise InputError(f"no audio files found for {spec!r}",
                         f"pass a directory holding {'/'.join(AUDIO_SUFFIXES)} files or a glob like 'data/*.wav'")
    return sorted(files)


def split_files(files: list[Path], n_val: int) -> tuple[list[Path], list[Path]]:
    """Deterministic held-out split: the ``n_val`` files with the smallest name hash (stable as files are added)."""
    if n_val <= 0:
        return files, []
    if len(files) <= n_val:
        raise InputError(f"only {len(files)} audio files: cannot hold out {n_val} and still train",
                         "add files or lower val_files")
    ranked = sorted(files, key=lambda f: hashlib.sha1(f.name.encode()).hexdigest())
    val = set(ranked[:n_val])
    return [f for f in files if f not in val], [f for f in files if f in val]


class ClipSet:
    """Clips ``list[[T_i]]`` in memory with random cropping into ``[B, segment]`` batches."""

    def __init__(self, files: list[Path], sample_rate: int, *, max_seconds: float = 60.0, progress: bool = True):
        self.files = files
        self.clips = [load_audio(f, sample_rate, max_seconds=max_seconds)
                      for f in tqdm(files, desc="loading audio", disable=not progress, leave=False)]
        self.seconds = sum(c.numel() for c in self.clips) / sample_rate

    @classmethod
    def from_clips(cls, clips: list[torch.Tensor], sample_rate: int) -> ClipSet:
        """Clips already in memory (mono ``[T_i]`` at ``sample_rate``)."""
        self = cls.__new__(cls)
        self.files, self.clips = [], [c.float().reshape(-1) for c in clips]
        self.seconds = sum(c.numel() for c in self.clips) / sample_rate
        return self

    def __len__(self) -> int:
        return len(self.clips)

    def batch(self, batch_size: int, segment: int, generator: torch.Generator) -> torch.Tensor:
        """``[batch_size, segment]`` random crops; shorter clips are zero-padded at the end."""
        out = torch.zeros(batch_size, segment)
        idx = torch.randint(len(self.clips), (batch_size,), generator=generator).tolist()
        for row, i in enumerate(idx):
            clip = self.clips[i]
            start = int(torch.randint(max(1, clip.numel() - segment + 1), (1,), generator=generator))
            piece = clip[start:start + segment]
            out[row, :piece.numel()] = piece
        return out
