"""What a task returns: metrics (JSON-able), one row per sample (JSON-able), and media examples for the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from aromni.utils.io import JSONValue


@dataclass
class TaskResult:
    """Attributes:
        metrics: numbers of the task (fractions in [0, 1], WER as a fraction, seconds), plus ``n``.
        samples: one dict per sample (id, reference, output, verdict) for ``samples.jsonl``.
        examples: the first few generated media with their context (PIL images, waveforms), for figures only.
    """

    metrics: dict[str, JSONValue]
    samples: list[dict[str, JSONValue]] = field(default_factory=list)
    examples: list[dict[str, object]] = field(default_factory=list)


def rounded(x: JSONValue | tuple[JSONValue, ...], digits: int = 5) -> JSONValue:
    """Round floats (recursively in dicts and lists) for stable, readable JSON."""
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    return x
