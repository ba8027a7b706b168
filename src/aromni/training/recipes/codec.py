"""Training the streaming codec on :class:`~aromni.training.loop.TrainLoop`:
``aromni codec train --audio DIR_OR_GLOB --out DIR [--config yaml] [k=v ...]``.

Losses: multi-resolution log-mel L1 + multi-resolution STFT (spectral convergence + log magnitude) +
commitment; the codebook follows an EMA after a k-means initialisation on the encoder outputs of the first
batches, and codes unused for ``dead_code_steps`` updates are restarted. An optional GAN phase (multi-period +
multi-resolution discriminators, hinge + feature matching) starts at ``gan_start_step``: each of its steps
updates the discriminators first, then the codec.

Output directory::

    metrics.jsonl          one JSON object per log/eval event (losses, usage %, perplexity, steps/s, mel L1)
    checkpoints/step-N/    the loop's checkpoints (model.safetensors + trainer_state.pt + trainer.json), written atomically
    tokenizer/             the exported codec (config.json "type": "aromni_codec" + model.safetensors)
    summary.json           final figures

Resuming (``--resume``) restores model, optimisers, step, RNG and data position, so the resumed run is the run
that was interrupted, to the bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from aromni.errors import InputError
from aromni.tokenizers.speech.codec.data import ClipSet, list_audio_files, split_files
from aromni.tokenizers.speech.codec.discriminators import CodecDiscriminator
from aromni.tokenizers.speech.codec.losses import (
    MultiResolutionSpectralLoss,
)
from aromni.tokenizers.speech.codec.model import StreamingCodec
from aromni.tokenizers.speech.mel import LogMel, MelConfig
from aromni.training.checkpoint import CHECKPOINTS
from aromni.training.guard import check_weights
from aromni.training.loop import LEGACY_DIR, LoopConfig, TrainLoop, Update, find_checkpoint
from aromni.training.recipes.codec_config import CodecTrainConfig, load_train_config, lr_at, resume_config
from aromni.training.recipes.gan_step import adversarial_step
from aromni.training.run_dir import prepare_run_dir
from aromni.utils.io import atomic_write_json

__all__ = ["CodecRecipe", "CodecTrainConfig", "CodecTrainer", "evaluate", "load_train_config", "lr_at",
           "resume_config", "train_codec"]

Summary = dict[str, float | int | str | None]


@torch.no_grad()
def evaluate(model: StreamingCodec, clips: list[torch.Tensor]) -> dict[str, float]:
    """Held-out figures through the inference path (encode -> decode): 80-bin log-mel L1, code usage."""
    was_training = model.training
    model.eval()
    mel = LogMel(MelConfig(sample_rate=model.sample_rate))
    l1, codes_seen = [], set()
    for clip in clips:
        codes = model.encode(clip[None])
        rec = model.decode(codes)[:, : clip.numel()]
        l1.append(float((mel(rec) - mel(clip[None])).abs().mean()))
        codes_seen.update(codes.flatten().tolist())
    model.train(was_training)
    return {"val_mel_l1": sum(l1) / max(1, len(l1)), "val_codes_used": len(codes_seen)}


class CodecRecipe:
    """The codec's step: see the module docstring. ``data_gen`` (crops) is the data position."""

    def __init__(self, cfg: CodecTrainConfig, train: ClipSet, val_clips: list[torch.Tensor]):
        self.cfg, self.train_set, self.val_clips = cfg, train, val_clips
        torch.manual_seed(cfg.seed)
        self.model = StreamingCodec(cfg.codec_config(), dead_code_steps=cfg.dead_code_steps,
                                    ema_decay=cfg.ema_decay).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.spectral_loss = MultiResolutionSpectralLoss(self.model.sample_rate)
        self.disc: CodecDiscriminator | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if cfg.gan_start_step is not None:
            self.disc = CodecDiscriminator(period_width=cfg.disc_period_width).train()
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model} | ({"disc": self.disc} if self.disc is not None else {})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt} | ({"opt_d": self.opt_d} if self.opt_d is not None else {})

    def _batch(self) -> torch.Tensor:
        return self.train_set.batch(self.cfg.batch_size, self.cfg.segment_frames * self.model.hop_length,
                                    self.data_gen)

    @torch.no_grad()
    def kmeans_init(self) -> None:
        """Seed the codebook by k-means over the encoder outputs of the first ``kmeans_batches`` batches."""
        vecs = torch.cat([self.model.encoder(self.model._pad_to_frames(self._batch())).flatten(0, 1)
                          for _ in range(self.cfg.kmeans_batches)])
        gen = torch.Generator().manual_seed(self.cfg.seed + 2)
        self.model.quantizer.init_codebook(vecs, self.cfg.kmeans_iters, gen)

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        cfg = self.cfg
        if not bool(self.model.quantizer.inited):
            self.kmeans_init()
        for g in self.opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        late = step >= cfg.dead_code_late_after
        self.model.quantizer.dead_code_steps = cfg.dead_code_steps_late if late else cfg.dead_code_steps
        out = self.model(self._batch())
        mel, stft = self.spectral_loss(out.audio, out.target)
        loss = cfg.mel_weight * mel + cfg.stft_weight * stft + cfg.commit_weight * out.quant.commit_loss
        logs.update(mel=mel.item(), stft=stft.item(), commit=out.quant.commit_loss.item())
        if self.disc is not None and step >= cfg.gan_start_step:
            fake, real = out.audio[: cfg.gan_batch], out.target[: cfg.gan_batch]
            loss = loss + (yield from adversarial_step(self.disc, self.opt_d, fake, real, logs,
                                                       adv_weight=cfg.adv_weight, fm_weight=cfg.fm_weight))
        logs.update(loss=loss.item(), perplexity=out.quant.perplexity, restarted=out.quant.restarted,
                    lr=self.opt.param_groups[0]["lr"])
        yield Update(loss, self.opt, clip=cfg.grad_clip, grad_norm_key="grad_norm")

    def log_fields(self) -> dict[str, float]:
        return {"usage": self.model.quantizer.usage(self.cfg.usage_window)}

    def evaluate(self, step: int) -> dict[str, float]:
        return evaluate(self.model, self.val_clips)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"data_gen": self.data_gen.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.data_gen.set_state(state["data_gen"])


