"""The paper's Table 1 on the toy world (``aromni omnivivo ablate``): speech-branch depth × LoRA on/off.

Each cell is one speech-stage run (:func:`~aromni.training.recipes.omnivivo.train_omnivivo`) from the same
settings, changing only ``vivo.branch_layers`` and, for "without LoRA" (the paper's TTS baseline: the branch alone
on the frozen backbone's states), ``vivo.lora: null``. A cell reports its last validation loss and the speech
judge's WER and CER on held-out sentences (the world's TTS test records, spoken by the cell's export, plain
TTS through the speech rows).

Cells run one after another into ``OUT/<cell>/``; the table (``OUT/table.json``, ``OUT/table.md``) is rewritten
after each, a finished cell is read back rather than retrained, and an interrupted one resumes from its newest
checkpoint, so the whole ablation survives an interruption.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from aromni.errors import ConfigError
from aromni.omnivivo.api import VivoPipeline
from aromni.omnivivo.toy_eval import VivoEvalSettings, heldout_sentences, speak, spread
from aromni.toyworld.evaluation.metrics import corpus_cer, corpus_wer
from aromni.toyworld.judges.speech import SpeechJudge
from aromni.training.loop import checkpoint_meta
from aromni.training.recipes.omnivivo import EXPORT_DIR, SUMMARY, train_omnivivo
from aromni.training.recipes.omnivivo_config import load_train_config
from aromni.utils.io import JSONValue, atomic_write_json, atomic_write_text, read_jsonl

#: The paper's depths (Table 1).
PAPER_DEPTHS = (2, 4, 6, 8, 10)


@dataclass
class AblationSettings:
    """Which cells, and how each is measured.

    Attributes:
        depths: branch depths (the paper's 2/4/6/8/10).
        lora: the LoRA options per depth (``True``: the config's LoRA; ``False``: none).
        sentences: held-out sentences spoken per cell for the judge's WER/CER.
        seed: speech sampling seed of the first sentence.
    """

    depths: tuple[int, ...] = PAPER_DEPTHS
    lora: tuple[bool, ...] = (True, False)
    sentences: int = 60
    seed: int = 0

    def __post_init__(self) -> None:
        self.depths, self.lora = tuple(self.depths), tuple(self.lora)
        if not self.depths or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.depths):
            raise ConfigError(f"ablation: depths must be positive integers, got {list(self.depths)}", "e.g. 2 4 6")
        if not self.lora or len(set(self.lora)) != len(self.lora):
            raise ConfigError(f"ablation: lora must list True and/or False once each, got {list(self.lora)}")
        if isinstance(self.sentences, bool) or not isinstance(self.sentences, int) or self.sentences < 1:
            raise ConfigError(f"ablation: sentences must be a positive integer, got {self.sentences!r}")


def cell_name(depth: int, lora: bool) -> str:
    return f"depth{depth}_{'lora' if lora else 'nolora'}"


def _last_val_loss(run: Path) -> float | None:
    losses = [r["val_loss"] for _, r in read_jsonl(run / "metrics.jsonl", "metrics")
              if isinstance(r, dict) and r.get("kind") == "eval" and "val_loss" in r]
    return round(float(losses[-1]), 4) if losses else None


def _train_cell(config: Path | None, overrides: Sequence[str], run: Path, progress: bool) -> dict[str, JSONValue]:
    """Train (or resume, or read back) one cell; returns its summary."""
    summary = run / SUMMARY
    if summary.is_file():
        done = json.loads(summary.read_text())
        if done.get("done"):
            return done
    cfg = load_train_config(config, overrides)
    resume = checkpoint_meta(run) is not None
    return train_omnivivo(cfg, run, resume=resume, progress=progress)


def _measure(run: Path, texts: list[str], s: AblationSettings, judge: SpeechJudge) -> dict[str, JSONValue]:
    pipeline = VivoPipeline.load(run / EXPORT_DIR)
    audio = speak(pipeline, texts, VivoEvalSettings(seed=s.seed))
    heard = judge.transcribe(audio, sample_rate=pipeline.sample_rate)
    trainable = sum(p.numel() for p in pipeline.model.trainable_parameters())
    wer, cer = corpus_wer(texts, heard), corpus_cer(texts, heard)
    return {"judge_wer": None if wer is None else round(wer, 4), "judge_cer": None if cer is None else round(cer, 4),
            "n": len(texts), "trainable_parameters": trainable}


def run_ablation(config: Path | None, overrides: Sequence[str], world: Path, out: Path,
                 settings: AblationSettings | None = None, *, progress: bool = True,
                 log: Callable[[str], None] = print) -> list[dict[str, JSONValue]]:
    """Train and measure every cell (module docstring); returns the table rows."""
    s = settings or AblationSettings()
    out.mkdir(parents=True, exist_ok=True)
    sentences = heldout_sentences(world)  # read once, and a world without them fails before any training
    texts = [sentences[i][0] for i in spread(sentences, s.sentences)]
    judge = SpeechJudge.load()
    rows: list[dict[str, JSONValue]] = []
    for depth in s.depths:
        for lora in s.lora:
            name = cell_name(depth, lora)
            run = out / name
            cell = [*overrides, f"vivo.branch_layers={depth}", *([] if lora else ["vivo.lora=null"])]
            t0 = time.perf_counter()
            summary = _train_cell(config, cell, run, progress)
            minutes = round((time.perf_counter() - t0) / 60, 2)
            row: dict[str, JSONValue] = {"cell": name, "depth": depth, "lora": lora,
                                         "steps": summary.get("step"), "val_loss": _last_val_loss(run),
                                         **_measure(run, texts, s, judge), "train_minutes_this_call": minutes}
            rows.append(row)
            atomic_write_json(out / "table.json", {"settings": asdict(s), "overrides": list(overrides),
                                                   "rows": rows})
            atomic_write_text(out / "table.md", render_table(rows))
            log(f"{name}: val loss {row['val_loss']}, judge WER {_pct(row['judge_wer'])}, CER {_pct(row['judge_cer'])}")
    return rows


def render_table(rows: Sequence[dict[str, JSONValue]]) -> str:
    """Depth rows, LoRA / without-LoRA columns (as the paper's Table 1)."""
    by = {(r["depth"], r["lora"]): r for r in rows}
    depths = sorted({int(r["depth"]) for r in rows})
    head = ("| depth | WER, LoRA | CER, LoRA | val loss, LoRA | WER, no LoRA | CER, no LoRA | val loss, no LoRA |"
            "\n|---|---|---|---|---|---|---|")
    lines = [head]
    for d in depths:
        cells = []
        for lora in (True, False):
            r = by.get((d, lora))
            cells += ["-"] * 3 if r is None else [_pct(r["judge_wer"]), _pct(r["judge_cer"]), str(r["val_loss"])]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(x: JSONValue) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{100 * x:.1f}%"
