"""Training small VQGANs (``aromni vqgan train``) on :class:`~aromni.training.loop.TrainLoop`, with exact resume.

Output directory::

    checkpoints/step-N/  the loop's checkpoints (the package's one format): model.safetensors (VQGAN,
                     discriminator), trainer_state.pt (optimizers, codebook EMA/usage state, step, RNG, the
                     data-order generator), trainer.json (step, config)
    metrics.jsonl    one line per log step ("train") and per evaluation ("eval": PSNR, colour error on held-out images)
    train_config.json
    snapshots/step_N/ with keep_snapshots: a tokenizer export at every checkpoint (quality-vs-time studies)
    tokenizer/       the exported tokenizer (config.json + model.safetensors), opened by ``load_tokenizer``

One step: the generator update (L1 + L2 + commitment (+ codebook) (+ patch colour / foreground L1 when
weighted) (+ adversarial once ``gan_start`` is reached)),
then the discriminator's (hinge), then the codebook keeper (EMA, dead-code restarts).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import ConfigError
from aromni.tokenizers.image.codebook import CodebookKeeper
from aromni.tokenizers.image.dataset import to_model_range
from aromni.tokenizers.image.discriminator import PatchDiscriminator, hinge_d_loss, hinge_g_loss
from aromni.tokenizers.image.metrics import color_error, perplexity, psnr, to_uint8
from aromni.tokenizers.image.vqgan import VQGAN
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.image_data import accuracy, render_set
from aromni.training.guard import check_weights
from aromni.training.loop import LoopConfig, TrainLoop, Update, find_checkpoint
from aromni.training.recipes.vqgan_config import VQGANTrainConfig
from aromni.utils.io import atomic_write_json, read_json

METRICS = "metrics.jsonl"
#: Settings that may change when resuming; anything else must match the checkpoint.
RESUMABLE_CHANGES = ("steps", "time_limit_min", "log_every", "eval_every", "save_every", "keep_snapshots",
                     "threads", "judge_images")
Record = dict[str, float | int | str | None]


def lr_at(cfg: VQGANTrainConfig, step: int) -> float:
    """Linear warm-up for ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def patch_color_loss(x: torch.Tensor, recon: torch.Tensor, patch: int) -> torch.Tensor:
    """Mean |difference| of the per-patch mean colours: ``x, recon [B, 3, H, W]`` -> scalar.

    Averaging over ``patch``×``patch`` pixels first removes texture, so the term only asks for the right
    colour in the right place, which the pixel losses weigh by area and so neglect for small shapes."""
    return (F.avg_pool2d(x, patch) - F.avg_pool2d(recon, patch)).abs().mean()


def foreground_mask(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``x [B, 3, H, W]`` -> float mask ``[B, 1, H, W]``: 1 where any channel differs by more than
    ``threshold`` from the image's median border colour (the background of a toy world render; its shapes never
    reach the border)."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)  # [B, 3, 4W]
    background = border.median(dim=-1).values[..., None, None]  # [B, 3, 1, 1]
    return ((x - background).abs().amax(dim=1, keepdim=True) > threshold).float()


def foreground_l1(x: torch.Tensor, recon: torch.Tensor, threshold: float) -> torch.Tensor:
    """L1 over the foreground pixels of ``x`` only (:func:`foreground_mask`), averaged per image over its
    foreground so a small shape counts as much as a big one; images without foreground add 0."""
    mask = foreground_mask(x, threshold)
    per_image = ((x - recon).abs() * mask).sum(dim=(1, 2, 3)) / (3 * mask.sum(dim=(1, 2, 3))).clamp(min=1.0)
    return per_image.mean()


