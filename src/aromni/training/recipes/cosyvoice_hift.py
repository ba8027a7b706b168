"""Training CosyVoice2's HiFT vocoder on :class:`~aromni.training.loop.TrainLoop`:
``aromni cosyvoice hift-train --world DIR --out DIR [--config yaml] [k=v ...] [--resume]``.

Input: the ground-truth Matcha mel (24 kHz, 80 bins, f_max 8 kHz) of random ``segment_frames`` crops of a speech
manifest's train clips (resampled to 24 kHz). Losses: L1 of the full-band Matcha log-mel (f_max None, CosyVoice's
GAN-loss mel) + the codec's multi-resolution log-mel and STFT losses + an F0 loss (L1 in Hz of the F0 predictor
against a YIN track, :mod:`aromni.cosyvoice.hift.pitch`, computed once per clip when the data loads). An optional
GAN phase (the codec's multi-period + multi-resolution discriminators, hinge + feature matching) starts at
``gan_start_step``.

Held-out figures (test split: held-out voices and sentences): Matcha log-mel L1 (f_max 8 kHz, natural log) of the
vocoded clips against the ground truth, and the same for Griffin-Lim on the same mels (no training) as the
baseline; the F0 predictor's error on voiced frames.

Output directory::

    metrics.jsonl          losses, steps/s, held-out mel L1 every eval_every steps
    checkpoints/step-N/    the loop's checkpoints (exact resume)
    hift/                  the exported vocoder (config.json "type": "cosyvoice_hift" + model.safetensors)
    summary.json           final figures, with the Griffin-Lim baseline
    spectrogram.png        a held-out clip: ground truth, HiFT, Griffin-Lim (when matplotlib is installed)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from aromni.cosyvoice.data import load_clip, read_manifest
from aromni.cosyvoice.hift.generator import HiFTGenerator
from aromni.cosyvoice.hift.griffin_lim import griffin_lim_from_mel
from aromni.cosyvoice.hift.pitch import yin_f0
from aromni.cosyvoice.mel import MatchaMelConfig, matcha_mel
from aromni.errors import InputError
from aromni.tokenizers.speech.codec.discriminators import CodecDiscriminator
from aromni.tokenizers.speech.codec.losses import (
    MultiResolutionSpectralLoss,
)
from aromni.training.checkpoint import CHECKPOINTS
from aromni.training.guard import check_weights
from aromni.training.loop import LoopConfig, TrainLoop, Update, find_checkpoint
from aromni.training.optim import lr_factor
from aromni.training.recipes.cosyvoice_hift_config import HiFTTrainConfig
from aromni.training.recipes.gan_step import adversarial_step
from aromni.training.run_dir import prepare_run_dir
from aromni.utils.extras import optional
from aromni.utils.io import atomic_write_json

__all__ = ["HiFTClips", "HiFTRecipe", "evaluate_hift", "griffin_lim_baseline", "train_hift"]

Summary = dict[str, float | int | str | None]
LOSS_MEL = MatchaMelConfig(f_max=None)


class HiFTClips:
    """Clips of a manifest split at 24 kHz, cut to whole mel frames, with their YIN F0 tracks ``[frames]``."""

    def __init__(self, world: str | Path, split: str, cfg: HiFTTrainConfig, limit: int, *, progress: bool = True):
        hop, sr = cfg.hift_config().hop_length, cfg.hift_config().sampling_rate
        self.wavs: list[torch.Tensor] = []
        self.f0: list[torch.Tensor] = []
        for clip in tqdm(read_manifest(world, split, max_seconds=cfg.max_seconds, limit=limit, seed=cfg.seed),
                         desc=f"load {split}", disable=not progress, leave=False):
            wav = load_clip(clip, sr)
            wav = wav[: wav.numel() // hop * hop]
            if wav.numel() < 2 * hop:
                continue
            self.wavs.append(wav)
            self.f0.append(yin_f0(wav[None], sr, hop=hop, fmin=cfg.f0_fmin, fmax=cfg.f0_fmax)[0])
        if not self.wavs:
            raise InputError(f"{world}: no usable {split} clips", "each clip needs at least two mel frames")
        self.hop = hop

    def __len__(self) -> int:
        return len(self.wavs)

    def batch(self, n: int, frames: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random crops: ``(wav [n, frames * hop], f0 [n, frames])``; short clips are zero-padded."""
        wavs, f0s = [], []
        for i in torch.randint(len(self.wavs), (n,), generator=gen).tolist():
            wav, f0 = self.wavs[i], self.f0[i]
            start = int(torch.randint(max(1, f0.numel() - frames + 1), (1,), generator=gen))
            w = wav[start * self.hop: (start + frames) * self.hop]
            f = f0[start: start + frames]
            wavs.append(F.pad(w, (0, frames * self.hop - w.numel())))
            f0s.append(F.pad(f, (0, frames - f.numel())))
        return torch.stack(wavs), torch.stack(f0s)


