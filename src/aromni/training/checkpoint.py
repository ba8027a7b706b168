"""Training checkpoints, the one on-disk format of every training run: atomic step directories, keep-last-N,
exact resume.

Every recipe (decoder pretrain / SFT, VQGAN, codec, the judges) writes the same layout::

    OUT/checkpoints/step-00000100/
      model.safetensors                the weights. The decoder: aromni format, with ``config.json`` beside it
                                       (``load_decoder`` / ``Bundle.load`` read the directory). The other recipes:
                                       every module of the recipe, keys prefixed ``<module>.``
      trainer_state.pt                 the run state: step, optimizer(s), RNG states, data position and the
                                       recipe's other state (tensors and plain values only)
      perceptual.safetensors           decoder only: W_h of the perceptual loss (when enabled; also written into
                                       the exported bundle, and loaded from ``model.init_from`` when present there)
      trainer.json                     loop recipes: step and config, for people and ``--resume``

A directory is built beside its final name and renamed into place when complete (``aromni.utils.io.atomic_dir``;
every file inside is fsynced), so a crash or SIGKILL leaves either the previous checkpoints or a complete new
one. ``trainer_state.pt`` holds only tensors and plain Python values and is read with ``weights_only=True``.
Under FSDP the full (unsharded) model and optimizer states are gathered to rank 0, which writes; a checkpoint
therefore resumes under any strategy or world size with the same global batch.
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from aromni.errors import CheckpointError
from aromni.models.checkpoint.aromni_format import load_state, save_decoder
from aromni.models.config import DecoderConfig
from aromni.models.decoder import Decoder
from aromni.training.distributed import DistInfo
from aromni.utils.io import atomic_dir, atomic_path
from aromni.utils.safe_load import load_weights_only
from aromni.vocab.layout import VocabLayout

#: A value ``torch.load(weights_only=True)`` reads back: tensors, numbers, strings, and lists / dicts of them.
StateValue = torch.Tensor | float | int | str | bool | None | list | dict
STEP_DIR = re.compile(r"^step-(\d{8})$")
#: The folder of a run's step directories, and the run-state file every step directory holds.
CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.pt"
PERCEPTUAL = "perceptual.safetensors"


# --------------------------------------------------------------------------- RNG
def capture_rng() -> dict[str, StateValue]:
    """RNG states of torch, numpy (legacy global), python and CUDA, as weights-only-loadable values."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, StateValue] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                                       float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, StateValue]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: object) -> object:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------- state gathering
def full_model_state(model: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """The unsharded model state on CPU (rank 0 gets it under FSDP; other ranks get ``{}``)."""
    if info.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, info: DistInfo) -> dict[str, StateValue]:
    """Optimizer state keyed by parameter name (unsharded; rank 0 under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    if info.strategy == "fsdp":
        return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return get_optimizer_state_dict(model, opt)


def load_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, StateValue], info: DistInfo) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if info.strategy == "fsdp":
        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_optimizer_state_dict(model, opt, state if info.is_main else {}, options=opts)
    else:
        set_optimizer_state_dict(model, opt, state)


# --------------------------------------------------------------------------- files
def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete step directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def remove_partial(root: str | Path) -> None:
    """Delete temporary directories left by a save that was killed half-way."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith(".step-"):
                shutil.rmtree(p, ignore_errors=True)


