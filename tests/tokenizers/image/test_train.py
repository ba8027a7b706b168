"""The VQGAN trainer: the loss falls, resume is bit-exact, the CLI writes a loadable tokenizer."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aromni.cli.main import main
from aromni.errors import ConfigError
from aromni.tokenizers.base import load_tokenizer
from aromni.training.loop import find_checkpoint
from aromni.training.recipes.vqgan import METRICS, foreground_l1, foreground_mask, patch_color_loss
from aromni.training.recipes.vqgan import VQGANTrainer as Trainer
from aromni.training.recipes.vqgan_config import VQGANTrainConfig as TrainConfig
from aromni.training.recipes.vqgan_config import load_train_config, parse_overrides

sys.path.insert(0, str(Path(__file__).parent))
from shapes import random_shape, write_shapes  # noqa: E402

TINY = dict(embed_dim=8, n_embed=32, z_channels=8, resolution=16, ch=8, ch_mult=[1, 2], num_res_blocks=1,
            norm_groups=4)


def shape_images(n: int, size: int = 16) -> torch.Tensor:
    rng = random.Random(0)
    return torch.stack([torch.from_numpy(np.array(random_shape(rng, size)[0])).permute(2, 0, 1) for _ in range(n)])


def tiny_config(**kw) -> TrainConfig:
    base = dict(model=TINY, preset="toy", batch_size=4, lr=3e-3, warmup_steps=2, steps=8, log_every=2,
                eval_every=4, save_every=100, val_images=4, restart_every=3, seed=0)
    return TrainConfig.from_dict({**base, **kw})


def test_a_short_run_lowers_the_loss(tmp_path):
    cfg = tiny_config(steps=100, restart_every=0)
    tr = Trainer(cfg, shape_images(40), tmp_path, disable_progress=True)
    losses = [tr.train_step()["loss"] for _ in range(100)]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


@pytest.mark.parametrize("mode,gan_start", [("ema", 3), ("straight_through", -1)])
def test_resume_after_interruption_is_bit_exact(tmp_path, mode, gan_start):
    images = shape_images(30)
    cfg = tiny_config(codebook_mode=mode, gan_start=gan_start)
    full = Trainer(cfg, images, tmp_path / "full", disable_progress=True)
    (tmp_path / "full").mkdir()
    full.run()

    (tmp_path / "cut").mkdir()
    first = Trainer(cfg, images, tmp_path / "cut", disable_progress=True)
    first.run(stop_at=5)  # "interrupted" after step 5: checkpoint written, then the process is gone
    del first
    resumed = Trainer.resume(find_checkpoint(tmp_path / "cut"), images, tmp_path / "cut", disable_progress=True)
    assert resumed.step == 5
    resumed.run()

    ra, rb = full.recipe, resumed.recipe
    a, b = ra.model.state_dict(), rb.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ca, cb = ra.keeper.state_dict(), rb.keeper.state_dict()
    for k in ("cluster_size", "embed_sum", "usage"):
        assert torch.equal(ca[k], cb[k]), k
    for sa, sb in zip(ra.opt.state_dict()["state"].values(), rb.opt.state_dict()["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    if gan_start >= 0:
        da, db = ra.disc.state_dict(), rb.disc.state_dict()
        assert all(torch.equal(da[k], db[k]) for k in da)
    assert torch.equal(ra.gen.get_state(), rb.gen.get_state())

    def lines(p: Path) -> list[dict]:
        out = [json.loads(ln) for ln in p.read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("steps_per_s", "train_minutes")} for r in out]

    assert lines(tmp_path / "full" / METRICS) == lines(tmp_path / "cut" / METRICS)


def test_resume_refuses_architecture_changes(tmp_path):
    images = shape_images(10)
    tr = Trainer(tiny_config(steps=2), images, tmp_path, disable_progress=True)
    tr.run()
    with pytest.raises(ConfigError, match="cannot change"):
        Trainer.resume(find_checkpoint(tmp_path), images, tmp_path, changes={"lr": 1.0})
    with pytest.raises(ConfigError, match="10 images"):
        Trainer.resume(find_checkpoint(tmp_path), images[:5], tmp_path)
    longer = Trainer.resume(find_checkpoint(tmp_path), images, tmp_path, changes={"steps": 3}, disable_progress=True)
    assert longer.run()["step"] == 3


def test_config_file_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 5\nmodel: {n_embed: 64, ch: 16}\n")
    cfg = load_train_config(p, ["model.ch=8", "lr=0.01", "codebook_mode=straight_through"])
    assert (cfg.steps, cfg.lr, cfg.model, cfg.codebook_mode) == (5, 0.01, {"n_embed": 64, "ch": 8}, "straight_through")
    assert parse_overrides(["betas=[0.9, 0.99]"]) == {"betas": [0.9, 0.99]}
    with pytest.raises(ConfigError, match="unknown keys"):
        load_train_config(None, ["stepz=3"])
    with pytest.raises(ConfigError, match="codebook_mode"):
        load_train_config(None, ["codebook_mode=kmeans"])


def test_cli_trains_exports_and_resumes(tmp_path, capsys):
    write_shapes(tmp_path / "imgs", 12, size=16)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")  # skipped and reported, not fatal
    out = tmp_path / "run"
    args = ["vqgan", "train", "--images", str(tmp_path / "imgs"), "--out", str(out), "--quiet", "steps=3",
            "batch_size=2", "warmup_steps=1", "val_images=2", "preset=tiny"]
    assert main(args) == 0
    assert "skipped 1 unreadable image" in capsys.readouterr().err
    tok = load_tokenizer(out / "tokenizer")
    assert tok.grid == (8, 8) and tok.codebook_size == 32
    assert main(args) == 2  # refuses to reuse a non-empty run directory
    assert "--resume" in capsys.readouterr().err
    assert main(args[:6] + ["--resume", "--quiet", "steps=4"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 4
    assert main(["vqgan", "eval", "--model", str(out / "tokenizer"), "--images", str(tmp_path / "imgs")]) == 2
    assert "broken.png: not an image file" in capsys.readouterr().err  # eval names the bad file
    (tmp_path / "imgs" / "broken.png").unlink()
    assert main(["vqgan", "eval", "--model", str(out / "tokenizer"), "--images", str(tmp_path / "imgs"),
                 "--save", str(tmp_path / "rec")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["images"] == 12 and report["psnr"] > 0 and len(list((tmp_path / "rec").iterdir())) == 12


# ---------------------------------------------------------------- colour terms (issue 11)


def _scene(background: tuple[float, float, float], shape: tuple[float, float, float]) -> torch.Tensor:
    """One 16×16 image in the model range [-1, 1]: a 6×6 square of colour ``shape`` on ``background``."""
    x = torch.tensor(background).view(3, 1, 1).expand(3, 16, 16).clone()
    x[:, 5:11, 5:11] = torch.tensor(shape).view(3, 1)[..., None]
    return x[None]


def test_colour_terms_are_zero_for_identical_images_and_positive_otherwise():
    x = torch.cat([_scene((0.9, 0.9, 0.9), (0.8, -0.8, -0.8)), _scene((-0.8, -0.8, -0.8), (-0.8, -0.8, 0.8))])
    assert patch_color_loss(x, x.clone(), 4).item() == 0.0
    assert foreground_l1(x, x.clone(), 0.15).item() == 0.0
    # the same images with the shapes recoloured: both terms see it
    y = torch.cat([_scene((0.9, 0.9, 0.9), (-0.8, 0.8, -0.8)), _scene((-0.8, -0.8, -0.8), (0.8, 0.8, -0.8))])
    assert patch_color_loss(x, y, 4).item() > 0
    assert foreground_l1(x, y, 0.15).item() == pytest.approx((1.6 * 2 / 3 + 1.6) / 2)  # mean per-pixel channel error
    # a change of the background only is outside the foreground mask
    z = x.clone()
    z[:, :, 0:2] += 0.05
    assert foreground_l1(x, z, 0.15).item() == 0.0
    assert patch_color_loss(x, z, 4).item() > 0


def test_foreground_mask_is_the_shape():
    x = _scene((0.9, 0.9, 0.9), (0.8, -0.8, -0.8))
    mask = foreground_mask(x, 0.15)
    assert mask.shape == (1, 1, 16, 16)
    assert mask[0, 0, 5:11, 5:11].all() and mask.sum() == 36


def test_colour_terms_join_the_loss_and_resume_exactly(tmp_path):
    images = shape_images(30)
    cfg = tiny_config(color_weight=1.0, fg_weight=0.5, color_patch=4)
    rec = Trainer(cfg, images, tmp_path / "full", disable_progress=True).train_step()
    assert rec["color"] > 0 and rec["fg_l1"] > 0
    full = Trainer(cfg, images, tmp_path / "full2", disable_progress=True)
    full.run()
    first = Trainer(cfg, images, tmp_path / "cut", disable_progress=True)
    first.run(stop_at=5)
    resumed = Trainer.resume(find_checkpoint(tmp_path / "cut"), images, tmp_path / "cut", disable_progress=True)
    resumed.run()
    a, b = full.recipe.model.state_dict(), resumed.recipe.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_colour_terms_default_off_and_old_configs_load():
    cfg = tiny_config()
    assert cfg.color_weight == 0 and cfg.fg_weight == 0 and cfg.judge_images == 0
    saved = {k: v for k, v in cfg.to_dict().items() if k not in ("color_weight", "color_patch", "fg_weight",
                                                                  "fg_threshold", "judge_images")}
    assert TrainConfig.from_dict(saved) == cfg  # a checkpoint written before these fields existed


@pytest.mark.parametrize("kw,match", [({"color_weight": -1}, "color_weight must be >= 0"),
                                      ({"fg_weight": -0.5}, "fg_weight must be >= 0"),
                                      ({"color_patch": 5}, "color_patch must be a positive divisor"),
                                      ({"fg_threshold": 0}, "fg_threshold must be in"),
                                      ({"judge_images": 4}, "judge_images needs 64x64")])
def test_colour_settings_are_validated(kw, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(**kw)


def test_judge_accuracy_on_reconstructions_joins_the_evaluation(tmp_path):
    cfg = tiny_config(model={**TINY, "resolution": 64}, judge_images=8, steps=2)
    tr = Trainer(cfg, shape_images(10, size=64), tmp_path, disable_progress=True)
    ev = tr.recipe.evaluate(0)
    for k in ("shape", "color", "size", "position", "background", "all"):
        assert 0.0 <= ev[f"judge_{k}"] <= 1.0
    assert ev["judge_all"] <= min(ev[f"judge_{k}"] for k in ("shape", "color", "size", "position", "background"))
    assert tr.recipe.evaluate(0) == ev  # the same fixed render set each time