class CodecTrainer:
    """One codec run: :class:`CodecRecipe` on a :class:`TrainLoop` writing to ``out`` (``None``: steps only)."""

    def __init__(self, cfg: CodecTrainConfig, train: ClipSet, val: ClipSet | None, out: Path | None, *,
                 progress: bool = True):
        self.cfg, self.train_set, self.out = cfg, train, None if out is None else Path(out)
        sr = cfg.codec_config().sample_rate
        self.val_clips = [c[: int(cfg.val_max_seconds * sr)] for c in (val.clips if val else [])]
        self.recipe = CodecRecipe(cfg, train, self.val_clips)
        self.model = self.recipe.model
        self.loop = TrainLoop(self.recipe, LoopConfig(
            out=self.out, steps=cfg.steps, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
            eval_every=cfg.eval_every if self.val_clips else 0, progress=progress, desc="codec", lr=cfg.lr,
            max_seconds=(cfg.max_minutes or 0.0) * 60, config=cfg.to_dict()))

    @property
    def step(self) -> int:
        return self.loop.step

    def kmeans_init(self) -> None:
        self.recipe.kmeans_init()

    def train_step(self) -> dict[str, float]:
        return self.loop.train_step()

    def load_checkpoint(self) -> None:
        path = self.loop.checkpoint_path()
        if path is None:
            raise InputError(f"{self.out}: no checkpoint to resume from", "drop --resume to start a new run")
        self.loop.load(path)

    def run(self, until: int | None = None) -> Summary:
        """Train from the checkpoint (if any) to ``cfg.steps`` (or stop at step ``until`` with a checkpoint, as an
        interrupted run would); returns the summary written to ``summary.json``."""
        self.loop.run(until=until)
        return self.finish()

    def finish(self) -> Summary:
        """Export the tokenizer and write ``summary.json``."""
        check_weights(self.model.parameters(), self.step, find_checkpoint(self.out), lr=self.cfg.lr)
        self.model.eval()
        self.model.save_pretrained(self.out / "tokenizer", overwrite=True)
        self.model.train()
        summary: Summary = {"step": self.step, "train_minutes": self.loop.train_seconds / 60,
                            "parameters": sum(p.numel() for p in self.model.parameters()),
                            "codebook_usage": self.model.quantizer.usage(self.cfg.usage_window),
                            "train_files": len(self.train_set), "train_hours": self.train_set.seconds / 3600,
                            "val_files": len(self.val_clips), "tokenizer": str(self.out / "tokenizer")}
        if self.val_clips:
            summary.update(evaluate(self.model, self.val_clips))
        atomic_write_json(self.out / "summary.json", summary)
        return summary


def train_codec(cfg: CodecTrainConfig, audio: str, out: str | Path, *, resume: bool = False,
                overwrite: bool = False, progress: bool = True) -> Summary:
    """Train (or resume: ``cfg`` from :func:`resume_config`) a codec on the files matched by ``audio``."""
    out = Path(out)
    prepare_run_dir(out, resume=resume, overwrite=overwrite,
                    run_files=("metrics.jsonl", "summary.json", "train_config.json"),
                    run_dirs=(CHECKPOINTS, LEGACY_DIR, "tokenizer"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    sr = cfg.codec_config().sample_rate
    train_files, val_files = split_files(list_audio_files(audio), cfg.val_files)
    trainer = CodecTrainer(cfg, ClipSet(train_files, sr, max_seconds=cfg.max_seconds, progress=progress),
                           ClipSet(val_files, sr, max_seconds=cfg.max_seconds, progress=progress) if val_files else None,
                           out, progress=progress)
    if not resume:
        atomic_write_json(out / "train_config.json", cfg.to_dict())
    return trainer.run()
