"""The adversarial half of a waveform recipe's step (the codec's and HiFT's GAN phases): multi-period +
multi-resolution discriminators with hinge losses and feature matching, as HiFi-GAN trains them."""

from __future__ import annotations

from collections.abc import Generator

import torch

from aromni.tokenizers.speech.codec.discriminators import CodecDiscriminator
from aromni.tokenizers.speech.codec.losses import discriminator_hinge, feature_matching, generator_hinge
from aromni.training.loop import Update

__all__ = ["adversarial_step"]


def adversarial_step(disc: CodecDiscriminator, opt_d: torch.optim.Optimizer, fake: torch.Tensor, real: torch.Tensor,
                     logs: dict[str, float], *, adv_weight: float, fm_weight: float
                     ) -> Generator[Update, None, torch.Tensor]:
    """Yield the discriminator's :class:`Update` on ``fake [B, T]`` (detached) vs ``real [B, T]``, then return the
    generator's extra loss ``adv_weight * hinge + fm_weight * feature matching`` against the updated
    discriminator. Use as ``loss = loss + (yield from adversarial_step(...))`` inside ``train_step``."""
    d_real, _ = disc(real)
    d_fake, _ = disc(fake.detach())
    loss_d = discriminator_hinge(d_real, d_fake)
    yield Update(loss_d, opt_d, name="discriminator loss")  # D first, then G against the new D
    with torch.no_grad():
        _, f_real = disc(real)
    g_fake, f_fake = disc(fake)
    adv, fm = generator_hinge(g_fake), feature_matching(f_real, f_fake)
    logs.update(disc=loss_d.item(), adv=adv.item(), fm=fm.item())
    return adv_weight * adv + fm_weight * fm
