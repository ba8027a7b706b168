"""What every task of the suite shares: the model, the world's records, media encoding, judges, seeds, progress."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from aromni.errors import ConfigError, InputError
from aromni.inference.omni import OmniModel
from aromni.toyworld.evaluation.generation import Caps, Output, generate, policy_options
from aromni.toyworld.evaluation.prompts import MediaEncoder
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.speech import SpeechJudge
from aromni.toyworld.judges.store import speech_judge_dir, world_version
from aromni.toyworld.records import WorldRecord, iter_records
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import ASR, CAPTION, CHAT_IMAGE, S2I, S2S, S2T, T2I, TTS, VQA_SPEECH, VQA_TEXT, Task

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: Suite steps that are not tasks of the registry: the judges' sanity check on ground truth, and timed
#: streaming TTS.
JUDGES_STEP = "judges"
STREAMING_STEP = "streaming"
#: The registry's tasks the suite scores, in run order.
SCORED_TASKS: tuple[Task, ...] = (ASR, TTS, CAPTION, T2I, S2I, VQA_TEXT, VQA_SPEECH, S2S, S2T, CHAT_IMAGE)
#: Every step of the suite (a task name or one of the steps above), in run order.
TASKS: tuple[str, ...] = (JUDGES_STEP, *(t.name for t in SCORED_TASKS), STREAMING_STEP)

#: Samples per step by default: sized so that the whole suite takes a few minutes on 2 CPU cores for a ~10 M
#: parameter model (``judges`` counts ground-truth clips and images, ``streaming`` TTS requests timed one by one).
DEFAULT_LIMITS: dict[str, int] = {
    JUDGES_STEP: 200, ASR.name: 100, TTS.name: 40, CAPTION.name: 100, T2I.name: 48, S2I.name: 40,
    VQA_TEXT.name: 60, VQA_SPEECH.name: 40, S2S.name: 40, S2T.name: 40, CHAT_IMAGE.name: 40, STREAMING_STEP: 8,
}


@dataclass
class SuiteConfig:
    """Settings of one suite run.

    Attributes:
        split: world split to evaluate (``test``: held-out voices and attribute pairs).
        limits: samples per task (missing tasks take :data:`DEFAULT_LIMITS`); an int applies to every task.
        tasks: which tasks to run.
        seed: base seed; sample ``i`` of a task uses a seed derived from (seed, task, i).
        batch_size: prompts per generation batch.
        caps: length caps of the replies.
        keep_examples: generated media kept per task for the report's figures.
        judges: directory with ``speech/`` and ``image/`` judges (default: the shipped ones).
        progress: show progress bars (on stderr, when it is a terminal).
    """

    split: str = "test"
    limits: dict[str, int] | int | None = None
    tasks: Sequence[str] = TASKS
    seed: int = 0
    batch_size: int = 8
    caps: Caps = field(default_factory=Caps)
    keep_examples: int = 8
    judges: str | Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"unknown eval tasks {unknown}", f"choose from {', '.join(TASKS)}")
        base = dict(DEFAULT_LIMITS)
        if isinstance(self.limits, int):
            base = {k: self.limits for k in base}
        elif self.limits:
            bad = [k for k in self.limits if k not in TASKS]
            if bad:
                raise ConfigError(f"limits for unknown tasks {bad}", f"choose from {', '.join(TASKS)}")
            base.update(self.limits)
        if any(v < 1 for v in base.values()):
            raise ConfigError(f"every limit must be >= 1, got {base}")
        self.limits = base
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    def limit(self, task: str) -> int:
        assert isinstance(self.limits, dict)
        return self.limits[task]

    def to_dict(self) -> dict[str, JSONValue]:
        return {"split": self.split, "limits": self.limits, "tasks": list(self.tasks), "seed": self.seed,
                "batch_size": self.batch_size, "caps": vars(self.caps),
                "judges": str(self.judges) if self.judges else "shipped"}


class Context:
    """Shared state of a run: model, records by task, media encoder, judges (loaded once), seeds."""

    def __init__(self, model: OmniModel, world: str | Path, cfg: SuiteConfig):
        for need in ("text", "image", "speech"):
            if getattr(model, need) is None:
                raise InputError(f"the bundle has no {need} tokenizer", "the toy suite needs all three modalities")
        self.model, self.world, self.cfg = model, Path(world), cfg
        if not (self.world / "manifest.json").is_file():
            raise InputError(f"{self.world}: not a toy world (no manifest.json)",
                             "build one with `aromni toyworld build --out DIR`")
        self.by_task: dict[str, list[WorldRecord]] = {}
        for rec in iter_records(self.world, cfg.split):
            self.by_task.setdefault(rec["task"], []).append(rec)
        self.media = MediaEncoder(model, self.world)
        self.world_version = world_version(self.world)
        self._speech_judge: SpeechJudge | None = None
        self._image_judge: ImageJudge | None = None

    def records(self, task: str, limit_key: str | None = None) -> list[WorldRecord]:
        return self.by_task.get(task, [])[: self.cfg.limit(limit_key or task)]

    def seeds(self, task: str, n: int) -> list[int]:
        # Stable across runs and Python versions (no hash()): crc32 of the task name.
        base = self.cfg.seed * 1_000_003 + zlib.crc32(task.encode()) % 100_000 * 1_000
        return [base + i for i in range(n)]

    @property
    def speech_judge(self) -> SpeechJudge:
        if self._speech_judge is None:
            # The shipped judge that reads this world's vocabulary (version 1: its word judge).
            default = speech_judge_dir(self.world_version)
            self._speech_judge = SpeechJudge.load(Path(self.cfg.judges) / "speech" if self.cfg.judges else default)
        return self._speech_judge

    @property
    def image_judge(self) -> ImageJudge:
        if self._image_judge is None:
            self._image_judge = ImageJudge.load(Path(self.cfg.judges) / "image" if self.cfg.judges else None)
        return self._image_judge

    def transcribe(self, wavs: Sequence[torch.Tensor]) -> list[str]:
        """Speech judge transcripts of waveforms at the codec's sample rate (an empty waveform reads as "")."""
        present = [w for w in wavs if len(w)]
        heard = iter(self.speech_judge.transcribe(present, sample_rate=self.model.speech.sample_rate)
                     if present else [])
        return [next(heard) if len(w) else "" for w in wavs]

    def read_images(self, images: Sequence[PILImage | None]) -> list[dict[str, str] | None]:
        """Image judge reads (``None`` for a missing image)."""
        present = [im for im in images if im is not None]
        reads = iter(self.image_judge.read(present) if present else [])
        return [next(reads) if im is not None else None for im in images]

    def generate(self, task: str, policy: str, prompts: Sequence[Sequence[int]], *, seed_key: str | None = None
                 ) -> list[Output]:
        if not prompts:
            return []
        opts = policy_options(self.model, policy, self.cfg.caps)
        bar = self.bar(len(prompts), f"{task} ({policy})")
        try:
            return generate(self.model, prompts, opts, self.seeds(seed_key or task, len(prompts)),
                            batch_size=self.cfg.batch_size, on_batch=bar.update)
        finally:
            bar.close()

    def bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
                    disable=not (self.cfg.progress and sys.stderr.isatty()))
