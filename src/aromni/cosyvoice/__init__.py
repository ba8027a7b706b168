"""CosyVoice2's speech stack, as OmniVIVO uses it (issue 15): supervised FSQ speech tokens at 25 Hz, a
conditional flow-matching token-to-mel model, and the HiFT vocoder, each loading the released files' layouts and
each with a small configuration that trains on the toy world.

Components only (torchtune's split): the training loops live in :mod:`aromni.training.recipes`.

- :mod:`.mel`: the two front ends (Whisper's 128-bin log-mel at 16 kHz for the tokenizer; Matcha-TTS's 80-bin
  log-mel at 24 kHz, 50 frames/s, for the flow model and the vocoder).
- :mod:`.data`: clips of a speech manifest (a toy world's ``speech.jsonl``).
"""
