"""Run the toy-world suite on a bundle: every task, its metrics, timings, and the summary rows with targets."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aromni.inference.omni import OmniModel
from aromni.toyworld.evaluation import sanity, tasks_answers, tasks_basic, tasks_image
from aromni.toyworld.evaluation.context import JUDGES_STEP, STREAMING_STEP, Context, SuiteConfig
from aromni.toyworld.evaluation.result import TaskResult, rounded
from aromni.toyworld.evaluation.targets import attribute_table, summary_rows
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import ASR, CAPTION, CHAT_IMAGE, S2I, S2S, S2T, T2I, TTS, VQA_SPEECH, VQA_TEXT


def _runners() -> dict[str, Callable[[Context], TaskResult]]:
    return {
        JUDGES_STEP: sanity.run_judges,
        ASR.name: tasks_basic.run_asr,
        TTS.name: tasks_basic.run_tts,
        CAPTION.name: tasks_basic.run_caption,
        T2I.name: tasks_image.run_t2i,
        S2I.name: tasks_image.run_s2i,
        VQA_TEXT.name: lambda c: tasks_answers.run_text_answers(c, VQA_TEXT.name),
        VQA_SPEECH.name: lambda c: tasks_answers.run_speech_answers(c, VQA_SPEECH.name),
        S2S.name: lambda c: tasks_answers.run_speech_answers(c, S2S.name),
        S2T.name: lambda c: tasks_answers.run_text_answers(c, S2T.name),
        CHAT_IMAGE.name: tasks_image.run_chat_image,
        STREAMING_STEP: sanity.run_streaming,
    }


@dataclass
class SuiteResult:
    """Attributes:
        info: what was evaluated and how (bundle, world, config, machine, seconds).
        tasks: per-task metrics.
        samples: per-task sample rows.
        examples: per-task media examples (for the report's figures; not JSON).
    """

    info: dict[str, JSONValue]
    tasks: dict[str, dict[str, JSONValue]] = field(default_factory=dict)
    samples: dict[str, list[dict[str, JSONValue]]] = field(default_factory=dict)
    examples: dict[str, list[dict[str, object]]] = field(default_factory=dict)

    @property
    def rows(self) -> list[dict[str, JSONValue]]:
        return summary_rows(self.tasks)

    def to_dict(self) -> dict[str, JSONValue]:
        """Everything machine-readable (metrics, summary rows, per-attribute table), no per-sample rows."""
        rows = self.rows
        checked = [r for r in rows if r["pass"] is not None]
        return rounded({**self.info, "tasks": self.tasks, "summary": rows, "attributes": attribute_table(self.tasks),
                        "targets_met": sum(r["pass"] for r in checked), "targets_checked": len(checked)})


def run_suite(model: OmniModel | str | Path, world: str | Path, cfg: SuiteConfig | None = None, *, log: Callable[[str], None] | None = None
              ) -> SuiteResult:
    """Evaluate ``model`` (an :class:`~aromni.inference.omni.OmniModel` or a bundle path) on ``world``.

    ``log`` receives one line per finished task (default: stderr)."""
    cfg = cfg or SuiteConfig()
    log = log or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    if not isinstance(model, OmniModel):
        model = OmniModel.load(model)
    ctx = Context(model, world, cfg)
    info = {
        "suite": "toy", "bundle": str(getattr(model.bundle, "path", None)), "world": str(Path(world)),
        "config": cfg.to_dict(), "device": str(model.device), "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "decoder_params": sum(p.numel() for p in model.bundle.decoder.parameters()),
        "prompt_style": model.style.name,
    }
    result = SuiteResult(info)
    runners = _runners()
    seconds: dict[str, float] = {}
    for task in cfg.tasks:
        t0 = time.perf_counter()
        out = runners[task](ctx)
        seconds[task] = time.perf_counter() - t0
        result.tasks[task] = {**out.metrics, "seconds": seconds[task]}
        result.samples[task] = out.samples
        result.examples[task] = out.examples
        log(f"  {task:<11} {seconds[task]:6.1f} s  n={out.metrics.get('n', out.metrics.get('images', ''))}")
    info["seconds"] = {**seconds, "total": time.perf_counter() - t_start}
    return result
