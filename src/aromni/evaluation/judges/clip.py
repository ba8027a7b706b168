"""CLIPScore of text-to-image generation from a local CLIP directory.

Per (image, text) pair: ``100 * max(cos(image_embedding, text_embedding), 0)``, the projected embeddings of
transformers' ``CLIPModel`` (``get_image_features`` / ``get_text_features``). This is the "CLIP score" that
text-to-image papers report and torchmetrics' ``CLIPScore`` computes; Hessel et al.'s CLIP-S instead scales the
clipped cosine by 2.5, so multiply our score by 0.025 to compare with it. Texts longer than CLIP's text context
(77 tokens for every released CLIP) are truncated to it, start and end tokens included; images go through the
directory's image processor (resize + centre crop to the model's resolution).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from aromni.errors import InputError
from aromni.evaluation.judges.hf_dir import LOAD_ERRORS, check_model_dir, load_failed
from aromni.utils.device import resolve_device
from aromni.utils.extras import optional
from aromni.utils.io import JSONValue

if TYPE_CHECKING:
    from PIL.Image import Image


def _embedding(out: torch.Tensor | object) -> torch.Tensor:
    """transformers 4 returns the projected embeddings; 5 an output whose ``pooler_output`` holds them."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipScorer:
    """A CLIP checkpoint read from ``directory`` (never downloaded) scoring image-text pairs."""

    def __init__(self, directory: str | os.PathLike[str], *, device: str = "cpu", batch_size: int = 16):
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.path = check_model_dir(directory, "clip")
        self.device = resolve_device(device)
        self.batch_size = batch_size
        transformers = optional("transformers", extra="bench", feature="the CLIP score judge")
        try:
            self.processor = transformers.CLIPProcessor.from_pretrained(self.path, local_files_only=True)
            self.model = transformers.CLIPModel.from_pretrained(self.path, local_files_only=True).to(self.device)
        except LOAD_ERRORS as e:
            raise load_failed(self.path, "clip", e) from None
        self.model.eval()
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)

    def score(self, images: Sequence[Image], texts: Sequence[str]) -> list[float]:
        """``100 * max(cos, 0)`` for each pair ``(images[i], texts[i])`` (PIL images, any size or mode).

        Raises:
            InputError: the lists differ in length.
        """
        if len(images) != len(texts):
            raise InputError(f"{len(images)} images but {len(texts)} texts", "pass one text per image")
        out: list[float] = []
        for start in range(0, len(images), self.batch_size):
            out.extend(self._batch(images[start:start + self.batch_size], texts[start:start + self.batch_size]))
        return out

    @torch.inference_mode()
    def _batch(self, images: Sequence[Image], texts: Sequence[str]) -> list[float]:
        rgb = [im.convert("RGB") for im in images]
        pixels = self.processor.image_processor(images=rgb, return_tensors="pt").pixel_values
        tokens = self.processor.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                          return_tensors="pt")
        img = _embedding(self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype)))
        txt = _embedding(self.model.get_text_features(input_ids=tokens.input_ids.to(self.device),
                                                      attention_mask=tokens.attention_mask.to(self.device)))
        cos = torch.nn.functional.cosine_similarity(img.float(), txt.float(), dim=-1)
        return (100 * cos.clamp(min=0)).tolist()

    def describe(self) -> dict[str, JSONValue]:
        """What the report records about the judge: directory, name, sizes, the score's convention."""
        cfg = self.model.config
        return {"judge": "clip", "directory": str(self.path), "name": self.path.name,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "image_size": cfg.vision_config.image_size, "patch_size": cfg.vision_config.patch_size,
                "projection_dim": cfg.projection_dim, "max_text_tokens": self.max_tokens,
                "score": "100 * max(cos(image, text), 0)", "dtype": str(self.model.dtype).removeprefix("torch."),
                "device": str(self.device)}
