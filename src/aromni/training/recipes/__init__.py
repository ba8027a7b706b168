"""Training recipes: what one training run computes; the loop around it is shared.

Decoder stages (run by :class:`~aromni.training.trainer.Trainer`; the step is :mod:`.decoder` on
:class:`~aromni.training.loop.TrainLoop`):
``pretrain``: loss on every token, tail-weighted NTP for caption/ASR, perceptual loss (paper stage 1).
``sft``: loss on response tokens only (paper stage 2), optional INS...RES segment weight.

Tokenizers (steps on :class:`~aromni.training.loop.TrainLoop`):
``vqgan`` (+ ``vqgan_config``): the image VQGAN, optional GAN phase. ``codec`` (+ ``codec_config``): the
streaming speech codec, optional GAN phase.

Toy-world judges (steps on :class:`~aromni.training.loop.TrainLoop`, run by :mod:`.judge`): ``judge_image``, the
image judge on fresh renders; ``judge_speech``, the character speech judge on speech it synthesises itself.
Their data are components in :mod:`aromni.toyworld.judges.image_data` / :mod:`~aromni.toyworld.judges.speech_data`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

from aromni.errors import ConfigError
from aromni.training.config import TrainConfig
from aromni.utils.config import apply_overrides, deep_merge, read_yaml
from aromni.utils.io import JSONValue


def load_recipe_config(mode: str, defaults: Mapping[str, JSONValue], path: str | Path | None,
                       overrides: Sequence[str] = ()) -> TrainConfig:
    """``defaults`` under the YAML file under the ``key=value`` overrides; ``loss.mode`` must stay ``mode``."""
    raw: dict[str, JSONValue] = copy.deepcopy(dict(defaults))
    if path is not None:
        raw = deep_merge(raw, read_yaml(path))
    cfg = TrainConfig.from_dict(apply_overrides(raw, overrides))
    if cfg.loss.mode != mode:
        raise ConfigError(f"the {mode} recipe got loss.mode={cfg.loss.mode!r}", f"use `aromni train {cfg.loss.mode}`")
    return cfg
