"""The toy-world speech judge's training recipe: character or phoneme CTC on speech the trainer synthesises itself.

No world is needed. :func:`~aromni.toyworld.judges.speech_data.synthesize_pool` speaks ``pool_clips`` texts (random
word sequences over the whole lexicon, and ``grammar_fraction`` grammar sentences) with espeak-ng training speakers
and the assistant voice, some of them corrupted in the waveform, and caches their log-mels in ``out/pool``. Random
sequences have no grammar to memorise, so the judge has to spell what it hears: an instrument, not a language
model. With ``units: phonemes`` the targets are the words' espeak-ng phonemes
(:mod:`aromni.toyworld.judges.phonemes`), and ``init_from`` warm-starts the network from a saved judge (every
tensor whose shape matches: with other units, all but the output layer).

Trained by :class:`~aromni.training.loop.TrainLoop`: the checkpoints it writes in the output directory (every
``save_every`` steps) hold everything a resume needs; rerunning the same command continues from the newest one
exactly (the pool is a function of the seed and is re-read, or finished, from its shards). The finished judge is
saved as ``config.json`` + ``model.safetensors`` (fp16) with its validation WER (fresh clips in training speakers)
in the config.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from aromni.errors import InputError
from aromni.toyworld.judges.augment import augment_logmel, spec_augment
from aromni.toyworld.judges.phonemes import phoneme_alphabet, pronunciation_table
from aromni.toyworld.judges.speech import (
    JUDGE_TYPE,
    PHONEME_JUDGE_TYPE,
    SpeechJudge,
    SpeechJudgeConfig,
    SpeechJudgeModel,
)
from aromni.toyworld.judges.speech_data import PoolSettings, pool_item, synthesize_pool
from aromni.toyworld.judges.store import load_judge_files
from aromni.toyworld.judges.wer import wer
from aromni.toyworld.voices import require_espeak
from aromni.training.loop import Update
from aromni.training.recipes.judge import fit_judge
from aromni.utils.io import JSONValue

# Validation clips are pool items from this index on: same speakers and text distribution, never trained on.
VAL_OFFSET = 10_000_000


@dataclass
class SpeechTrainConfig:
    steps: int = 2000
    batch_seconds: float = 50.0  # audio per batch (batches are length-bucketed)
    lr: float = 2e-3
    warmup: int = 150
    clean_fraction: float = 0.2  # batches left uncorrupted
    clean_start: float = 0.05  # the first 5% of steps are all clean (CTC first has to leave the all-blank plateau)
    save_every: int = 100
    log_every: int = 50
    pool_clips: int = 30000  # synthesised training clips (cached as log-mels in OUT/pool)
    grammar_fraction: float = 0.25  # share of grammar sentences among the texts (the rest: random word sequences)
    assistant_fraction: float = 0.1  # share spoken by the fixed assistant voice (the rest: random training speakers)
    wave_augment_fraction: float = 0.5  # share corrupted in the waveform (toyworld.audio_augment, when present)
    val_clips: int = 200
    workers: int = 1  # synthesis processes
    conv_channels: int = 256
    hidden: int = 192
    layers: int = 3
    units: str = "chars"  # "chars" (a-z, apostrophe, space) or "phonemes" (espeak-ng symbols, mapped to words)
    init_from: str = ""  # a saved speech judge to start from (its matching tensors; empty: from scratch)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_seconds <= 0 or self.lr <= 0:
            raise InputError("steps, batch_seconds and lr must be positive", "pass positive values")
        if self.pool_clips <= 0 or self.workers <= 0:
            raise InputError("pool_clips and workers must be positive", "pass positive values")
        for name in ("grammar_fraction", "assistant_fraction", "wave_augment_fraction", "clean_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {getattr(self, name)}", "pass a fraction")
        if self.units not in ("chars", "phonemes"):
            raise InputError(f"units must be 'chars' or 'phonemes', got {self.units!r}", "pick one of the two")

    def pool(self) -> PoolSettings:
        return PoolSettings(self.pool_clips, self.grammar_fraction, self.assistant_fraction,
                            self.wave_augment_fraction, self.seed)

    def model_config(self, texts: Sequence[str] = ()) -> SpeechJudgeConfig:
        """The judge's network; with phoneme units its pronunciation table covers the lexicon and ``texts``."""
        shape = {"conv_channels": self.conv_channels, "hidden": self.hidden, "layers": self.layers}
        if self.units == "chars":
            return SpeechJudgeConfig(**shape)
        table = pronunciation_table(texts)
        return SpeechJudgeConfig(alphabet=phoneme_alphabet(table), pronunciations=table, **shape)


