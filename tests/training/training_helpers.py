"""Helpers of the training tests (imported by the test modules of this directory)."""

from __future__ import annotations

import numpy as np

from aromni.training.data.shards import Sample, write_manifest, write_samples
from aromni.vocab.conversation import Span
from aromni.vocab.layout import VocabLayout


class Words:
    """Whitespace tokenizer that assigns text ids on first sight (deterministic for a fixed call order)."""

    def __init__(self, layout: VocabLayout):
        self.start, self.stop = layout.text_runs[0]
        self.vocab: dict[str, int] = {}

    def encode(self, text: str) -> list[int]:
        out = []
        for w in text.split():
            if w not in self.vocab:
                self.vocab[w] = self.start + len(self.vocab)
                assert self.vocab[w] < self.stop
            out.append(self.vocab[w])
        return out


def plain_sample(n: int, group: str, layout: VocabLayout, source: str, task: str = "text") -> Sample:
    """``n`` text ids (first half prompt, second half response) with a text span per half."""
    lo = layout.text_runs[0][0]
    ids = lo + (np.arange(n) % 30)
    resp = np.zeros(n, dtype=bool)
    resp[n // 2:] = True
    spans = [Span("text", 0, n // 2, "user", 0), Span("text", n // 2, n, "assistant", 1)]
    return Sample(ids.astype(np.int64), resp, spans, task, group, source)


def write_group_shards(root, layout: VocabLayout, sizes: dict[str, int], lengths=(5, 30), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    samples = []
    for g, n in sizes.items():
        for i in range(n):
            samples.append(plain_sample(int(rng.integers(*lengths)), g, layout, f"{g}-{i}"))
    rng.shuffle(samples)
    write_samples(root, "train", samples, rows_per_shard=64)
    write_manifest(root, layout, {"train": {"rows": len(samples)}}, {})


def tiny_overrides(data_root, out, **extra) -> list[str]:
    """CLI overrides of a seconds-long run of a tiny model on the synthetic corpus."""
    base = {
        "out": str(out), "num_threads": 1, "data.root": str(data_root), "data.seq_len": 64, "data.micro_batch": 2,
        "model.decoder": "{preset: tiny, dim: 32, n_layers: 2, n_heads: 2, n_kv_heads: 2, ffn_dim: 64, "
                         "max_seq_len: 64}",
        "perceptual.table": str(data_root / "image_codebook.safetensors"), "optim.lr": 3e-3,
        "optim.max_steps": 6, "optim.grad_accum": 2, "checkpoint.every": 2, "checkpoint.keep_last": 10,
        "log.progress": False,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300) -> str:
    """Run ``aromni train pretrain ARGS`` under torchrun with ``nproc`` CPU processes (gloo); return the log."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "aromni", "train", "pretrain", *args]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-8000:]
    return log


def run_in_process(args: list[str]) -> dict:
    """``aromni train pretrain ARGS`` in this process (restores the torch thread count afterwards)."""
    import torch

    from aromni.training.recipes import pretrain
    from aromni.training.trainer import Trainer

    threads = torch.get_num_threads()
    try:
        return Trainer(pretrain.config(None, args)).fit()
    finally:
        torch.set_num_threads(threads)
