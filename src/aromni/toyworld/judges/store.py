"""Saving and loading judges: a directory with ``config.json`` (``"type"`` names the judge) + ``model.safetensors``.

Weights are stored in fp16 (they ship in the repository) and loaded into an fp32 module.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aromni.errors import CheckpointError
from aromni.utils.io import JSONValue, atomic_path, atomic_write_json, read_json

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "judges"


def save_judge(out: str | Path, model: torch.nn.Module, config: dict[str, JSONValue]) -> None:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in model.state_dict().items()}
    with atomic_path(out / "model.safetensors", suffix=".safetensors") as tmp:
        save_file(state, str(tmp))
    atomic_write_json(out / "config.json", config)


def load_judge_files(path: str | Path, expected_type: str | tuple[str, ...]
                     ) -> tuple[dict[str, JSONValue], dict[str, torch.Tensor]]:
    """``(config, fp32 state dict)`` of a saved judge, checking its ``"type"`` (one of ``expected_type``)."""
    from safetensors.torch import load_file

    path = Path(path)
    config = read_json(path / "config.json")
    allowed = (expected_type,) if isinstance(expected_type, str) else expected_type
    if config.get("type") not in allowed:
        raise CheckpointError(
            f"{path}: config type is {config.get('type')!r}, expected {' or '.join(map(repr, allowed))}",
            "point at a judge directory saved by `aromni toyworld judges train`",
        )
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights}: no such file", "the judge directory is incomplete; retrain it")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
    return config, state


#: The shipped speech judge of each world version: version 1's word judge reads only its 97 words, so a
#: version-2 world (open vocabulary) needs one that reads any lexicon word: the phoneme judge, which reads its test
#: split's ground truth at 20% WER against the character judge's 34% (docs/toyworld.md). ``speech`` (the
#: character judge) stays the default of ``SpeechJudge.load()``, which OmniVIVO's published toy figures used.
SPEECH_JUDGES = {1: "speech_v1", 2: "speech_phonemes"}


def speech_judge_dir(world_version: int) -> Path:
    """The shipped speech judge for worlds of ``world_version``."""
    return ASSETS / SPEECH_JUDGES.get(world_version, SPEECH_JUDGES[max(SPEECH_JUDGES)])


def world_version(world: str | Path) -> int:
    """The version of a built world (its ``manifest.json``; worlds built before versions existed are 1)."""
    manifest = read_json(Path(world) / "manifest.json")
    version = manifest.get("version", 1)
    return version if isinstance(version, int) else 1


def default_judge_dir(name: str) -> Path:
    """Where the shipped judge ``name`` ("speech", "speech_phonemes", "speech_v1" or "image") lives."""
    return ASSETS / name