def warm_start(model: SpeechJudgeModel, path: str | Path) -> list[str]:
    """Copy every tensor of the saved judge at ``path`` whose name and shape ``model`` shares; returns the names
    left as initialised (the output layer, when the units differ)."""
    _, state = load_judge_files(path, (JUDGE_TYPE, PHONEME_JUDGE_TYPE))
    own = model.state_dict()
    shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("rnn.") for k in shared):
        raise InputError(f"{path}: the saved judge's network has another shape than this one's",
                         "train with the same conv_channels, hidden and layers as the judge you start from")
    model.load_state_dict(shared, strict=False)
    return sorted(own.keys() - shared.keys())


def _batches(lengths: list[int], batch_samples: int, rng: random.Random,
             repeats: list[int] | None = None) -> list[list[int]]:
    """Length-bucketed batches of at most ``batch_samples`` padded frames; clip ``i`` occurs ``repeats[i]`` times.

    Copy ``r`` of every clip goes into round ``r``, and each round is bucketed on its own, so the copies of a
    repeated clip land in different batches (augmentation draws once per batch) and never fill one batch."""
    repeats = repeats or [1] * len(lengths)
    out: list[list[int]] = []
    for r in range(max(repeats, default=0)):
        order = sorted((i for i, k in enumerate(repeats) if k > r), key=lambda i: (lengths[i], rng.random()))
        cur: list[int] = []
        for i in order:  # ascending lengths: the newest clip is the longest of its batch
            if cur and (len(cur) + 1) * lengths[i] > batch_samples:
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
    rng.shuffle(out)
    return out


def _lr(step: int, cfg: SpeechTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * progress)))


def _ctc_step(model: SpeechJudgeModel, mels: list[torch.Tensor], texts: list[str], g: torch.Generator,
              corrupt: bool) -> torch.Tensor:
    """CTC loss of a batch of raw log-mels ``[M, F_i]`` and their transcripts (mel-domain corruption if asked)."""
    n = torch.tensor([x.shape[-1] for x in mels])
    m = torch.full((len(mels), mels[0].shape[0], int(n.max())), float(np.log(1e-5)))
    for j, x in enumerate(mels):
        m[j, :, : x.shape[-1]] = x.float()
    if corrupt:
        m, n = augment_logmel(m, n, g)
    feats = model.normalize(m, n)
    if corrupt:
        feats = spec_augment(feats, g)
    logp, out_len = model.forward_features(feats, n)
    targets = [torch.tensor(model.cfg.target_ids(t)) for t in texts]
    tgt_len = torch.tensor([len(t) for t in targets])
    return torch.nn.functional.ctc_loss(logp.transpose(0, 1), torch.cat(targets), out_len, tgt_len,
                                        blank=0, zero_infinity=True)


def _synth_shard(args: tuple[Path, PoolSettings, int, int, SpeechJudgeConfig]) -> None:
    """Worker: synthesise pool shard files from ``start`` to ``stop`` (one process, one torch thread)."""
    out, settings, start, stop, model_cfg = args
    torch.set_num_threads(1)
    model = SpeechJudgeModel(model_cfg)
    synthesize_pool(out, settings, model.mel, progress=False, shards=range(start, stop))


