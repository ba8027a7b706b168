"""Evaluation on the papers' public benchmarks (issue 16).

``aromni.evaluation.judges`` holds the scoring models and metrics (Whisper ASR + the English WER normaliser,
CLIPScore, Inception Score, CIDEr-D, DNSMOS); the suites, datasets, sharding and reports sit beside it.
"""
