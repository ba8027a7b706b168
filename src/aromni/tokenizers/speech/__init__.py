"""Speech tokenizers: ``wavtokenizer/`` (compatible with the official WavTokenizer checkpoints) and ``codec/``
(our exactly-streaming codec), plus the shared audio I/O."""
