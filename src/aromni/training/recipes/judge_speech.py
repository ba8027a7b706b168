"""The toy-world speech judge's training recipe: train it on a world's training clips (training voices + the
assistant voice), read through :mod:`aromni.toyworld.judges.speech_data`.

The assistant voice is rare in a world's clip list (9% of the full world's training clips), and each of its
short spoken replies ("it is pink", "i made it big") exists there exactly once, because the assistant voice has
no jitter and the builder stores one clip per sentence. Trained on the plain clip list, the judge heard "it is
pink" once per epoch next to thousands of user questions ("is pink a color", "is it big or small") and read it
as "is it shape". So every epoch repeats each assistant clip ``assistant_repeat`` times and each spoken reply
(the assistant speech of ``REPLY_TASKS`` records, what the evaluation scores) ``reply_repeat`` times.

Trained by :class:`~aromni.training.loop.TrainLoop`: the checkpoints it writes in the output directory (every
``save_every`` steps) hold everything a resume needs; rerunning the same command continues from the newest one
exactly. The finished judge is saved as ``config.json`` + ``model.safetensors`` (fp16) with its validation WER in
the config.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aromni.errors import InputError
from aromni.toyworld import grammar
from aromni.toyworld.judges.augment import augment_logmel, spec_augment
from aromni.toyworld.judges.speech import SpeechJudge, SpeechJudgeConfig, SpeechJudgeModel, pad_batch
from aromni.toyworld.judges.speech_data import clip_repeats, load_clips, reply_paths, speech_rows
from aromni.toyworld.judges.wer import wer
from aromni.training.loop import Update
from aromni.training.recipes.judge import fit_judge


@dataclass
class SpeechTrainConfig:
    steps: int = 5000
    batch_seconds: float = 40.0  # audio per batch (batches are length-bucketed)
    lr: float = 3e-3
    warmup: int = 100
    clean_fraction: float = 0.2  # batches left uncorrupted
    clean_start: float = 0.1  # the first 10% of steps are all clean (CTC first has to leave the all-blank plateau)
    save_every: int = 200
    log_every: int = 50
    val_clips: int = 300
    max_train_clips: int | None = None
    assistant_repeat: int = 2  # copies of each assistant-voice clip per epoch (user clips: 1)
    reply_repeat: int = 12  # copies of each spoken reply (assistant speech in REPLY_TASKS records) per epoch
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_seconds <= 0 or self.lr <= 0:
            raise InputError("steps, batch_seconds and lr must be positive")
        if self.assistant_repeat < 1 or self.reply_repeat < 1:
            raise InputError("assistant_repeat and reply_repeat must be at least 1")


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


def compute_mels(model: SpeechJudgeModel, clips: list[tuple[np.ndarray, str]], batch: int = 64) -> list[torch.Tensor]:
    """Raw log-mels ``[M, F_i]`` (fp16) of every clip, computed once so training only pays for the model."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(clips), batch):
            wav, lengths = pad_batch([w.astype(np.float32) / 32768.0 for w, _ in clips[i : i + batch]])
            m = model.mel(wav)
            out += [m[j, :, : int(n)].half() for j, n in enumerate(model.mel_frames(lengths))]
    return out


def _step(model, mels, texts, word_id, g, corrupt: bool) -> torch.Tensor:
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
    targets = [torch.tensor([word_id[w] for w in t.split()]) for t in texts]
    tgt_len = torch.tensor([len(t) for t in targets])
    return torch.nn.functional.ctc_loss(logp.transpose(0, 1), torch.cat(targets), out_len, tgt_len,
                                        blank=0, zero_infinity=True)


def evaluate_wer(judge: SpeechJudge, clips: list[tuple[np.ndarray, str]]) -> float | None:
    if not clips:
        return None
    hyps = judge.transcribe([w.astype(np.float32) / 32768.0 for w, _ in clips])
    return wer([t for _, t in clips], hyps)


class SpeechJudgeRecipe:
    """The speech judge's step on :class:`~aromni.training.loop.TrainLoop`: a length-bucketed batch of cached
    log-mels (corrupted after the clean start, a share kept clean), CTC, gradient clipping at 1."""

    def __init__(self, cfg: SpeechTrainConfig, train: list[tuple[np.ndarray, str]], repeats: list[int]):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.words = grammar.spoken_vocabulary()
        self.model = SpeechJudgeModel(SpeechJudgeConfig(words=self.words))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.01)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.word_id = {w: i + 1 for i, w in enumerate(self.words)}
        self.mels, self.texts = compute_mels(self.model, train), [t for _, t in train]
        self.lengths = [x.shape[-1] for x in self.mels]
        self.repeats = repeats
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
                                          random.Random(f"{cfg.seed}-{step}"), self.repeats)
        idx = self.epoch_batches.pop()
        for group in self.opt.param_groups:
            group["lr"] = float(_lr(step, cfg))
        corrupt = float(torch.rand((), generator=self.gen)) >= cfg.clean_fraction and step >= cfg.clean_start * cfg.steps
        loss = _step(self.model, [self.mels[i] for i in idx], [self.texts[i] for i in idx], self.word_id, self.gen,
                     corrupt)
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


def train_speech_judge(world: str | Path, out: str | Path, cfg: SpeechTrainConfig | None = None,
                       *, progress: bool = True, until: int | None = None) -> dict:
    """Train (or resume from the newest checkpoint in ``out``) the speech judge and save it to ``out``; returns its metrics.

    ``until``: stop at that step with a checkpoint (an interrupted run, for tests), without saving the judge."""
    cfg = cfg or SpeechTrainConfig()
    world, out = Path(world), Path(out)
    words = grammar.spoken_vocabulary()
    train_rows = speech_rows(world, "train", cfg.max_train_clips, cfg.seed)
    train = load_clips(world, train_rows)
    replies = reply_paths(world, "train")
    if not train:
        raise InputError(f"{world}: no training clips in speech.jsonl", "build the world first")
    unknown = {w for _, t in train for w in t.split()} - set(words)
    if unknown:
        raise InputError(f"{world}: transcripts use words outside the grammar: {sorted(unknown)[:5]}",
                         "rebuild the world with this version of aromni")
    t0 = time.perf_counter()
    recipe = SpeechJudgeRecipe(cfg, train, clip_repeats(train_rows, replies, cfg))
    step = fit_judge(recipe, cfg, out, desc="speech judge", progress=progress, until=until)
    if step < cfg.steps:
        return {"steps": step}
    val = load_clips(world, speech_rows(world, "validation", cfg.val_clips, cfg.seed))
    val_reply_paths = reply_paths(world, "validation")
    val_replies = load_clips(world, [r for r in speech_rows(world, "validation") if r["path"] in val_reply_paths])
    judge = SpeechJudge(recipe.model)
    val_wer, val_wer_replies = evaluate_wer(judge, val), evaluate_wer(judge, val_replies)
    metrics = {"val_wer": None if val_wer is None else round(val_wer, 5),
               "val_wer_replies": None if val_wer_replies is None else round(val_wer_replies, 5), "steps": step,
               "train_clips": len(train), "train_reply_clips": sum(r["path"] in replies for r in train_rows),
               "assistant_repeat": cfg.assistant_repeat, "reply_repeat": cfg.reply_repeat,
               "params": sum(p.numel() for p in recipe.model.parameters()),
               "train_seconds_this_run": round(time.perf_counter() - t0, 1)}
    judge.save(out, metrics)
    return metrics
