"""A procedurally generated tri-modal toy world (images of shapes, espeak-ng speech, text) and its judges.

The world is small and closed so that a ~10–25 M parameter autoregressive model can learn it on 2 CPU cores:
one shape per 64×64 image, a few dozen words, 2–3 s utterances. ``build_world`` writes typed dialog records
(JSONL) that reference media files; the judges in :mod:`aromni.toyworld.judges` read speech and images back
independently of the model under test. See ``docs/toyworld.md``.
"""

from aromni.toyworld.attributes import WORLD_VERSION

__all__ = ["WORLD_VERSION"]
