"""Training metrics: a JSONL file (one record per optimizer step), optional TensorBoard, a progress bar.

Record fields: ``step``, ``loss`` (total), ``ntp`` (weighted NTP), ``perc`` (perceptual, unweighted; null in a step without image positions), ``tail_ratio``
(share of the NTP weight on up-weighted tail targets), ``lr``, ``grad_norm``, ``tokens`` (non-padding
positions this step, all ranks), ``tokens_per_s``, ``fill`` (non-padding share of the batch), ``epoch``,
``elapsed_s``, and with ``log.sample_ids`` the ``samples`` consumed (their ``source``, rank 0's first).

When a run resumes from step ``s``, records after ``s`` (written before the interruption, then recomputed) are
dropped from the file first, so the file always reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

from aromni.utils.extras import optional
from aromni.utils.io import JSONValue, atomic_write_text


def read_metrics(path: str | Path) -> list[dict[str, JSONValue]]:
    """Records of a metrics JSONL file (a torn last line, from a killed writer, is ignored)."""
    out: list[dict[str, JSONValue]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class MetricsLogger:
    """Writes metric records (rank 0 only; other ranks get ``enabled=False``).

    Args:
        out_dir: run directory (``metrics.jsonl`` and ``tensorboard/`` go there).
        resume_step: drop records after this step from an existing file (``None``: start a new file).
        tensorboard: also write TensorBoard scalars.
        progress: show a tqdm bar of ``total`` steps when stderr is a terminal.
    """

    def __init__(self, out_dir: str | Path, *, resume_step: int | None, total: int, tensorboard: bool = False,
                 progress: bool = True, enabled: bool = True, initial: int = 0, desc: str = "train"):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._tb = None
        self._bar = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            keep = [r for r in read_metrics(self.path) if resume_step is not None and r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            optional("tensorboard", extra="train", feature="TensorBoard logging (log.tensorboard)")
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=initial + 1)
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    @property
    def has_bar(self) -> bool:
        return self._bar is not None

    def advance(self) -> None:
        """Move the progress bar one step (for records logged with ``advance=False``)."""
        if self.enabled and self._bar is not None:
            self._bar.update(1)

    def log(self, record: Mapping[str, JSONValue], *, advance: bool = True) -> None:
        """Append ``record`` (it must have a ``step``); ``advance``: also move the progress bar one step."""
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        step = int(record["step"])
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"train/{k}", v, step)
        if self._bar is not None:
            if advance:
                self._bar.update(1)
            post = {k: f"{record[k]:.4g}" for k in ("loss", "lr") if isinstance(record.get(k), (int, float))}
            if post:
                self._bar.set_postfix(post, refresh=False)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._bar is not None:
            self._bar.close()
