from aromni.inference.events import IncrementalText
from aromni.tokenizers.text import TextTokenizer


def test_split_multibyte_characters_are_held_back_then_flushed():
    # A byte-level BPE trained on ASCII only: "é" and "€" become several byte tokens each.
    tk = TextTokenizer.train(["plain ascii text only"] * 5, 300, ["<pad>"], min_frequency=1)
    text = "café € ok"
    ids = tk.encode(text)
    inc = IncrementalText(tk)
    deltas = [inc.push([i]) for i in ids]
    assert all("\ufffd" not in d for d in deltas)  # no half character is ever shown
    assert "".join(deltas) + inc.finish() == text
    # a run cut inside a character: finish() emits the replacement char, so the stream equals the decode
    cut = tk.encode("é")[:1]
    inc.push(cut)
    assert inc.finish() == tk.decode(cut)
    assert inc.ids == [] and inc.emitted == ""
