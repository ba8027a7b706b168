"""Inference: decoding options, sampling, the modality state machine, CFG, the generation engine, streaming
speech, tasks (``OmniModel`` in :mod:`aromni.inference.omni`, also :class:`aromni.OmniModel`), chat sessions and
the dialog runner. See ``docs/inference.md``.

``OmniModel`` is not re-exported here: it loads bundles (:mod:`aromni.bundle`), which check their saved decoding
options with this package's :class:`DecodeOptions`, so importing it from the package would make a circle."""

from aromni.inference.engine import Engine, Generation, GenerationStream, Step
from aromni.inference.options import DecodeOptions, ImageSampling, TextSampling, task_options

__all__ = ["DecodeOptions", "Engine", "Generation", "GenerationStream", "ImageSampling", "Step", "TextSampling",
           "task_options"]
