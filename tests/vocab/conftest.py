import pytest

from aromni.tokenizers.text import TextTokenizer
from aromni.vocab.layout import VocabLayout

CORPUS = [
    "a big red circle at the top left on a white background",
    "USER: describe the image GPT: a small blue star in the middle",
    "Convert this text into speech. This is input: hello world",
    "Can you please convert this speech into written text?",
    "Create a picture that matches the essence of this text.",
    "Transcribe the audio and generate an image for the transcript. Reply in text.",
]


@pytest.fixture(scope="session")
def toy_text():
    """A small BPE and the compact layout built around it (the way models we train do it)."""
    probe = VocabLayout.compact(0, 64, 128)
    tk = TextTokenizer.train(CORPUS * 10, 420, probe.special_token_strings(), min_frequency=1)
    layout = VocabLayout.compact(tk.vocab_size - len(probe.special_token_strings()), 64, 128)
    tk.check_layout(layout)
    return tk, layout