def run_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint a run in ``out`` resumes from: its latest ``checkpoints/step-N`` (``None``: none)."""
    return latest_checkpoint(Path(out) / CHECKPOINTS)


def write_step_dir(root: str | Path, step: int, keep_last: int, fill: Callable[[Path], None]) -> Path:
    """Write ``root/step-N`` atomically: ``fill(tmp)`` writes the files into a temporary sibling, which is renamed
    into place when complete; then all but the newest ``keep_last`` step directories are deleted (0: keep all)."""
    dest = step_dir(root, step)
    with atomic_dir(dest, overwrite=True) as tmp:
        fill(tmp)
    if keep_last > 0:
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def save_checkpoint(root: str | Path, step: int, *, decoder_cfg: DecoderConfig, layout: VocabLayout | None,
                    model_state: dict[str, torch.Tensor], trainer_state: dict[str, StateValue], keep_last: int) -> Path:
    """Write one step directory atomically (call on rank 0 with the gathered states) and prune old ones."""
    dec_state = {k.removeprefix("decoder."): v for k, v in model_state.items() if k.startswith("decoder.")}
    with torch.device("meta"):
        shell = Decoder(decoder_cfg)
    shell.load_state_dict(dec_state, assign=True, strict=not decoder_cfg.tie_embeddings)

    def fill(tmp: Path) -> None:
        save_decoder(shell, tmp, layout=layout)
        save_perceptual(tmp, model_state)
        write_state(tmp, trainer_state)

    return write_step_dir(root, step, keep_last, fill)


def write_state(directory: Path, state: dict[str, StateValue]) -> None:
    """``directory/trainer_state.pt`` (atomically)."""
    with atomic_path(directory / TRAINER_STATE) as f:
        torch.save(state, f)


def save_perceptual(directory: str | Path, model_state: dict[str, torch.Tensor]) -> None:
    """Write the ``perceptual.*`` entries of a model state (W_h) to ``directory/perceptual.safetensors``."""
    perc = {k.removeprefix("perceptual."): v.contiguous() for k, v in model_state.items() if k.startswith("perceptual.")}
    if perc:
        with atomic_path(Path(directory) / PERCEPTUAL) as f:
            save_file(perc, str(f))


def load_perceptual(head: nn.Module, directory: str | Path) -> bool:
    """Load W_h from ``directory/perceptual.safetensors`` into ``head`` if the file exists and fits."""
    f = Path(directory) / PERCEPTUAL
    if not f.is_file():
        return False
    state = read_safetensors(f)
    own = head.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        return False
    check_state(own, state, str(f))
    head.load_state_dict(state)
    return True


def read_safetensors(f: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{f}: unreadable safetensors file ({e})",
                              "the file is truncated or corrupt; use another checkpoint") from None


def check_state(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str) -> None:
    """Missing / unexpected tensors, wrong shapes and non-floating dtypes of ``state`` -> :class:`CheckpointError`."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = (f"tensor {missing[0]!r} is missing" if missing else f"unexpected tensor {unexpected[0]!r}")
        more = len(missing or unexpected) - 1
        raise CheckpointError(f"{source}: {what}" + (f" (and {more} more)" if more else ""),
                              "the checkpoint was written by a run with another model config")
    for k, want in expected.items():
        got = state[k]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{source}: {k!r} is a {type(got).__name__}, not a tensor", "use another checkpoint")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{source}: tensor {k!r} has shape {tuple(got.shape)}, this run expects "
                                  f"{tuple(want.shape)}", "the checkpoint was written by a run with another model config")
        if want.is_floating_point() and not got.is_floating_point():
            raise CheckpointError(f"{source}: tensor {k!r} is {got.dtype}, expected a floating-point tensor "
                                  f"({want.dtype})", "the checkpoint is damaged or not a training checkpoint")


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """``model.load_state_dict(state, strict=True)`` after :func:`check_state` (every mismatch a CheckpointError)."""
    own = model.state_dict()
    check_state(own, state, str(source))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: cannot be loaded into this run's model ({str(e).splitlines()[0]})",
                              "the checkpoint was written by a run with another model config") from None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, StateValue]]:
    """The model state (``decoder.*`` and ``perceptual.*`` keys) and the trainer state of a step directory."""
    path = Path(path)
    if not (path / TRAINER_STATE).is_file():
        raise CheckpointError(f"{path}: not a training checkpoint (no {TRAINER_STATE})",
                              "pass an OUT/checkpoints/step-* directory")
    state = {f"decoder.{k}": v for k, v in load_state(path).items()}
    if (path / PERCEPTUAL).is_file():
        state.update({f"perceptual.{k}": v for k, v in read_safetensors(path / PERCEPTUAL).items()})
    return state, read_weights_only(path / TRAINER_STATE)


def read_weights_only(f: Path) -> dict[str, StateValue]:
    """A training state file (a dict of tensors and plain values) read with ``torch.load(weights_only=True)``."""
    trainer = load_weights_only(f)
    if not isinstance(trainer, dict):
        raise CheckpointError(f"{f}: holds a {type(trainer).__name__}, not a training state",
                              "the file is damaged; resume from another checkpoint")
    return trainer
