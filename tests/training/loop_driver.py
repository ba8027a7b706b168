"""Runs one tiny recipe on :class:`aromni.training.loop.TrainLoop` to completion (resuming ``OUT`` if it holds a
checkpoint): ``python loop_driver.py {vqgan,codec,image_judge,speech_judge} OUT [WORLD]`` (no recipe needs WORLD today).

Used by the SIGKILL tests: every step is logged and checkpointed, one thread, fixed seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from aromni.tokenizers.speech.codec.data import ClipSet
from aromni.training.recipes.codec import CodecTrainConfig, CodecTrainer
from aromni.training.recipes.judge_image import ImageTrainConfig, train_image_judge
from aromni.training.recipes.judge_speech import SpeechTrainConfig, train_speech_judge
from aromni.training.recipes.vqgan import VQGANTrainer
from aromni.training.recipes.vqgan_config import VQGANTrainConfig

STEPS = 6
TINY_VQGAN = {"embed_dim": 8, "n_embed": 32, "z_channels": 8, "resolution": 16, "ch": 8, "ch_mult": [1, 2],
              "num_res_blocks": 1, "norm_groups": 4}


def run(recipe: str, out: Path, world: Path | None) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    if recipe == "vqgan":
        cfg = VQGANTrainConfig.from_dict({"model": TINY_VQGAN, "preset": "toy", "batch_size": 4, "lr": 3e-3,
                                          "warmup_steps": 2, "steps": STEPS, "log_every": 1, "eval_every": 3,
                                          "save_every": 1, "val_images": 4, "restart_every": 3, "gan_start": 3,
                                          "seed": 0})
        images = torch.randint(0, 256, (24, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        VQGANTrainer(cfg, images, out, disable_progress=True).run()
    elif recipe == "codec":
        cfg = CodecTrainConfig(preset="tiny", steps=STEPS, batch_size=2, segment_frames=8, kmeans_batches=2,
                               kmeans_iters=2, warmup_steps=2, log_every=1, eval_every=100, checkpoint_every=1,
                               val_files=0, gan_start_step=3, gan_batch=2)
        sr = cfg.codec_config().sample_rate
        g = torch.Generator().manual_seed(0)
        clips = [0.3 * torch.sin(torch.arange(sr // 2) * (0.05 + 0.01 * i)) + 0.01 * torch.randn(sr // 2, generator=g)
                 for i in range(4)]
        CodecTrainer(cfg, ClipSet.from_clips(clips, sr), None, out, progress=False).run()
    elif recipe == "image_judge":
        cfg = ImageTrainConfig(steps=STEPS, batch_size=8, train_images=32, val_images=8, save_every=1, log_every=1)
        train_image_judge(out, cfg, progress=False)
    elif recipe == "speech_judge":
        # a tiny judge on a tiny synthesised pool (needs espeak-ng, no world)
        cfg = SpeechTrainConfig(steps=STEPS, batch_seconds=5, pool_clips=24, val_clips=2, save_every=1, log_every=1,
                                warmup=1, conv_channels=32, hidden=32, layers=2)
        train_speech_judge(out, cfg, progress=False)
    else:
        raise SystemExit(f"unknown recipe {recipe}")


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
