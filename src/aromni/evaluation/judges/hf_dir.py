"""Checks on a local transformers model directory before any weights are read (the judges never download).

A judge's directory must hold ``config.json`` with the expected ``model_type``, the weights
(``model.safetensors``, ``pytorch_model.bin`` or their sharded ``*.index.json``) and the processor's files (a
tokenizer: ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``; a feature extractor / image processor:
``preprocessor_config.json`` or ``processor_config.json``). Anything else is one :class:`CheckpointError` line;
a path that is not a directory is an :class:`InputError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors import SafetensorError

from aromni.errors import CheckpointError, InputError
from aromni.utils.io import read_json

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
#: What transformers raises for a directory whose files are present but unreadable or inconsistent.
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def contents(model_type: str) -> str:
    """What a valid directory holds, for the hint of every error."""
    return (f"a local {model_type} model directory (as save_pretrained writes it) holds config.json with "
            f"model_type '{model_type}', model.safetensors or pytorch_model.bin, a tokenizer (tokenizer.json or "
            "vocab.json + merges.txt) and preprocessor_config.json")


def check_model_dir(directory: str | os.PathLike[str], model_type: str) -> Path:
    """``directory`` as a ``Path`` once it looks like a saved ``model_type`` model with its processor.

    Raises:
        InputError: the path does not exist or is not a directory.
        CheckpointError: a missing or malformed config, another model type, missing weights or processor files.
    """
    path = Path(directory)
    hint = contents(model_type)
    if not path.is_dir():
        raise InputError(f"{model_type} model directory {path} does not exist or is not a directory", hint)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path} has no config.json", hint)
    try:
        config = read_json(config_path)
    except InputError as e:
        raise CheckpointError(f"{config_path} is not a readable model config: {e.problem}", hint) from None
    found = config.get("model_type") if isinstance(config, dict) else None
    if found != model_type:
        raise CheckpointError(f"{path} holds a model of type {found!r}, not {model_type!r}", hint)
    for kind, names in (("weights", WEIGHT_FILES), ("tokenizer", TOKENIZER_FILES),
                        ("feature extractor / image processor config", PROCESSOR_FILES)):
        if not any((path / name).is_file() for name in names):
            raise CheckpointError(f"{path} has no {kind} file ({' or '.join(names)})", hint)
    return path


def load_failed(path: Path, model_type: str, error: Exception) -> CheckpointError:
    """One line for a directory that passed :func:`check_model_dir` but that transformers could not load."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointError(f"transformers could not load the {model_type} model in {path}: {first}",
                           contents(model_type))
