"""Training CosyVoice2's supervised FSQ speech tokenizer (``aromni cosyvoice fsq-train``) on
:class:`~aromni.training.loop.TrainLoop`, and encoding a world's clips with it (``fsq-encode``).

The tokens are "supervised": the quantiser sits inside an ASR model and only the ASR loss trains it (reference
§3.1: SenseVoice's encoder with an ASR decoder; here a CTC character head, §4.1). Output directory::

    checkpoints/step-N/  the loop's checkpoints (model.safetensors, trainer_state.pt with the batch generator)
    metrics.jsonl        one line per log step (CTC loss, codes used in the batch) and per evaluation
                         (validation CER / WER, distinct codes, code perplexity)
    tokenizer/           the export (FSQSpeechTokenizer.save_pretrained), written when the run stops
    summary.json         steps, sizes, the last evaluation and (``test_at_end``) the test split's figures
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from aromni.cosyvoice.data import Clip, load_clip, read_manifest
from aromni.cosyvoice.fsq_tokenizer import FSQSpeechTokenizer, normalize_text, text_to_ids
from aromni.cosyvoice.mel import WHISPER_SAMPLE_RATE
from aromni.errors import ConfigError, InputError
from aromni.training.guard import check_weights
from aromni.training.loop import TrainLoop, Update, find_checkpoint
from aromni.training.recipes.fsq_tokenizer_config import FSQTrainConfig
from aromni.utils.extras import optional
from aromni.utils.io import JSONValue, atomic_write_json

__all__ = ["EXPORT", "FSQRecipe", "FSQTrainer", "ctc_loss", "encode_clips", "score_clips"]

EXPORT = "tokenizer"
Record = dict[str, JSONValue]


def ctc_loss(model: FSQSpeechTokenizer, wavs: Sequence[torch.Tensor], texts: Sequence[str]
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean CTC loss (per target character, as torch's ``"mean"``) of 16 kHz clips against their transcripts,
    and the batch's codes ``[B, F]`` (0 past each length). Clips too short for their text add 0 (zero_infinity)."""
    out = model(*model.features(wavs))
    targets = [torch.tensor(text_to_ids(t, model.config.alphabet), dtype=torch.long) for t in texts]
    logp = out.logits.log_softmax(-1).transpose(0, 1)  # [T, B, V]
    loss = F.ctc_loss(logp, torch.cat(targets), out.logit_lengths, torch.tensor([len(t) for t in targets]),
                      blank=0, zero_infinity=True)
    codes = [c[:n] for c, n in zip(out.codes, out.lengths.tolist())]
    return loss, torch.cat(codes)


def _batches(clips: Sequence[Clip], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``clips`` in batches of similar duration (less padding; each clip's result does not depend on
    its batch)."""
    order = sorted(range(len(clips)), key=lambda i: clips[i].duration_s or 0.0)
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]


def encode_clips(model: FSQSpeechTokenizer, clips: Sequence[Clip], batch_size: int = 32,
                 *, progress: bool = False) -> list[list[int]]:
    """Each clip's FSQ tokens (a list of ints, ``ceil(T / 640)`` at 16 kHz), in the order of ``clips``."""
    out: list[list[int]] = [[] for _ in clips]
    with tqdm(total=len(clips), disable=not progress, desc="fsq encode") as bar:
        for idx in _batches(clips, batch_size):
            codes, lengths = model.encode_16k([load_clip(clips[i], WHISPER_SAMPLE_RATE) for i in idx])
            for i, row, n in zip(idx, codes.tolist(), lengths.tolist()):
                out[i] = row[:n]
            bar.update(len(idx))
    return out


def code_usage(tokens: Sequence[Sequence[int]], codebook_size: int) -> Record:
    """Distinct codes, their share of the codebook, and the perplexity ``exp(H)`` of the code histogram."""
    flat = torch.tensor([t for row in tokens for t in row], dtype=torch.long)
    counts = torch.bincount(flat, minlength=codebook_size).double()
    p = counts[counts > 0] / counts.sum()
    return {"tokens": int(flat.numel()), "codes_used": int((counts > 0).sum()),
            "code_usage": round(float((counts > 0).sum()) / codebook_size, 4),
            "code_perplexity": round(float(torch.exp(-(p * p.log()).sum())), 2)}


@torch.no_grad()
def score_clips(model: FSQSpeechTokenizer, clips: Sequence[Clip], batch_size: int = 32) -> Record:
    """Greedy-CTC CER and WER (jiwer, against the normalised transcripts) and code usage on ``clips``."""
    jiwer = optional("jiwer", extra="eval", feature="character and word error rates")
    hyps: list[str] = ["" for _ in clips]
    tokens: list[list[int]] = [[] for _ in clips]
    for idx in _batches(clips, batch_size):
        wavs = [load_clip(clips[i], WHISPER_SAMPLE_RATE) for i in idx]
        codes, lengths = model.encode_16k(wavs)
        for i, text, row, n in zip(idx, model.transcribe_16k(wavs), codes.tolist(), lengths.tolist()):
            hyps[i], tokens[i] = text, row[:n]
    refs = [normalize_text(clip.transcript, model.config.alphabet) for clip in clips]
    return {"clips": len(clips), "cer": round(float(jiwer.cer(refs, hyps)), 4),
            "wer": round(float(jiwer.wer(refs, hyps)), 4), **code_usage(tokens, model.codebook_size)}


class FSQRecipe:
    """One CTC step per loop step; ``gen`` draws the batches and is the data position in the checkpoint."""

    def __init__(self, cfg: FSQTrainConfig, train_clips: Sequence[Clip], val_clips: Sequence[Clip]):
        self.cfg, self.train_clips, self.val_clips = cfg, list(train_clips), list(val_clips)
        torch.manual_seed(cfg.seed)
        self.model = FSQSpeechTokenizer(cfg.model_config()).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        cfg = self.cfg
        idx = torch.randint(0, len(self.train_clips), (cfg.batch_size,), generator=self.gen).tolist()
        clips = [self.train_clips[i] for i in idx]
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        loss, codes = ctc_loss(self.model, [load_clip(c, WHISPER_SAMPLE_RATE) for c in clips],
                               [c.transcript for c in clips])
        logs.update(loss=loss.item(), batch_codes=float(codes.unique().numel()), lr=cfg.lr_at(step))
        yield Update(loss, self.opt, name="CTC loss", clip=cfg.grad_clip, grad_norm_key="grad_norm")

    def log_fields(self) -> Record:
        return {}

    def evaluate(self, step: int) -> Record:
        return {"kind": "eval", "split": "validation", **score_clips(self.model, self.val_clips,
                                                                     self.cfg.eval_batch_size)}

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"gen": self.gen.get_state(), "n_clips": len(self.train_clips)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor | int]) -> None:
        if int(state["n_clips"]) != len(self.train_clips):
            raise ConfigError(f"the run was trained on {int(state['n_clips'])} clips, {len(self.train_clips)} given",
                              "resume with the same world")
        self.gen.set_state(state["gen"])


