"""Training small VQGANs (``aromni vqgan train``) with exact resume.

Output directory::

    checkpoint.pt    model, optimizers, codebook EMA/usage state, step, RNG states (torch.load weights_only)
    metrics.jsonl    one line per log step ("train") and per evaluation ("eval": PSNR, colour error on held-out images)
    train_config.json
    snapshots/step_N/ with keep_snapshots: a tokenizer export at every checkpoint (quality-vs-time studies)
    tokenizer/       the exported tokenizer (config.json + model.safetensors), opened by ``load_tokenizer``

Resuming restores every piece of state that influences later steps (including the data-order generator), so
an interrupted run continued with ``--resume`` produces the same weights as an uninterrupted one.

A loss that becomes nan / inf stops the run (:class:`~aromni.errors.TrainingDivergedError`) before the optimizer
applies it; no checkpoint or export is written from non-finite weights, so ``checkpoint.pt`` stays the last good one.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from aromni.errors import CheckpointError, ConfigError
from aromni.tokenizers.image.codebook import CodebookKeeper
from aromni.tokenizers.image.dataset import to_model_range
from aromni.tokenizers.image.discriminator import PatchDiscriminator, hinge_d_loss, hinge_g_loss
from aromni.tokenizers.image.formats import read_torch_checkpoint
from aromni.tokenizers.image.metrics import color_error, perplexity, psnr, to_uint8
from aromni.tokenizers.image.train_config import TrainConfig
from aromni.tokenizers.image.vqgan import VQGAN
from aromni.training.guard import check_finite, check_weights, existing
from aromni.utils.io import atomic_path, atomic_write_json, atomic_write_text

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
#: Settings that may change when resuming; anything else must match the checkpoint.
RESUMABLE_CHANGES = ("steps", "time_limit_min", "log_every", "eval_every", "save_every", "keep_snapshots",
                     "threads")


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up for ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def split_images(images: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (seeded) hold-out of up to ``val_images`` images, at most a fifth of the set."""
    n_val = min(cfg.val_images, len(images) // 5)
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed + 1))
    return images[perm[n_val:]], images[perm[:n_val]]