@torch.no_grad()
def evaluate_hift(model: HiFTGenerator, clips: HiFTClips) -> dict[str, float]:
    """Held-out mel L1 (Matcha 80-bin natural-log mel, f_max 8 kHz) of ``wav -> mel -> HiFT`` against the
    ground truth mel, averaged over clips, and the F0 predictor's L1 (Hz) on YIN-voiced frames."""
    was_training = model.training
    model.eval()
    l1, f0_err, voiced = 0.0, 0.0, 0
    for wav, f0 in zip(clips.wavs, clips.f0):
        mel = matcha_mel(wav[None])
        out, _ = model.inference(mel, generator=torch.Generator().manual_seed(0))
        l1 += float((matcha_mel(out) - mel).abs().mean())
        mask = f0 > 0
        f0_err += float((model.f0_predictor(mel)[0] - f0)[mask].abs().sum())
        voiced += int(mask.sum())
    model.train(was_training)
    return {"test_mel_l1": l1 / len(clips), "test_f0_l1_voiced": f0_err / max(1, voiced)}


@torch.no_grad()
def griffin_lim_baseline(clips: HiFTClips, iters: int) -> float:
    """The same held-out mel L1 for Griffin-Lim on the same mels (no training)."""
    total = 0.0
    for wav in clips.wavs:
        mel = matcha_mel(wav[None])
        total += float((matcha_mel(griffin_lim_from_mel(mel, iters=iters)) - mel).abs().mean())
    return total / len(clips)


