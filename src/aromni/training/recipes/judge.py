"""The training run both toy-world judges share (:mod:`.judge_image`, :mod:`.judge_speech`): a
:class:`~aromni.training.loop.TrainLoop` over a judge recipe, resumed from the newest checkpoint in ``out`` (the
loop's checkpoint store) when there is one."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from aromni.training.loop import LoopConfig, TrainLoop, TrainRecipe


class JudgeTrainSettings(Protocol):
    """What :func:`fit_judge` reads of a judge's training config (a dataclass)."""

    steps: int
    save_every: int
    log_every: int
    lr: float


def fit_judge(recipe: TrainRecipe, cfg: JudgeTrainSettings, out: Path, *, desc: str, progress: bool,
              until: int | None) -> int:
    """Run (or resume) the judge's training loop up to ``cfg.steps`` (or ``until``); returns the step reached."""
    loop = TrainLoop(recipe, LoopConfig(out=out, steps=cfg.steps, checkpoint_every=cfg.save_every,
                                        log_every=cfg.log_every, progress=progress, desc=desc,
                                        lr_key="the judge lr", lr=cfg.lr, config=asdict(cfg)))
    loop.run(until=until)
    return loop.step