class Trainer:
    """Owns the model, optimizers and codebook state of one run; :meth:`run` trains to ``cfg.steps``."""

    def __init__(self, cfg: TrainConfig, images: torch.Tensor, out: str | Path, *, disable_progress: bool = False):
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.out, self.disable_progress = cfg, Path(out), disable_progress
        self.n_images = len(images)
        self.train_set, self.val_set = split_images(images, cfg)
        if len(self.train_set) == 0:
            raise ConfigError("no training images left after the hold-out", "add images or lower val_images")
        torch.manual_seed(cfg.seed)
        self.model = VQGAN(cfg.model_config()).train()
        ema = cfg.codebook_mode == "ema"
        self.model.quantize.embedding.weight.requires_grad_(not ema)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.keeper = CodebookKeeper(self.model.quantize, ema=ema, decay=cfg.ema_decay)
        self.disc: PatchDiscriminator | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if cfg.gan_start >= 0:
            self.disc = PatchDiscriminator(self.model.cfg.out_ch, cfg.disc_channels, cfg.disc_layers)
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # data order and codebook re-seeding
        self.step, self.elapsed, self.cpu_time = 0, 0.0, 0.0  # wall and process-CPU seconds spent training
        self._window: dict[str, float] = {}
        self._window_counts = torch.zeros(self.model.cfg.n_embed)
        self._stop_requested = False

    # ------------------------------------------------------------------ one step
    def _batch(self) -> torch.Tensor:
        idx = torch.randint(0, len(self.train_set), (self.cfg.batch_size,), generator=self.gen)
        x = to_model_range(self.train_set[idx])
        if self.cfg.hflip:
            flip = torch.rand(len(x), generator=self.gen) < 0.5
            x[flip] = x[flip].flip(-1)
        return x

    def _generator_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any, dict[str, float]]:
        cfg = self.cfg
        recon, q = self.model(x)
        l1 = (x - recon).abs().mean()
        l2 = ((x - recon) ** 2).mean()
        loss = cfg.l1_weight * l1 + cfg.l2_weight * l2 + cfg.commitment_weight * q.commitment
        if cfg.codebook_mode == "straight_through":
            loss = loss + cfg.codebook_weight * q.codebook
        terms = {"l1": l1.item(), "l2": l2.item(), "commitment": q.commitment.item(), "codebook": q.codebook.item()}
        if self._gan_active():
            self.disc.requires_grad_(False)  # the generator step must not leave gradients on D
            g = hinge_g_loss(self.disc(recon))
            self.disc.requires_grad_(True)
            loss = loss + cfg.gan_weight * g
            terms["gan_g"] = g.item()
        terms["loss"] = loss.item()
        return loss, recon, q, terms

    def _check(self, values: dict[str, Any]) -> None:
        """Stop the run at a non-finite loss / gradient norm of the step being taken (before its update)."""
        check_finite(values, self.step + 1, existing(self.out / CHECKPOINT), lr=self.cfg.lr, resumable=False)

    def _check_weights(self) -> None:
        params = list(self.model.parameters()) + (list(self.disc.parameters()) if self.disc is not None else [])
        check_weights(params, self.step, existing(self.out / CHECKPOINT), lr=self.cfg.lr, resumable=False)

    def _gan_active(self) -> bool:
        return self.disc is not None and self.step >= self.cfg.gan_start

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        if self.step == 0 and cfg.init_codebook_from_data:
            with torch.no_grad():
                self.keeper.init_from_data(self.model.quantize_images(self._batch()).z, self.gen)
        x = self._batch()
        for group in self.opt.param_groups:
            group["lr"] = lr_at(cfg, self.step)
        loss, recon, q, terms = self._generator_loss(x)
        self.opt.zero_grad(set_to_none=True)
        self._check({"loss": terms["loss"]})
        loss.backward()
        if cfg.grad_clip > 0:
            gn = torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]],
                                                cfg.grad_clip)
            self._check({"gradient norm": gn})
        self.opt.step()
        if self._gan_active():
            self.opt_d.zero_grad(set_to_none=True)
            d = hinge_d_loss(self.disc(x), self.disc(recon.detach()))
            self._check({"discriminator loss": d.item()})
            d.backward()
            self.opt_d.step()
            terms["gan_d"] = d.item()
        counts = self.keeper.observe(q.z, q.codes)
        self._window_counts += counts
        terms["batch_perplexity"] = perplexity(counts)
        if cfg.restart_every > 0 and (self.step + 1) % cfg.restart_every == 0:
            terms["restarted"] = float(self.keeper.restart_dead(q.z, cfg.restart_threshold, self.gen,
                                                                None if self.keeper.ema else self.opt))
        self.step += 1
        return terms

    # ------------------------------------------------------------------ evaluation and logging
    @torch.no_grad()
    def evaluate(self, batch_size: int = 32) -> dict[str, Any]:
        """PSNR / colour error (uint8, after post-processing) and code usage on the held-out images."""
        data, split = (self.val_set, "val") if len(self.val_set) else (self.train_set[:32], "train")
        self.model.eval()
        outs, codes = [], []
        for i in range(0, len(data), batch_size):
            recon, q = self.model(to_model_range(data[i:i + batch_size]))
            outs.append(to_uint8(recon))
            codes.append(q.codes.reshape(-1))
        self.model.train()
        rec = torch.cat(outs)
        used = torch.cat(codes).unique().numel()
        return {"kind": "eval", "split": split, "step": self.step, "images": len(data),
                "psnr": round(psnr(rec, data), 3), "color_error": round(color_error(rec, data), 3),
                "codes_used": used, "code_usage": round(used / self.model.cfg.n_embed, 4)}

    def _log(self, record: dict[str, Any]) -> None:
        record = {**record, "time_s": round(self.elapsed, 2), "cpu_s": round(self.cpu_time, 2)}
        with open(self.out / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _accumulate(self, terms: dict[str, float]) -> None:
        for k, v in terms.items():
            self._window[k] = self._window.get(k, 0.0) + v
        self._window["_n"] = self._window.get("_n", 0.0) + 1

    def _flush_window(self) -> dict[str, Any]:
        n = max(1.0, self._window.pop("_n", 1.0))
        restarted = self._window.pop("restarted", 0.0)
        rec: dict[str, Any] = {"kind": "train", "step": self.step, "lr": lr_at(self.cfg, self.step - 1)}
        rec.update({k: round(v / n, 6) for k, v in sorted(self._window.items())})
        rec.update(perplexity=round(perplexity(self._window_counts), 2), restarted=int(restarted),
                   code_usage=round(float((self._window_counts > 0).float().mean()), 4))
        self._window, self._window_counts = {}, torch.zeros_like(self._window_counts)
        return rec

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {"format": "aromni_vqgan_train", "step": self.step, "elapsed": self.elapsed, "cpu": self.cpu_time,
                "n_images": self.n_images, "config": self.cfg.to_dict(), "model": self.model.state_dict(),
                "opt": self.opt.state_dict(), "codebook": self.keeper.state_dict(),
                "disc": None if self.disc is None else self.disc.state_dict(),
                "opt_d": None if self.opt_d is None else self.opt_d.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state()},
                "window": dict(self._window), "window_counts": self._window_counts}

    def save_checkpoint(self) -> Path:
        self._check_weights()
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(self.state(), tmp)
        return self.out / CHECKPOINT

    @classmethod
    def resume(cls, path: str | Path, images: torch.Tensor, out: str | Path, *,
               changes: Mapping[str, Any] | None = None, disable_progress: bool = False) -> Trainer:
        """Rebuild a run from ``checkpoint.pt``; only :data:`RESUMABLE_CHANGES` may be changed."""
        raw = read_torch_checkpoint(path)
        if not isinstance(raw, dict) or raw.get("format") != "aromni_vqgan_train":
            raise CheckpointError(f"{path}: not an aromni VQGAN training checkpoint")
        changes = dict(changes or {})
        bad = sorted(set(changes) - set(RESUMABLE_CHANGES))
        if bad:
            raise ConfigError(f"cannot change {bad} when resuming", f"only {', '.join(RESUMABLE_CHANGES)} may change")
        cfg = TrainConfig.from_dict({**raw["config"], **changes})
        if raw["n_images"] != len(images):
            raise ConfigError(f"{path}: the run was trained on {raw['n_images']} images, {len(images)} given",
                              "resume with the same --images")
        trainer = cls(cfg, images, out, disable_progress=disable_progress)
        try:
            trainer._restore(raw)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"{path}: damaged VQGAN training state ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:200]})",
                                  "start a new run (--overwrite) or restore the checkpoint") from None
        return trainer

    def _restore(self, raw: dict[str, Any]) -> None:
        self.model.load_state_dict(raw["model"])
        self.opt.load_state_dict(raw["opt"])
        self.keeper.load_state_dict(raw["codebook"])
        if self.disc is not None:
            self.disc.load_state_dict(raw["disc"])
            self.opt_d.load_state_dict(raw["opt_d"])
        torch.set_rng_state(raw["rng"]["torch"])
        self.gen.set_state(raw["rng"]["gen"])
        self.step, self.elapsed, self.cpu_time = int(raw["step"]), float(raw["elapsed"]), float(raw["cpu"])
        self._window = dict(raw["window"])
        self._window_counts = raw["window_counts"].clone()
        truncate_metrics(self.out / METRICS, self.step)

    def export(self, path: Path | None = None) -> Path:
        """Write a tokenizer directory (default ``out/tokenizer``, replacing the previous export)."""
        path = path or self.out / "tokenizer"
        self._check_weights()
        self.model.eval()
        self.model.save_pretrained(path, overwrite=True)
        self.model.train()
        return path

    # ------------------------------------------------------------------ the loop
    def run(self, *, stop_at: int | None = None) -> dict[str, Any]:
        """Train until ``cfg.steps`` (or ``stop_at``, the time limit, or Ctrl-C), then checkpoint and export."""
        cfg, last_eval = self.cfg, None
        end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        atomic_write_json(self.out / "train_config.json", cfg.to_dict())
        bar = tqdm(total=cfg.steps, initial=self.step, desc="vqgan", disable=self.disable_progress
                   or not sys.stderr.isatty(), dynamic_ncols=True)
        t0, c0 = time.monotonic() - self.elapsed, time.process_time() - self.cpu_time
        with self._graceful_interrupt():
            while self.step < end and not self._stop_requested:
                self._accumulate(self.train_step())
                self.elapsed, self.cpu_time = time.monotonic() - t0, time.process_time() - c0
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    rec = self._flush_window()
                    self._log(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", ppl=f"{rec['perplexity']:.0f}")
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    last_eval = self.evaluate()
                    self._log(last_eval)
                if self.step % cfg.save_every == 0:
                    self.save_checkpoint()
                    self.export()  # the tokenizer directory always matches the latest checkpoint
                    if cfg.keep_snapshots:
                        self.export(self.out / "snapshots" / f"step_{self.step:06d}")
                if cfg.time_limit_min > 0 and self.elapsed >= cfg.time_limit_min * 60:
                    break
        bar.close()
        self.save_checkpoint()
        tok = self.export()
        return {"step": self.step, "done": self.step >= cfg.steps, "elapsed_s": round(self.elapsed, 1),
                "cpu_s": round(self.cpu_time, 1),
                "tokenizer": str(tok), "last_eval": last_eval}

    @contextlib.contextmanager
    def _graceful_interrupt(self) -> Iterator[None]:
        """First Ctrl-C: finish the current step, save, stop. Second Ctrl-C: stop at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            print("\nstopping after this step (Ctrl-C again to abort without saving)", file=sys.stderr)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint's step (they will be produced again)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))
