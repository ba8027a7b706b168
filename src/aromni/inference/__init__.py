"""Inference: decoding options, sampling, the modality state machine, CFG, the generation engine, streaming
speech, tasks (``OmniModel``), chat sessions and the dialog runner. See ``docs/inference.md``."""

from aromni.inference.engine import Engine, Generation, GenerationStream, Step
from aromni.inference.options import DecodeOptions, ImageSampling, TextSampling, task_options

__all__ = ["DecodeOptions", "Engine", "Generation", "GenerationStream", "ImageSampling", "OmniModel", "Step",
           "TextSampling", "task_options"]


def __getattr__(name: str):
    # OmniModel pulls in the bundle and tokenizer modules; import it only when asked for.
    if name == "OmniModel":
        from aromni.inference.omni import OmniModel

        return OmniModel
    raise AttributeError(name)
