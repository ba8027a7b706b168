"""Run one public suite on one model: read and select the samples, evaluate this rank's unfinished ones in
batches (one atomic record each), then merge on rank 0 once every shard is complete.

``run_suite`` is the same code for one CPU process (rank 0 of 1) and for each rank under torchrun.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from aromni.evaluation.context import SuiteContext, SuiteSettings
from aromni.evaluation.datasets import EvalSample, select
from aromni.evaluation.records import RecordStore
from aromni.evaluation.scoring import Judges
from aromni.evaluation.sharding import Shard, barrier, mark_done, wait_for_shards
from aromni.evaluation.suites import Suite
from aromni.inference.omni import OmniModel
from aromni.omnivivo.api import VivoPipeline
from aromni.utils.io import JSONValue, atomic_write_json


@dataclass
class SuiteRun:
    """One (model, suite) evaluation.

    Attributes:
        suite: the benchmark.
        data: its dataset directory (the suite's published layout).
        out: the run directory (records, markers, metrics.json).
        model_name: the row name in the report.
        model_info: what the model is (path, parameters, ...), recorded for reproducibility.
        settings: the protocol settings.
        progress: a tqdm bar on a terminal.
        merge_timeout_s: how long rank 0 waits for the other shards.
        save_media: keep the generated images and speech in ``out/media/``.
    """

    suite: Suite
    data: Path | None
    out: Path
    model_name: str
    model_info: dict[str, JSONValue]
    settings: SuiteSettings = field(default_factory=SuiteSettings)
    progress: bool = True
    merge_timeout_s: float = 24 * 3600.0
    save_media: bool = False

    def selection(self) -> list[EvalSample]:
        limit = self.settings.limit if self.settings.limit is not None else self.suite.default_limit
        return select(self.suite.read(self.data), limit, self.settings.seed)

    def claim_settings(self, judges: Judges, chosen: list[EvalSample]) -> dict[str, JSONValue]:
        """What must not change when a run is resumed (``run.json``)."""
        ids = hashlib.sha256("\n".join(s.id for s in chosen).encode()).hexdigest()[:16]
        return {"suite": self.suite.name, "data": str(Path(self.data).resolve()) if self.data else None,
                "model": self.model_info, "judges": judges.spec.describe(), "settings": self.settings.to_dict(),
                "samples": len(chosen), "sample_ids_sha256": ids}


def run_suite(run: SuiteRun, model: OmniModel | VivoPipeline, judges: Judges, shard: Shard = Shard(),
              log: Callable[[str], None] = lambda s: None) -> dict[str, JSONValue] | None:
    """Evaluate ``shard``'s samples of ``run``; on rank 0 wait for every shard and return the merged result
    (also written to ``out/metrics.json``); other ranks return ``None``."""
    t0 = time.perf_counter()
    chosen = run.selection()
    judges.require(run.suite.judges, run.suite.name)
    store = RecordStore(run.out)
    store.claim(run.claim_settings(judges, chosen))
    index = {s.id: i for i, s in enumerate(chosen)}
    mine = shard.take(chosen)
    todo = [s for s in mine if not store.has(s.id)]
    log(f"{run.suite.name} / {run.model_name}: {len(chosen)} samples, rank {shard.rank} of {shard.world} has "
        f"{len(mine)} ({len(mine) - len(todo)} already done)")
    ctx = SuiteContext(run.suite.name, model, judges, run.settings, run.out / "media" if run.save_media else None)
    bs = run.settings.batch_size
    with tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"{run.suite.name} [{shard.rank}/{shard.world}]",
              file=sys.stderr, leave=False, disable=not run.progress or not sys.stderr.isatty()) as bar:
        for start in range(0, len(todo), bs):
            batch = todo[start:start + bs]
            with torch.inference_mode():
                records = run.suite.batch(ctx, batch)
            for s, rec in zip(batch, records):
                store.write(s.id, {"index": index[s.id], **rec})
            bar.update(len(batch))
    mark_done(run.out, shard, len(mine))
    seconds = time.perf_counter() - t0
    barrier()
    if not shard.is_main:
        return None
    ids = [s.id for s in chosen]
    wait_for_shards(run.out, shard, lambda: store.complete(ids), timeout_s=run.merge_timeout_s)
    return merge(run, judges, store, ids, seconds, shard, str(model.device))


def merge(run: SuiteRun, judges: Judges, store: RecordStore, ids: list[str], seconds: float, shard: Shard,
          device: str) -> dict[str, JSONValue]:
    """Corpus metrics from every record (in selection order), with what was evaluated and how."""
    records = store.read_all(ids)
    result: dict[str, JSONValue] = {
        "suite": run.suite.name, "table": run.suite.table, "model_name": run.model_name, "model": run.model_info,
        "data": {"dir": str(Path(run.data).resolve()) if run.data else None, "layout": run.suite.dataset,
                 "samples": len(ids), "default_limit": run.suite.default_limit},
        "judges": judges.describe(run.suite.judges, dnsmos=run.settings.dnsmos and run.suite.speech_out),
        "settings": run.settings.to_dict(),
        "metrics": run.suite.metrics(records),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
                    "threads": torch.get_num_threads(), "world_size": shard.world, "device": device},
        "seconds_rank0": round(seconds, 2), "records": str(store.samples),
    }
    atomic_write_json(run.out / "metrics.json", result)
    return result
