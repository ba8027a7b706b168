"""Serving: continuous batching (:mod:`.batching`) and the OpenAI-compatible HTTP server (``aromni serve``)."""
