"""The output directory of a training run: created for a new run, refused when it holds another run (unless
``--overwrite``), left as is for ``--resume`` (which needs a checkpoint there). One rule for every recipe."""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path

from aromni.errors import InputError
from aromni.training.loop import checkpoint_meta

__all__ = ["prepare_run_dir"]


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool, run_files: Collection[str],
                    run_dirs: Collection[str], keep: Collection[str] = ()) -> None:
    """Make ``out`` ready for a run.

    Args:
        resume: the run continues: ``out`` must hold a checkpoint, and nothing is touched.
        overwrite: a new run may replace the run in ``out``; only the recipe's own ``run_files`` and ``run_dirs``
            are deleted (never anything else a user keeps there).
        keep: entries that do not make ``out`` "a run to protect" (e.g. a fingerprinted cache a failed start left).
    """
    if resume:
        if checkpoint_meta(out) is None:
            raise InputError(f"{out}: no checkpoint to resume from", "drop --resume to start a new run")
        return
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a directory", "pass a directory for --out")
    if out.is_dir() and any(p.name not in keep for p in out.iterdir()):
        if not overwrite:
            raise InputError(f"{out} already exists and is not empty",
                             "pass --resume to continue its run, --overwrite to start over, or another --out")
        for name in run_files:
            (out / name).unlink(missing_ok=True)
        for name in run_dirs:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