class HiFTRecipe:
    """The vocoder's step (module docstring). ``data_gen`` (the crops) is the data position."""

    def __init__(self, cfg: HiFTTrainConfig, train: HiFTClips, test: HiFTClips | None):
        self.cfg, self.train_set, self.test_set = cfg, train, test
        torch.manual_seed(cfg.seed)
        self.model = HiFTGenerator(cfg.hift_config()).train()
        f0_params = list(self.model.f0_predictor.parameters())
        rest = [p for n, p in self.model.named_parameters() if not n.startswith("f0_predictor.")]
        self.opt = torch.optim.AdamW([{"params": rest, "lr_scale": 1.0},
                                      {"params": f0_params, "lr_scale": cfg.f0_lr_scale}],
                                     lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.spectral_loss = MultiResolutionSpectralLoss(self.model.sample_rate)
        self.disc: CodecDiscriminator | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if cfg.gan_start_step is not None:
            self.disc = CodecDiscriminator(period_width=cfg.disc_period_width).train()
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 2)  # the NSF source's noise

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model} | ({"disc": self.disc} if self.disc is not None else {})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt} | ({"opt_d": self.opt_d} if self.opt_d is not None else {})

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        cfg = self.cfg
        lr = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.steps, cfg.lr_min_ratio)
        for g in self.opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        wav, f0_target = self.train_set.batch(cfg.batch_size, cfg.segment_frames, self.data_gen)
        mel = matcha_mel(wav)
        out, f0 = self.model(mel, f0_target if cfg.teacher_f0 else None, generator=self.noise_gen)
        mel_l1 = (matcha_mel(out, LOSS_MEL) - matcha_mel(wav, LOSS_MEL)).abs().mean()
        mr_mel, stft = self.spectral_loss(out, wav)
        f0_l1 = (f0 - f0_target).abs().mean()
        loss = cfg.mel_weight * mel_l1 + cfg.mr_mel_weight * mr_mel + cfg.stft_weight * stft + cfg.f0_weight * f0_l1
        logs.update(mel=mel_l1.item(), mr_mel=mr_mel.item(), stft=stft.item(), f0=f0_l1.item())
        if self.disc is not None and cfg.gan_start_step is not None and step >= cfg.gan_start_step:
            fake, real = out[: cfg.gan_batch], wav[: cfg.gan_batch]
            loss = loss + (yield from adversarial_step(self.disc, self.opt_d, fake, real, logs,
                                                       adv_weight=cfg.adv_weight, fm_weight=cfg.fm_weight))
        logs.update(loss=loss.item(), lr=lr)
        yield Update(loss, self.opt, clip=cfg.grad_clip, grad_norm_key="grad_norm")

    def log_fields(self) -> dict[str, float]:
        return {}

    def evaluate(self, step: int) -> dict[str, float]:
        return evaluate_hift(self.model, self.test_set) if self.test_set is not None else {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"data_gen": self.data_gen.get_state(), "noise_gen": self.noise_gen.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.data_gen.set_state(state["data_gen"])
        self.noise_gen.set_state(state["noise_gen"])


def plot_spectrograms(path: Path, model: HiFTGenerator, wav: torch.Tensor, gl_iters: int) -> None:
    """Ground truth, HiFT and Griffin-Lim Matcha mels of one clip ``wav [T]``, stacked, into ``path`` (PNG)."""
    optional("matplotlib", extra="train", feature="spectrogram figures").use("Agg")
    plt = optional("matplotlib.pyplot", extra="train", feature="spectrogram figures")
    mel = matcha_mel(wav[None])
    with torch.no_grad():
        hift, _ = model.inference(mel, generator=torch.Generator().manual_seed(0))
        gl = griffin_lim_from_mel(mel, iters=gl_iters)
    rows = [("ground truth", mel), ("HiFT (toy)", matcha_mel(hift)), ("Griffin-Lim", matcha_mel(gl))]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 7), sharex=True)
    for ax, (title, m) in zip(axes, rows):
        l1 = float((m - mel).abs().mean())
        ax.imshow(m[0].numpy(), origin="lower", aspect="auto", vmin=-11.5, vmax=float(mel.max()))
        ax.set_title(f"{title}: mel L1 {l1:.3f}" if title != "ground truth" else title)
        ax.set_ylabel("mel bin")
    axes[-1].set_xlabel("frame (20 ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class HiFTTrainer:
    """One run: :class:`HiFTRecipe` on a :class:`TrainLoop` writing to ``out``."""

    def __init__(self, cfg: HiFTTrainConfig, train: HiFTClips, test: HiFTClips | None, out: Path, *,
                 progress: bool = True):
        self.cfg, self.out = cfg, Path(out)
        self.recipe = HiFTRecipe(cfg, train, test)
        self.model = self.recipe.model
        self.loop = TrainLoop(self.recipe, LoopConfig(
            out=self.out, steps=cfg.steps, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
            eval_every=cfg.eval_every if test is not None else 0, progress=progress, desc="hift", lr=cfg.lr,
            max_seconds=(cfg.max_minutes or 0.0) * 60, config=cfg.to_dict()))

    def run(self, until: int | None = None, *, figure: bool = True) -> Summary:
        self.loop.run(until=until)
        check_weights(self.model.parameters(), self.loop.step, find_checkpoint(self.out), lr=self.cfg.lr)
        self.model.eval()
        self.model.save_pretrained(self.out / "hift", overwrite=True)
        summary: Summary = {"step": self.loop.step, "train_minutes": self.loop.train_seconds / 60,
                            "parameters": sum(p.numel() for p in self.model.parameters()),
                            "train_clips": len(self.recipe.train_set), "hift": str(self.out / "hift")}
        test = self.recipe.test_set
        if test is not None:
            summary.update(evaluate_hift(self.model, test), test_clips=len(test),
                           griffin_lim_test_mel_l1=griffin_lim_baseline(test, self.cfg.griffin_lim_iters),
                           griffin_lim_iters=self.cfg.griffin_lim_iters)
            if figure:
                plot_spectrograms(self.out / "spectrogram.png", self.model, test.wavs[0], self.cfg.griffin_lim_iters)
                summary["figure"] = str(self.out / "spectrogram.png")
        atomic_write_json(self.out / "summary.json", summary)
        self.model.train()
        return summary


def train_hift(cfg: HiFTTrainConfig, world: str | Path, out: str | Path, *, resume: bool = False,
               overwrite: bool = False, progress: bool = True, until: int | None = None,
               figure: bool = True) -> Summary:
    """Train (or resume: ``cfg`` from :func:`resume_hift_config`) HiFT on the speech manifest of ``world``."""
    out = Path(out)
    prepare_run_dir(out, resume=resume, overwrite=overwrite,
                    run_files=("metrics.jsonl", "summary.json", "train_config.json", "spectrogram.png"),
                    run_dirs=(CHECKPOINTS, "hift"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train = HiFTClips(world, "train", cfg, cfg.train_clips, progress=progress)
    test = HiFTClips(world, "test", cfg, cfg.test_clips, progress=progress)
    trainer = HiFTTrainer(cfg, train, test, out, progress=progress)
    if not resume:
        atomic_write_json(out / "train_config.json", cfg.to_dict())
    return trainer.run(until, figure=figure)


