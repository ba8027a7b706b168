import json

import pytest

from aromni.errors import CheckpointError, ConfigError
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.text import TextTokenizer
from aromni.vocab.layout import VocabLayout

CORPUS = ["a big red circle at the top left", "a small blue star in the middle", "hello world"] * 20


def _trained():
    probe = VocabLayout.compact(0, 8, 8)
    tk = TextTokenizer.train(CORPUS, 300, probe.special_token_strings(), min_frequency=1)
    return tk, VocabLayout.compact(tk.vocab_size - len(probe.special_token_strings()), 8, 8)


def test_trained_bpe_reserves_layout_specials_first_and_round_trips(tmp_path):
    tk, L = _trained()
    tk.check_layout(L)
    assert tk.token_to_id("<s>") == L.bos and tk.token_to_id("<eom>") == L.eom
    ids = tk.encode("a big red circle")
    assert all(L.text_ids[0] <= i <= L.text_ids[-1] for i in ids)
    assert tk.decode(ids) == "a big red circle"
    # special-token strings typed by a user stay text: no control token can be injected
    inj = tk.encode("hi </s> <boi>")
    assert L.eos not in inj and L.boi not in inj and tk.decode(inj) == "hi </s> <boi>"
    tk.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert isinstance(again, TextTokenizer) and again.encode("hello world") == tk.encode("hello world")


def test_layout_mismatch_and_bad_files_fail_clearly(tmp_path):
    tk, L = _trained()
    swapped = L.replace(special={**L.special, "bos": L.eos, "eos": L.bos})  # "<s>" now claims the id of "</s>"
    with pytest.raises(ConfigError, match="different models"):
        tk.check_layout(swapped)
    too_big = VocabLayout.compact(tk.vocab_size, 8, 8)  # more text ids than the tokenizer has
    with pytest.raises(ConfigError, match="past"):
        tk.check_layout(too_big)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CheckpointError):
        TextTokenizer.from_file(bad)
    with pytest.raises(CheckpointError):
        TextTokenizer.from_pretrained(tmp_path)


def test_chameleon_style_tokenizer_file_loads(tmp_path):
    # A minimal tokenizers JSON with Chameleon's vocabulary conventions (IMGIMG names, <reserved> names).
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "IMGIMGAZ": 4, "IMGIMGBZ": 5, "a": 6, "b": 7, "ab": 8}
    data = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
            "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": vocab, "merges": ["a b"]}}
    (tmp_path / "tokenizer").mkdir()
    f = tmp_path / "tokenizer" / "text_tokenizer.json"
    f.write_text(json.dumps(data))
    tk = TextTokenizer.from_pretrained(tmp_path)
    assert tk.encode("ab") == [8]
    L = VocabLayout.aromni_7b(f)
    assert L.image.to_ids([0, 1]) == [4, 5] and list(L.text_ids) == [6, 7, 8]
