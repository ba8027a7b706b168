"""Training LlamaGen's VQ image tokenizer (``aromni llamagen vq-train``) on :class:`~aromni.training.loop.TrainLoop`.

OmniVIVO's training stage 1 at toy scale (``../shared/reference/omnivivo.md`` §2, §4.1): a
:class:`~aromni.tokenizers.image.llamagen_vq.LlamaGenVQ` (``toy`` preset) learns to reconstruct a folder of PNGs.
Output directory::

    checkpoints/step-N/  the loop's checkpoints: model.safetensors (VQ, discriminator), trainer_state.pt
                         (optimizers, the data-order generator, step, RNG), trainer.json (step, settings)
    metrics.jsonl        one line per log step (losses, LlamaGen's codebook usage) and per evaluation
    tokenizer/           the export (``LlamaGenVQ.save_pretrained``: config.json + model.safetensors), written
                         when the run stops; ``LlamaGenVQ.from_pretrained`` / ``load_tokenizer`` open it

One step: the generator update (pixel L1/L2 + LlamaGen's codebook and commitment terms (+ colour terms) (+ GAN
once ``gan_start`` is reached)), then the discriminator's (hinge). See :class:`LlamaGenVQTrainConfig`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from aromni.errors import ConfigError
from aromni.tokenizers.image.dataset import to_model_range
from aromni.tokenizers.image.discriminator import PatchDiscriminator, hinge_d_loss, hinge_g_loss
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.tokenizers.image.metrics import color_error, psnr, to_uint8
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.image_data import accuracy, render_set
from aromni.training.guard import check_weights
from aromni.training.loop import TrainLoop, Update, find_checkpoint
from aromni.training.recipes.llamagen_vq_config import LlamaGenVQTrainConfig
from aromni.training.recipes.vqgan import foreground_l1, patch_color_loss
from aromni.utils.io import JSONValue, atomic_write_json

EXPORT = "tokenizer"
Record = dict[str, JSONValue]


def hold_out(images: torch.Tensor, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``images [N, ...]`` -> ``(train, val)``: a seeded hold-out of ``n_val`` images, at most a fifth of the set
    (so a handful of images still leaves most for training)."""
    n_val = min(n_val, len(images) // 5)
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed + 1))
    return images[perm[n_val:]], images[perm[:n_val]]


def colour_terms(cfg: LlamaGenVQTrainConfig, x: torch.Tensor, recon: torch.Tensor, logs: dict[str, float]
                 ) -> torch.Tensor | float:
    """The VQGAN recipe's optional colour terms for ``x, recon [B, 3, S, S]``, weighted (0.0 when both are off);
    each active term's value goes into ``logs``."""
    total: torch.Tensor | float = 0.0
    terms = (("color", cfg.color_weight, lambda: patch_color_loss(x, recon, cfg.color_patch)),
             ("fg_l1", cfg.fg_weight, lambda: foreground_l1(x, recon, cfg.fg_threshold)))
    for key, weight, term in terms:
        if weight > 0:
            value = term()
            logs[key] = value.item()
            total = total + weight * value
    return total