def build_pool(out: Path, cfg: SpeechTrainConfig, model: SpeechJudgeModel, *,
               progress: bool) -> tuple[list[torch.Tensor], list[str]]:
    """The training pool's log-mels ``[M, F_i]`` and texts, synthesised with ``cfg.workers`` processes if missing."""
    settings = cfg.pool()
    if cfg.workers > 1:
        n_shards = -(-cfg.pool_clips // 1000)
        per = -(-n_shards // cfg.workers)
        jobs = [(out, settings, s, min(n_shards, s + per), cfg.model_config()) for s in range(0, n_shards, per)]
        # spawn, not fork: a child forked from a process whose torch already started its threads can hang on a
        # lock it inherited held (seen here: one of two forked workers never started).
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            list(ex.map(_synth_shard, jobs))
    return synthesize_pool(out, settings, model.mel, progress=progress)


class SpeechJudgeRecipe:
    """The speech judge's step on :class:`~aromni.training.loop.TrainLoop`: a length-bucketed batch of cached
    log-mels (corrupted after the clean start, a share kept clean), character or phoneme CTC, gradient clipping
    at 1."""

    def __init__(self, cfg: SpeechTrainConfig, mels: list[torch.Tensor], texts: list[str]):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.model = SpeechJudgeModel(cfg.model_config(texts))
        # A resumed run then loads its own checkpoint over these weights.
        self.fresh = warm_start(self.model, cfg.init_from) if cfg.init_from else []
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.01)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.mels, self.texts = mels, texts
        self.lengths = [x.shape[-1] for x in self.mels]
        self.epoch_batches: list[list[int]] = []  # the rest of this epoch's batches: the data position
        self.model.train()

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        cfg = self.cfg
        if not self.epoch_batches:
            self.epoch_batches = _batches(self.lengths, int(cfg.batch_seconds * 100),
                                          random.Random(f"{cfg.seed}-{step}"))
        idx = self.epoch_batches.pop()
        for group in self.opt.param_groups:
            group["lr"] = float(_lr(step, cfg))
        corrupt = float(torch.rand((), generator=self.gen)) >= cfg.clean_fraction and step >= cfg.clean_start * cfg.steps
        loss = _ctc_step(self.model, [self.mels[i] for i in idx], [self.texts[i] for i in idx], self.gen, corrupt)
        logs.update(loss=loss.item(), corrupt=float(corrupt), lr=float(_lr(step, cfg)))
        yield Update(loss, self.opt, clip=1.0, grad_norm_key="grad_norm")

    def evaluate(self, step: int) -> dict[str, float]:
        return {}  # the judge is scored once, after training

    def log_fields(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, torch.Tensor | list[list[int]]]:
        return {"gen": self.gen.get_state(), "epoch_batches": [list(b) for b in self.epoch_batches]}

    def load_state_dict(self, state: Mapping[str, torch.Tensor | list[list[int]]]) -> None:
        self.gen.set_state(state["gen"])
        self.epoch_batches = [[int(i) for i in b] for b in state["epoch_batches"]]


def validation_clips(cfg: SpeechTrainConfig) -> tuple[list[np.ndarray], list[str]]:
    """``cfg.val_clips`` fresh clips from the training distribution (pool items never trained on)."""
    items = [pool_item(VAL_OFFSET + i, cfg.pool()) for i in range(cfg.val_clips)]
    return [w for w, _, _ in items], [t for _, t, _ in items]


def train_speech_judge(out: str | Path, cfg: SpeechTrainConfig | None = None, *, progress: bool = True,
                       until: int | None = None) -> dict[str, JSONValue]:
    """Synthesise the pool (or finish it), then train (or resume from the newest checkpoint in ``out``) the speech
    judge and save it to ``out``; returns its metrics.

    ``until``: stop at that step with a checkpoint (an interrupted run, for tests), without saving the judge."""
    cfg = cfg or SpeechTrainConfig()
    out = Path(out)
    require_espeak()
    if cfg.init_from:  # a wrong path fails now, not after synthesising the pool
        load_judge_files(cfg.init_from, (JUDGE_TYPE, PHONEME_JUDGE_TYPE))
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    mels, texts = build_pool(out, cfg, SpeechJudgeModel(cfg.model_config()), progress=progress)
    t_pool = time.perf_counter() - t0
    recipe = SpeechJudgeRecipe(cfg, mels, texts)
    step = fit_judge(recipe, cfg, out, desc="speech judge", progress=progress, until=until)
    if step < cfg.steps:
        return {"steps": step}
    judge = SpeechJudge(recipe.model)
    val_wavs, val_texts = validation_clips(cfg)
    val_wer = wer(val_texts, judge.transcribe(val_wavs)) if val_wavs else None
    metrics: dict[str, JSONValue] = {
        "val_wer_training_speakers": None if val_wer is None else round(val_wer, 5), "steps": step,
        "pool": asdict(cfg.pool()),  # lets the measurement exclude the training texts
        "pool_clips": len(texts), "pool_hours": round(sum(m.shape[-1] for m in mels) / 100 / 3600, 2),
        "params": sum(p.numel() for p in recipe.model.parameters()),
        "units": cfg.units, "init_from": cfg.init_from or None,
        "pool_seconds_this_run": round(t_pool, 1), "train_seconds_this_run": round(time.perf_counter() - t0, 1)}
    judge.save(out, metrics)
    return metrics
