"""Judges of the papers' public benchmarks: models and metrics loaded from local files only.

- :class:`WhisperTranscriber` (ASR for WER) with :func:`normalize_english`, :func:`word_errors`,
  :func:`char_errors`, :func:`wer_from_counts` (Whisper's English normaliser, corpus WER/CER from summed counts);
- :class:`ClipScorer` (CLIPScore of text-to-image, ``100 * max(cos, 0)``);
- :class:`InceptionJudge` (FID-Inception class probabilities) and :func:`inception_score`;
- :func:`cider` (CIDEr-D of captions);
- :func:`dnsmos_scores` / :func:`mean_scores` (DNSMOS speech quality).

transformers and torch-fidelity (the ``bench`` extra) are imported only when a judge that needs them is built.
"""

from aromni.evaluation.judges.cider import cider
from aromni.evaluation.judges.clip import ClipScorer
from aromni.evaluation.judges.inception import InceptionJudge, inception_score
from aromni.evaluation.judges.normalizer import char_errors, normalize_english, wer_from_counts, word_errors
from aromni.evaluation.judges.speech_quality import dnsmos_scores, mean_scores
from aromni.evaluation.judges.whisper import WhisperTranscriber

__all__ = ["ClipScorer", "InceptionJudge", "WhisperTranscriber", "char_errors", "cider", "dnsmos_scores",
           "inception_score", "mean_scores", "normalize_english", "wer_from_counts", "word_errors"]
