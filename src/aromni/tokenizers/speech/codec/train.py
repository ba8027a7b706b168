"""Training the streaming codec: ``aromni codec train --audio DIR_OR_GLOB --out DIR [--config yaml] [k=v ...]``.

Losses: multi-resolution log-mel L1 + multi-resolution STFT (spectral convergence + log magnitude) +
commitment; the codebook follows an EMA after a k-means initialisation on the encoder outputs of the first
batches, and codes unused for ``dead_code_steps`` updates are restarted. An optional GAN phase (multi-period +
multi-resolution discriminators, hinge + feature matching) starts at ``gan_start_step``.

Output directory::

    metrics.jsonl          one JSON object per log/eval event (losses, usage %, perplexity, steps/s, mel L1)
    checkpoint/            latest checkpoint: model.safetensors + trainer.pt (optimisers, RNG, data position)
                           + trainer.json (step, config); written atomically
    tokenizer/             the exported codec (config.json "type": "aromni_codec" + model.safetensors)
    summary.json           final figures

A loss or gradient norm that becomes nan / inf stops the run (:class:`~aromni.errors.TrainingDivergedError`) before
the update; no checkpoint or export is written from non-finite weights.

Resuming (``--resume``) restores model, optimisers, step, RNG and data position, so the resumed run is the run
that was interrupted, to the bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.tokenizers.speech.codec.config import CodecConfig
from aromni.tokenizers.speech.codec.data import ClipSet, list_audio_files, split_files
from aromni.tokenizers.speech.codec.discriminators import CodecDiscriminator
from aromni.tokenizers.speech.codec.losses import (
    MultiResolutionSpectralLoss,
    discriminator_hinge,
    feature_matching,
    generator_hinge,
)
from aromni.tokenizers.speech.codec.model import StreamingCodec
from aromni.tokenizers.speech.mel import LogMel, MelConfig
from aromni.training.guard import check_finite, check_weights, existing
from aromni.utils.config import apply_overrides, dataclass_from_dict, yaml_with_overrides
from aromni.utils.io import atomic_dir, atomic_write_json, atomic_write_text, read_json


@dataclass
class CodecTrainConfig:
    """Everything a codec training run depends on (saved in the checkpoint)."""

    preset: str = "toy"
    codec: dict[str, Any] = field(default_factory=dict)  # overrides of CodecConfig fields
    steps: int = 3000
    batch_size: int = 16
    segment_frames: int = 48  # crop length in code frames (48 = 1.2 s at 40 Hz)
    lr: float = 1e-3
    lr_min_ratio: float = 0.1  # cosine decay to lr * this
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    commit_weight: float = 1.0
    kmeans_batches: int = 8  # batches whose encoder outputs seed k-means
    kmeans_iters: int = 20
    dead_code_steps: int = 10  # restart codes unused for this many updates (aggressive: usage collapses otherwise)
    dead_code_steps_late: int = 40  # ...relaxed once the encoder has settled, to reduce code churn
    dead_code_late_after: int = 300  # step at which dead_code_steps_late takes over
    ema_decay: float = 0.95  # codebook EMA; 0.99 trails the encoder's early drift and usage collapses
    usage_window: int = 50  # updates over which "codebook usage %" is counted
    gan_start_step: int | None = None  # None: no GAN phase
    adv_weight: float = 0.05
    fm_weight: float = 0.1
    disc_lr: float = 2e-4
    disc_period_width: int = 8
    gan_batch: int = 4  # the discriminators see only this many items of each batch (they cost most of a GAN step)
    val_files: int = 16
    val_max_seconds: float = 10.0
    max_seconds: float = 60.0  # longest training file accepted
    log_every: int = 10
    eval_every: int = 250
    checkpoint_every: int = 250
    max_minutes: float | None = None  # stop (checkpoint + export) after this much training time
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (None: leave as is)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # YAML gives lists
        ints = ("steps", "batch_size", "segment_frames", "kmeans_batches", "log_every", "eval_every",
                "checkpoint_every", "gan_batch")
        for name in ints:
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"codec train config: {name} must be positive")
        if self.lr <= 0 or not 0 <= self.lr_min_ratio <= 1:
            raise ConfigError("codec train config: lr must be > 0 and lr_min_ratio in [0, 1]")
        self.codec_config()  # validate early

    def codec_config(self) -> CodecConfig:
        return CodecConfig.preset(self.preset, **self.codec)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecTrainConfig:
        return dataclass_from_dict(cls, d, "codec train config", noun="keys")


def load_train_config(path: str | Path | None, overrides: list[str]) -> CodecTrainConfig:
    """YAML file (optional) + ``key=value`` overrides (dotted keys for nesting: ``codec.dec_dim=256``)."""
    return CodecTrainConfig.from_dict(yaml_with_overrides(path, overrides))


def resume_config(out: str | Path, overrides: list[str]) -> CodecTrainConfig:
    """The settings of the run in ``out`` (from its checkpoint) with ``key=value`` changes applied, e.g.
    ``steps=3000`` to extend it or ``gan_start_step=1500`` to add a GAN phase."""
    meta = Path(out) / "checkpoint" / "trainer.json"
    if not meta.is_file():
        raise InputError(f"{Path(out)}: no checkpoint to resume from", "drop --resume to start a new run")
    return CodecTrainConfig.from_dict(apply_overrides(read_json(meta)["config"], overrides))


def lr_at(step: int, cfg: CodecTrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr * lr_min_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


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


class CodecTrainer:
    """One training run; see the module docstring. ``run()`` trains to ``cfg.steps`` (or ``max_minutes``)."""

    def __init__(self, cfg: CodecTrainConfig, train: ClipSet, val: ClipSet | None, out: Path, *,
                 progress: bool = True):
        self.cfg, self.train_set, self.out, self.progress = cfg, train, out, progress
        self.val_clips = [c[: int(cfg.val_max_seconds * cfg.codec_config().sample_rate)] for c in (val.clips if val else [])]
        torch.manual_seed(cfg.seed)
        self.model = StreamingCodec(cfg.codec_config(), dead_code_steps=cfg.dead_code_steps,
                                    ema_decay=cfg.ema_decay).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.spectral_loss = MultiResolutionSpectralLoss(self.model.sample_rate)
        self.disc = self.opt_d = None
        if cfg.gan_start_step is not None:
            self.disc = CodecDiscriminator(period_width=cfg.disc_period_width).train()
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.train_seconds = 0.0

    # --- checkpoints --------------------------------------------------------------------------------------------
    def _last_checkpoint(self) -> Path | None:
        return existing(self.out / "checkpoint") if self.out is not None else None

    def _check(self, values: dict[str, Any]) -> None:
        """Stop the run at a non-finite loss / gradient norm of the step being taken (before its update)."""
        check_finite(values, self.step + 1, self._last_checkpoint(), lr=self.cfg.lr)

    def _check_weights(self) -> None:
        params = list(self.model.parameters()) + (list(self.disc.parameters()) if self.disc is not None else [])
        check_weights(params, self.step, self._last_checkpoint(), lr=self.cfg.lr)

    def save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        self._check_weights()

        state = {"opt": self.opt.state_dict(), "data_gen": self.data_gen.get_state(),
                 "torch_rng": torch.get_rng_state()}
        if self.disc is not None:
            state.update(disc=self.disc.state_dict(), opt_d=self.opt_d.state_dict())
        with atomic_dir(self.out / "checkpoint", overwrite=True) as tmp:
            save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(tmp / "model.safetensors"))
            torch.save(state, tmp / "trainer.pt")
            atomic_write_json(tmp / "trainer.json", {"step": self.step, "train_seconds": self.train_seconds,
                                                     "config": self.cfg.to_dict()})

    def load_checkpoint(self) -> None:
        from safetensors.torch import load_file

        ckpt = self.out / "checkpoint"
        meta = read_json(ckpt / "trainer.json")
        try:
            weights = load_file(str(ckpt / "model.safetensors"))
            own = self.model.state_dict()
            bad = next((k for k, v in weights.items()
                        if k in own and own[k].is_floating_point() and not v.is_floating_point()), None)
            if bad is not None:
                raise CheckpointError(f"{ckpt / 'model.safetensors'}: tensor {bad!r} is stored as "
                                      f"{weights[bad].dtype}, expected a floating-point tensor",
                                      "the checkpoint is corrupt; start again with --overwrite")
            self.model.load_state_dict(weights, strict=True)
            state = torch.load(ckpt / "trainer.pt", weights_only=True)
            self.opt.load_state_dict(state["opt"])
            if self.disc is not None and "disc" in state:
                self.disc.load_state_dict(state["disc"])
                self.opt_d.load_state_dict(state["opt_d"])
            self.data_gen.set_state(state["data_gen"])
            torch.set_rng_state(state["torch_rng"])
            self.step, self.train_seconds = int(meta["step"]), float(meta.get("train_seconds", 0.0))
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - UnpicklingError, SafetensorError, RuntimeError (shapes), OSError
            raise CheckpointError(f"{ckpt}: cannot resume ({type(e).__name__}: {' '.join(str(e).split())[:200]})",
                                  "the checkpoint holds arbitrary objects, is corrupt, or the config changed") from None

    # --- training -----------------------------------------------------------------------------------------------
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

    def train_step(self) -> dict[str, float]:
        cfg, step = self.cfg, self.step
        for g in self.opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        late = step >= cfg.dead_code_late_after
        self.model.quantizer.dead_code_steps = cfg.dead_code_steps_late if late else cfg.dead_code_steps
        out = self.model(self._batch())
        mel, stft = self.spectral_loss(out.audio, out.target)
        loss = cfg.mel_weight * mel + cfg.stft_weight * stft + cfg.commit_weight * out.quant.commit_loss
        logs = {"mel": mel.item(), "stft": stft.item(), "commit": out.quant.commit_loss.item()}
        if self.disc is not None and step >= cfg.gan_start_step:
            adv, fm = self._gan_terms(out.audio[: cfg.gan_batch], out.target[: cfg.gan_batch], logs)
            loss = loss + cfg.adv_weight * adv + cfg.fm_weight * fm
        self.opt.zero_grad(set_to_none=True)
        self._check({"loss": loss.item()})
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self._check({"gradient norm": gnorm})
        self.opt.step()
        logs.update(loss=loss.item(), grad_norm=gnorm.item(), perplexity=out.quant.perplexity,
                    restarted=out.quant.restarted, lr=self.opt.param_groups[0]["lr"])
        return logs

    def _gan_terms(self, fake: torch.Tensor, real: torch.Tensor,
                   logs: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """One discriminator update, then the generator's adversarial and feature-matching terms."""
        d_real, _ = self.disc(real)
        d_fake, _ = self.disc(fake.detach())
        loss_d = discriminator_hinge(d_real, d_fake)
        self._check({"discriminator loss": loss_d.item()})
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        with torch.no_grad():
            _, f_real = self.disc(real)
        g_fake, f_fake = self.disc(fake)
        adv, fm = generator_hinge(g_fake), feature_matching(f_real, f_fake)
        logs.update(disc=loss_d.item(), adv=adv.item(), fm=fm.item())
        return adv, fm

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, until: int | None = None) -> dict[str, Any]:
        """Train from ``self.step`` to ``cfg.steps`` (or stop at step ``until`` with a checkpoint, as an interrupted
        run would); returns the summary written to ``summary.json``."""
        cfg, q = self.cfg, self.model.quantizer
        until = cfg.steps if until is None else min(until, cfg.steps)
        if not bool(q.inited):
            self.kmeans_init()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="codec", disable=not self.progress, dynamic_ncols=True)
        acc: dict[str, float] = {}
        t_log, steps_since = time.perf_counter(), 0
        while self.step < until:
            t0 = time.perf_counter()
            logs = self.train_step()
            self.train_seconds += time.perf_counter() - t0
            self.step += 1
            steps_since += 1
            for k, v in logs.items():
                acc[k] = acc.get(k, 0.0) + v
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                rec = {k: (v if k == "restarted" else v / steps_since) for k, v in acc.items()}
                rec.update(step=self.step, usage=q.usage(cfg.usage_window), steps_per_s=steps_since / (now - t_log),
                           train_minutes=self.train_seconds / 60)
                self._log(rec)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", mel=f"{rec['mel']:.3f}", usage=f"{rec['usage']:.0%}")
                acc, t_log, steps_since = {}, now, 0
            if self.val_clips and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                self._log({"step": self.step, **evaluate(self.model, self.val_clips)})
            out_of_time = cfg.max_minutes is not None and self.train_seconds >= cfg.max_minutes * 60
            if self.step % cfg.checkpoint_every == 0 or self.step == until or out_of_time:
                self.save_checkpoint()
            if out_of_time:
                break
        bar.close()
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Export the tokenizer and write ``summary.json``."""
        self._check_weights()
        self.model.eval()
        self.model.save_pretrained(self.out / "tokenizer", overwrite=True)
        summary = {"step": self.step, "train_minutes": self.train_seconds / 60,
                   "parameters": sum(p.numel() for p in self.model.parameters()),
                   "codebook_usage": self.model.quantizer.usage(self.cfg.usage_window),
                   "train_files": len(self.train_set), "train_hours": self.train_set.seconds / 3600,
                   "val_files": len(self.val_clips), "tokenizer": str(self.out / "tokenizer")}
        if self.val_clips:
            summary.update(evaluate(self.model, self.val_clips))
        atomic_write_json(self.out / "summary.json", summary)
        return summary


def _prepare_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    has_ckpt = (out / "checkpoint" / "trainer.json").is_file()
    if resume:
        if not has_ckpt:
            raise InputError(f"{out}: no checkpoint to resume from", "drop --resume to start a new run")
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"{out} already exists and is not empty",
                             "pass --resume to continue its run or --overwrite to start over")
        for name in ("metrics.jsonl", "summary.json", "train_config.json"):
            (out / name).unlink(missing_ok=True)
        for name in ("checkpoint", "tokenizer"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint being resumed (they will be logged again)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def train_codec(cfg: CodecTrainConfig, audio: str, out: str | Path, *, resume: bool = False,
                overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or resume: ``cfg`` from :func:`resume_config`) a codec on the files matched by ``audio``."""
    out = Path(out)
    _prepare_out(out, resume=resume, overwrite=overwrite)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    sr = cfg.codec_config().sample_rate
    train_files, val_files = split_files(list_audio_files(audio), cfg.val_files)
    trainer = CodecTrainer(cfg, ClipSet(train_files, sr, max_seconds=cfg.max_seconds, progress=progress),
                           ClipSet(val_files, sr, max_seconds=cfg.max_seconds, progress=progress) if val_files else None,
                           out, progress=progress)
    if resume:
        trainer.load_checkpoint()
        _truncate_metrics(out / "metrics.jsonl", trainer.step)
    else:
        atomic_write_json(out / "train_config.json", cfg.to_dict())
    return trainer.run()