def split_images(images: torch.Tensor, cfg: VQGANTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (seeded) hold-out of up to ``val_images`` images, at most a fifth of the set."""
    n_val = min(cfg.val_images, len(images) // 5)
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed + 1))
    return images[perm[n_val:]], images[perm[:n_val]]


class VQGANRecipe:
    """The VQGAN's step; see the module docstring. ``gen`` (data order, codebook re-seeding) is the data position."""

    def __init__(self, cfg: VQGANTrainConfig, train_set: torch.Tensor, val_set: torch.Tensor):
        self.cfg, self.train_set, self.val_set = cfg, train_set, val_set
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
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.window_counts = torch.zeros(self.model.cfg.n_embed)  # code usage over the log window
        self.judge: ImageJudge | None = None
        self.judge_set: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
        if cfg.judge_images > 0:
            # Fresh renders (not the training images), seeded so every evaluation of a run sees the same set.
            self.judge = ImageJudge.load()
            self.judge_set = render_set(cfg.judge_images, f"vqgan-judge-{cfg.seed}")

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model} | ({"disc": self.disc} if self.disc is not None else {})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt} | ({"opt_d": self.opt_d} if self.opt_d is not None else {})

    def _batch(self) -> torch.Tensor:
        idx = torch.randint(0, len(self.train_set), (self.cfg.batch_size,), generator=self.gen)
        x = to_model_range(self.train_set[idx])
        if self.cfg.hflip:
            flip = torch.rand(len(x), generator=self.gen) < 0.5
            x[flip] = x[flip].flip(-1)
        return x

    def _gan_active(self, step: int) -> bool:
        return self.disc is not None and step >= self.cfg.gan_start

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        cfg = self.cfg
        if step == 0 and cfg.init_codebook_from_data:
            with torch.no_grad():
                self.keeper.init_from_data(self.model.quantize_images(self._batch()).z, self.gen)
        x = self._batch()
        for group in self.opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        recon, q = self.model(x)
        l1, l2 = (x - recon).abs().mean(), ((x - recon) ** 2).mean()
        loss = cfg.l1_weight * l1 + cfg.l2_weight * l2 + cfg.commitment_weight * q.commitment
        if cfg.color_weight > 0:
            color = patch_color_loss(x, recon, cfg.color_patch)
            loss = loss + cfg.color_weight * color
            logs["color"] = color.item()
        if cfg.fg_weight > 0:
            fg = foreground_l1(x, recon, cfg.fg_threshold)
            loss = loss + cfg.fg_weight * fg
            logs["fg_l1"] = fg.item()
        if cfg.codebook_mode == "straight_through":
            loss = loss + cfg.codebook_weight * q.codebook
        logs.update(l1=l1.item(), l2=l2.item(), commitment=q.commitment.item(), codebook=q.codebook.item())
        if self._gan_active(step):
            self.disc.requires_grad_(False)  # the generator step must not leave gradients on D
            g = hinge_g_loss(self.disc(recon))
            self.disc.requires_grad_(True)
            loss = loss + cfg.gan_weight * g
            logs["gan_g"] = g.item()
        logs["loss"] = loss.item()
        yield Update(loss, self.opt, clip=cfg.grad_clip)
        if self._gan_active(step):
            d = hinge_d_loss(self.disc(x), self.disc(recon.detach()))
            logs["gan_d"] = d.item()
            yield Update(d, self.opt_d, name="discriminator loss")
        counts = self.keeper.observe(q.z, q.codes)
        self.window_counts += counts
        logs["batch_perplexity"] = perplexity(counts)
        if cfg.restart_every > 0 and (step + 1) % cfg.restart_every == 0:
            logs["restarted"] = float(self.keeper.restart_dead(q.z, cfg.restart_threshold, self.gen,
                                                               None if self.keeper.ema else self.opt))

    def log_fields(self) -> dict[str, float]:
        fields = {"perplexity": round(perplexity(self.window_counts), 2),
                  "code_usage": round(float((self.window_counts > 0).float().mean()), 4)}
        self.window_counts = torch.zeros_like(self.window_counts)
        return fields

    @torch.no_grad()
    def evaluate(self, step: int, batch_size: int = 32) -> Record:
        """PSNR / colour error (uint8, after post-processing) and code usage on the held-out images, plus the
        image judge's accuracies (``judge_<attribute>``, ``judge_all``) when ``judge_images`` > 0."""
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
        record: Record = {"kind": "eval", "split": split, "images": len(data),
                          "psnr": round(psnr(rec, data), 3), "color_error": round(color_error(rec, data), 3),
                          "codes_used": used, "code_usage": round(used / self.model.cfg.n_embed, 4)}
        if self.judge is not None and self.judge_set is not None:
            record.update({f"judge_{k}": v for k, v in self.judge_accuracy(batch_size).items()})
        return record

    @torch.no_grad()
    def judge_accuracy(self, batch_size: int = 32) -> dict[str, float]:
        """The image judge's per-attribute and all-five accuracy on reconstructions of the judge set."""
        images, labels = self.judge_set
        self.model.eval()
        recon = torch.cat([to_uint8(self.model(to_model_range(images[i:i + batch_size]))[0])
                           for i in range(0, len(images), batch_size)])
        self.model.train()
        return accuracy(self.judge.model, recon, labels)

    def state_dict(self) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        return {"gen": self.gen.get_state(), "codebook": self.keeper.state_dict(), "window_counts": self.window_counts}

    def load_state_dict(self, state: Mapping[str, torch.Tensor | Mapping[str, torch.Tensor]]) -> None:
        self.gen.set_state(state["gen"])
        self.keeper.load_state_dict(state["codebook"])
        self.window_counts = state["window_counts"].clone()