class LlamaGenVQRecipe:
    """The VQ's step (module docstring). ``gen`` draws the batches: it is the data position in the checkpoint.

    Args:
        cfg: the run's settings.
        train_set, val_set: uint8 images ``[N, 3, S, S]`` (``S = model.image_size``).
    """

    def __init__(self, cfg: LlamaGenVQTrainConfig, train_set: torch.Tensor, val_set: torch.Tensor):
        self.cfg, self.train_set, self.val_set = cfg, train_set, val_set
        torch.manual_seed(cfg.seed)
        self.model = LlamaGenVQ(cfg.model_config()).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.disc: PatchDiscriminator | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if cfg.gan_start >= 0:
            self.disc = PatchDiscriminator(3, cfg.disc_channels, cfg.disc_layers)
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        # The judge reads reconstructions of fresh renders (never the training images), seeded so that every
        # evaluation of a run sees the same set.
        self.judge: ImageJudge | None = ImageJudge.load() if cfg.judge_images > 0 else None
        self.judge_set = render_set(cfg.judge_images, f"llamagen-vq-judge-{cfg.seed}") if self.judge is not None else None

    def modules(self) -> dict[str, nn.Module]:
        return {k: m for k, m in (("model", self.model), ("disc", self.disc)) if m is not None}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: o for k, o in (("opt", self.opt), ("opt_d", self.opt_d)) if o is not None}

    def _gan_active(self, step: int) -> bool:
        return self.disc is not None and step >= self.cfg.gan_start

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        cfg = self.cfg
        idx = torch.randint(0, len(self.train_set), (cfg.batch_size,), generator=self.gen)
        x = to_model_range(self.train_set[idx])  # [B, 3, S, S] in [-1, 1]
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        out = self.model(x)
        recon, q = out.recon, out.quant
        l1, l2 = (x - recon).abs().mean(), ((x - recon) ** 2).mean()
        loss = cfg.l1_weight * l1 + cfg.l2_weight * l2 + cfg.vq_weight * out.vq_loss
        loss = loss + colour_terms(cfg, x, recon, logs)
        if self._gan_active(step):
            self.disc.requires_grad_(False)  # the generator's update must leave no gradient on D
            g = hinge_g_loss(self.disc(recon))
            self.disc.requires_grad_(True)
            loss = loss + cfg.gan_weight * g
            logs["gan_g"] = g.item()
        logs.update(loss=loss.item(), l1=l1.item(), l2=l2.item(), codebook=q.codebook_loss.item(),
                    commitment=q.commit_loss.item(), usage=q.usage, lr=cfg.lr_at(step))
        yield Update(loss, self.opt, clip=cfg.grad_clip, grad_norm_key="grad_norm")
        if self._gan_active(step):
            d = hinge_d_loss(self.disc(x), self.disc(recon.detach()))
            logs["gan_d"] = d.item()
            yield Update(d, self.opt_d, name="discriminator loss")

    def log_fields(self) -> Record:
        return {}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``[N, 3, S, S]`` -> uint8 reconstructions ``[N, 3, S, S]`` and codes ``[N, h*w]`` (eval mode;
        the model's mode is restored)."""
        was_training = self.model.training
        self.model.eval()
        recs, codes = [], []
        for i in range(0, len(images), batch_size):
            out = self.model(to_model_range(images[i:i + batch_size]))
            recs.append(to_uint8(out.recon))
            codes.append(out.quant.codes)
        self.model.train(was_training)
        return torch.cat(recs), torch.cat(codes)

    def evaluate(self, step: int) -> Record:
        """PSNR / colour error (uint8) and distinct codes on the held-out images (the first training images
        when none are held out), plus the image judge's accuracies (``judge_<attribute>``, ``judge_all``) on
        reconstructions of the judge set when ``judge_images > 0``."""
        data, split = (self.val_set, "val") if len(self.val_set) else (self.train_set[:32], "train")
        rec, codes = self.reconstruct(data)
        used = codes.unique().numel()
        record: Record = {"kind": "eval", "split": split, "images": len(data), "psnr": round(psnr(rec, data), 3),
                          "color_error": round(color_error(rec, data), 3), "codes_used": used,
                          "code_usage": round(used / self.model.codebook_size, 4)}
        if self.judge is not None and self.judge_set is not None:
            images, labels = self.judge_set
            scores = accuracy(self.judge.model, self.reconstruct(images)[0], labels)
            self.judge.model.eval()  # accuracy() leaves the judge in train mode (BatchNorm, dropout)
            record.update({f"judge_{k}": v for k, v in scores.items()})
        return record

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"gen": self.gen.get_state(), "n_images": len(self.train_set) + len(self.val_set)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor | int]) -> None:
        n = len(self.train_set) + len(self.val_set)
        if int(state["n_images"]) != n:
            raise ConfigError(f"the run was trained on {int(state['n_images'])} images, {n} given",
                              "resume with the same images")
        self.gen.set_state(state["gen"])


class LlamaGenVQTrainer:
    """One run: :class:`LlamaGenVQRecipe` on a :class:`TrainLoop` writing to ``out``. :meth:`run` trains to
    ``cfg.steps``, resuming from the newest ``out/checkpoints/step-N`` when there is one, then exports.

    Args:
        cfg: settings.
        images: uint8 ``[N, 3, S, S]`` (e.g. :func:`aromni.tokenizers.image.dataset.load_images`), in a fixed
            order: the hold-out and the batches depend on it.
        out: run directory.
        progress: show a progress bar.
    """

    def __init__(self, cfg: LlamaGenVQTrainConfig, images: torch.Tensor, out: str | Path, *, progress: bool = True):
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        size = cfg.model_config().image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size) or images.dtype != torch.uint8:
            raise ConfigError(f"training images of shape {list(images.shape)} ({images.dtype}), expected uint8 "
                              f"[N, 3, {size}, {size}]", "load them with load_images(paths, model.image_size)")
        self.cfg, self.out = cfg, Path(out)
        self.train_set, self.val_set = hold_out(images, cfg.val_images, cfg.seed)
        if len(self.train_set) == 0:
            raise ConfigError("no training images", "pass a folder or glob that matches images")
        self.recipe = LlamaGenVQRecipe(cfg, self.train_set, self.val_set)
        self.model = self.recipe.model
        self.loop = TrainLoop(self.recipe, cfg.loop_config(self.out, progress=progress, desc="llamagen vq"))

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
        """Train to ``cfg.steps`` (or stop at step ``until`` with a checkpoint, as an interrupted run would),
        export, and return a summary (also written to ``out/summary.json``)."""
        last_eval = self.loop.run(until=until)
        if self.loop.ckpt_step() != self.step:
            self.loop.save()
        summary: Record = {"step": self.step, "done": self.step >= self.cfg.steps,
                           "train_minutes": round(self.loop.train_seconds / 60, 2),
                           "parameters": sum(p.numel() for p in self.model.parameters()),
                           "train_images": len(self.train_set), "val_images": len(self.val_set),
                           "tokenizer": str(self.export()), "last_eval": last_eval or None}
        atomic_write_json(self.out / "summary.json", summary)
        return summary
