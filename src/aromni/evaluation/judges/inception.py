"""Inception Score with the FID Inception network (pt_inception-2015-12-05) from a LOCAL weights file.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TF-compatible port of the 2015-12-05
Inception that FID/IS papers use: TF1-style bilinear resize of uint8 images to 299x299, ``(x - 128) / 128``,
1008 classes). Class probabilities are the softmax of its ``logits_unbiased`` (the logits without the fc bias, as
torch-fidelity's and torchmetrics' Inception Scores use). Weights are never downloaded: pass the converted file
torch-fidelity publishes (``weights-inception-2015-12-05-6726825d.pth``) or any state dict in its layout.

Two deviations from calling torch-fidelity directly, both for house rules, neither changing a number:

- the file is read with ``torch.load(weights_only=True)`` first (a pickle with arbitrary objects is refused with a
  one-line :class:`CheckpointError`), and torch-fidelity's own load (it passes ``weights_only=False``) runs with
  ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` set, so it cannot execute pickled code either;
- torch-fidelity's package ``__init__`` imports torchvision (for its datasets); where torchvision is missing or
  cannot load (a CUDA torchvision wheel beside a CPU torch), the Inception module is imported from the installed
  torch-fidelity without running that ``__init__`` (it needs only torch).

:func:`inception_score` is the standard ``exp(E_x KL(p(y|x) || p(y)))`` over ``splits`` chunks (mean, std), with
torch-fidelity's defaults: rows shuffled with ``numpy.random.RandomState(2020)`` and chunk ``i`` holding rows
``i*N//splits`` to ``(i+1)*N//splits``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from aromni.errors import CheckpointError, InputError, MissingExtraError
from aromni.utils.device import resolve_device
from aromni.utils.io import JSONValue
from aromni.utils.safe_load import load_pth

if TYPE_CHECKING:
    from PIL.Image import Image

N_CLASSES = 1008
_MODULE = "torch_fidelity.feature_extractor_inceptionv3"
_HINT = ("pass the FID Inception weights file (torch-fidelity's weights-inception-2015-12-05-6726825d.pth, a "
         "state dict of Conv2d_1a_3x3 ... Mixed_7c and fc [1008, 2048])")


def fidelity_inception_module() -> ModuleType:
    """torch-fidelity's Inception module, imported without its package ``__init__`` when torchvision fails."""
    with contextlib.suppress(ImportError, RuntimeError, OSError):
        return importlib.import_module(_MODULE)
    if _MODULE in sys.modules:  # the submodule loaded before the package __init__ failed on torchvision
        return sys.modules[_MODULE]
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the Inception Score needs the 'torch-fidelity' package, which is not installed",
                                'pip install "aromni[bench]"')
    saved = sys.modules.get("torch_fidelity")
    sys.modules["torch_fidelity"] = importlib.util.module_from_spec(spec)  # a bare package: __init__ not run
    try:
        return importlib.import_module(_MODULE)
    finally:
        if saved is None:
            del sys.modules["torch_fidelity"]
        else:
            sys.modules["torch_fidelity"] = saved


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


class InceptionJudge:
    """FID Inception class probabilities of images, for the Inception Score."""

    def __init__(self, weights: Path, *, device: str = "cpu", batch_size: int = 32):
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.weights = Path(weights)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        if not self.weights.is_file():
            raise CheckpointError(f"Inception weights file {self.weights} does not exist", _HINT)
        state = load_pth(self.weights)  # one-line errors for unreadable files and arbitrary pickles
        fc = state.get("fc.weight")
        if not isinstance(fc, torch.Tensor) or tuple(fc.shape) != (N_CLASSES, 2048):
            raise CheckpointError(f"{self.weights} is not the FID Inception layout (no fc.weight [1008, 2048])", _HINT)
        module = fidelity_inception_module()
        try:
            with _weights_only_loads():
                model = module.FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased"],
                                                           feature_extractor_weights_path=str(self.weights))
        except RuntimeError as e:  # load_state_dict: missing / unexpected keys or shapes
            detail = " ".join(str(e).split())[:300]
            raise CheckpointError(f"{self.weights} is not the FID Inception layout: {detail}", _HINT) from None
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def probs(self, images: Sequence[Image]) -> np.ndarray:
        """Softmax class probabilities ``[N, 1008]`` (float64) of PIL images (any size or mode, made RGB).

        Images of one size are batched together (the network resizes each to 299x299 itself); the result does not
        depend on the batch size beyond float rounding.
        """
        arrays = [np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images]
        out = np.zeros((len(arrays), N_CLASSES), dtype=np.float64)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        for rows in groups.values():
            for start in range(0, len(rows), self.batch_size):
                idx = rows[start:start + self.batch_size]
                x = torch.from_numpy(np.stack([arrays[i] for i in idx])).permute(0, 3, 1, 2).contiguous()
                (logits,) = self.model(x.to(self.device))
                out[idx] = torch.softmax(logits.double(), dim=1).cpu().numpy()
        return out

    def describe(self) -> dict[str, JSONValue]:
        """What the report records: the weights file, the network, the probabilities used."""
        return {"judge": "inception", "weights": str(self.weights), "network": "torch-fidelity inception-v3-compat "
                "(pt_inception-2015-12-05)", "classes": N_CLASSES, "probabilities": "softmax(logits_unbiased)",
                "device": str(self.device)}


def inception_score(probs: np.ndarray, splits: int = 10, *, shuffle_seed: int | None = 2020) -> tuple[float, float]:
    """``(mean, std)`` over ``splits`` chunks of ``exp(mean_x KL(p(y|x) || p(y)))``, ``p(y)`` the chunk's mean.

    Args:
        probs: ``[N, C]`` class probabilities (rows summing to 1), e.g. :meth:`InceptionJudge.probs` of all shards.
        splits: number of chunks (10 in the papers).
        shuffle_seed: rows are permuted with ``RandomState(seed)`` first, as torch-fidelity does; ``None``: no shuffle.

    Raises:
        InputError: not a 2-D array, fewer rows than ``splits``, or negative / non-finite probabilities.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or splits < 1 or p.shape[0] < splits:
        raise InputError(f"inception_score needs [N, C] probabilities with N >= splits, got shape {p.shape} and "
                         f"splits={splits}", "score at least as many images as splits")
    if not np.isfinite(p).all() or (p < 0).any():
        raise InputError("inception_score got negative or non-finite probabilities", "pass softmax outputs")
    if shuffle_seed is not None:
        p = p[np.random.RandomState(shuffle_seed).permutation(p.shape[0])]
    n = p.shape[0]
    scores = []
    for i in range(splits):
        chunk = p[i * n // splits:(i + 1) * n // splits]
        marginal = chunk.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(chunk > 0, chunk * (np.log(chunk) - np.log(marginal)), 0.0).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))