class VQGANTrainer:
    """One run: :class:`VQGANRecipe` on a :class:`TrainLoop` writing to ``out``; :meth:`run` trains to
    ``cfg.steps`` (resuming from the newest ``out/checkpoints/step-N``), then checkpoints and exports."""

    def __init__(self, cfg: VQGANTrainConfig, images: torch.Tensor, out: str | Path, *,
                 disable_progress: bool = False):
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.out = cfg, Path(out)
        self.n_images = len(images)
        self.train_set, self.val_set = split_images(images, cfg)
        if len(self.train_set) == 0:
            raise ConfigError("no training images left after the hold-out", "add images or lower val_images")
        self.recipe = VQGANRecipe(cfg, self.train_set, self.val_set)
        self.model = self.recipe.model
        self.loop = TrainLoop(self.recipe, LoopConfig(
            out=self.out, steps=cfg.steps, checkpoint_every=cfg.save_every, log_every=cfg.log_every,
            eval_every=cfg.eval_every, progress=not disable_progress, desc="vqgan", lr=cfg.lr, resumable=False,
            max_seconds=cfg.time_limit_min * 60, config={**cfg.to_dict(), "n_images": self.n_images}),
            after_save=self._after_save)

    @property
    def step(self) -> int:
        return self.loop.step

    def train_step(self) -> dict[str, float]:
        return self.loop.train_step()

    @classmethod
    def resume(cls, path: str | Path, images: torch.Tensor, out: str | Path, *,
               changes: Mapping[str, float | int | bool] | None = None,
               disable_progress: bool = False) -> VQGANTrainer:
        """Rebuild a run from its checkpoint directory; only :data:`RESUMABLE_CHANGES` may be changed."""
        saved = dict(read_json(Path(path) / "trainer.json")["config"])
        n_images = saved.pop("n_images")
        changes = dict(changes or {})
        bad = sorted(set(changes) - set(RESUMABLE_CHANGES))
        if bad:
            raise ConfigError(f"cannot change {bad} when resuming", f"only {', '.join(RESUMABLE_CHANGES)} may change")
        if n_images != len(images):
            raise ConfigError(f"{path}: the run was trained on {n_images} images, {len(images)} given",
                              "resume with the same --images")
        trainer = cls(VQGANTrainConfig.from_dict({**saved, **changes}), images, out, disable_progress=disable_progress)
        trainer.loop.load(Path(path))
        return trainer

    def _after_save(self, step: int) -> None:
        self.export()  # the tokenizer directory always matches the latest checkpoint
        if self.cfg.keep_snapshots:
            self.export(self.out / "snapshots" / f"step_{step:06d}")

    def export(self, path: Path | None = None) -> Path:
        """Write a tokenizer directory (default ``out/tokenizer``, replacing the previous export)."""
        path = path or self.out / "tokenizer"
        check_weights(self.model.parameters(), self.step, find_checkpoint(self.out), lr=self.cfg.lr,
                      resumable=False)
        self.model.eval()
        self.model.save_pretrained(path, overwrite=True)
        self.model.train()
        return path

    def run(self, *, stop_at: int | None = None) -> Record:
        """Train until ``cfg.steps`` (or ``stop_at``, the time limit, or Ctrl-C), then checkpoint and export."""
        atomic_write_json(self.out / "train_config.json", self.cfg.to_dict())
        last_eval = self.loop.run(until=stop_at)
        if self.loop.ckpt_step() != self.step:
            self.loop.save()
        return {"step": self.step, "done": self.step >= self.cfg.steps,
                "elapsed_s": round(self.loop.train_seconds, 1), "tokenizer": str(self.out / "tokenizer"),
                "last_eval": last_eval or None}