class FSQTrainer:
    """One run: :class:`FSQRecipe` on a :class:`TrainLoop` writing to ``out``; :meth:`run` trains (resuming from
    the newest checkpoint), exports ``out/tokenizer`` and scores the test split."""

    def __init__(self, cfg: FSQTrainConfig, out: str | Path, *, progress: bool = True):
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if not cfg.world:
            raise InputError("no world given", "pass --world DIR (a toy world or a folder holding speech.jsonl)")
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        train = read_manifest(cfg.world, "train", max_seconds=cfg.max_seconds,
                              limit=cfg.max_train_clips or None, seed=cfg.seed)
        val = read_manifest(cfg.world, "validation", limit=cfg.val_clips, seed=cfg.seed)
        self.recipe = FSQRecipe(cfg, train, val)
        self.model = self.recipe.model
        self.loop = TrainLoop(self.recipe, cfg.loop_config(self.out, progress=progress, desc="fsq tokenizer"))

    @property
    def step(self) -> int:
        return self.loop.step

    def export(self, path: Path | None = None) -> Path:
        """Write the tokenizer directory (default ``out/tokenizer``, replacing an earlier export)."""
        path = path or self.out / EXPORT
        check_weights(self.model.parameters(), self.step, find_checkpoint(self.out), lr=self.cfg.lr)
        self.model.save_pretrained(path, overwrite=True)
        return path

    def run(self, *, until: int | None = None) -> Record:
        """Train to ``cfg.steps`` (or stop at ``until`` with a checkpoint), export, score the test split when the
        run has ended (all steps, or ``time_limit_min`` reached) and ``test_at_end``; returns the summary (also
        ``out/summary.json``)."""
        last_eval = self.loop.run(until=until)
        if self.loop.ckpt_step() != self.step:
            self.loop.save()
        done = self.step >= self.cfg.steps
        out_of_time = self.cfg.time_limit_min > 0 and self.loop.train_seconds >= self.cfg.time_limit_min * 60
        summary: Record = {"step": self.step, "done": done, "train_minutes": round(self.loop.train_seconds / 60, 2),
                           "parameters": sum(p.numel() for p in self.model.parameters()),
                           "codebook_size": self.model.codebook_size, "train_clips": len(self.recipe.train_clips),
                           "val_clips": len(self.recipe.val_clips), "tokenizer": str(self.export()),
                           "last_eval": last_eval or None}
        if (done or (until is None and out_of_time)) and self.cfg.test_at_end:  # the run ended (not paused)
            test = read_manifest(self.cfg.world, "test")
            summary["test"] = score_clips(self.model.eval(), test, self.cfg.eval_batch_size)
        atomic_write_json(self.out / "summary.json", summary)
        return summary

