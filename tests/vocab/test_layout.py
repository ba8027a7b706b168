import json

import numpy as np
import pytest
import torch

from aromni.errors import ConfigError, InputError
from aromni.vocab.layout import SPECIAL_ROLES, CodeRange, VocabLayout, imgimg_code


def test_official_ids_follow_the_reference():
    L = VocabLayout.aromni_7b()
    assert L.vocab_size == 65536
    # official-formats.md §C.1
    assert (L.bos, L.pad, L.eos, L.eoi, L.boi) == (0, 1, 2, 8196, 8197)
    assert (L.eoa, L.boa, L.eoh, L.eom, L.ins, L.res) == (12820, 12821, 12830, 12831, 12840, 12841)
    assert L.image.to_ids([0, 8191]) == [4, 8195]
    assert L.speech.to_ids([0, 4095]) == [8724, 12819]
    # <reservedNNNNN> names have id NNNNN + 4
    assert L.special_names["eoh"] == "<reserved12826>"


def test_code_maps_are_vectorized_and_invert():
    L = VocabLayout.compact(n_text=300, n_image=256, n_speech=512)
    codes = torch.randint(0, 256, (3, 7))
    ids = L.image.to_ids(codes)
    assert ids.shape == codes.shape and bool(L.image.contains(ids).all())
    assert torch.equal(L.image.to_codes(ids), codes)
    arr = np.arange(512)
    assert np.array_equal(L.speech.to_codes(L.speech.to_ids(arr)), arr)
    with pytest.raises(InputError):
        L.image.to_codes(torch.tensor([L.bos]))
    with pytest.raises(InputError):
        L.speech.to_ids([512])


def test_compact_layout_is_contiguous_and_padded():
    L = VocabLayout.compact(n_text=1000, n_image=1024, n_speech=1024, pad_to_multiple=64)
    assert L.vocab_size % 64 == 0
    text = L.mask("text")
    image, speech, special = L.mask("image"), L.mask("speech"), L.mask("special")
    assert int(text.sum()) == 1000 and int(image.sum()) == 1024 and int(speech.sum()) == 1024
    assert int(special.sum()) == len(SPECIAL_ROLES)
    assert not bool((text & image).any() or (image & speech).any() or (text & speech).any())
    assert L.special_token_strings()[: len(SPECIAL_ROLES)][1] == "<s>"


def test_table_maps_through_imgimg_names(tmp_path):
    # A tokenizer file whose image names are scrambled (non-monotone) must be honoured name by name.
    names = ["IMGIMGAZ", "IMGIMGBZ", "IMGIMGCZ", "IMGIMGBAZ"]  # codes 0, 1, 2, 10
    assert [imgimg_code(n) for n in names] == [0, 1, 2, 10]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "hello": 20000, "world": 20001}
    ids = list(range(4, 15))
    rng = np.random.default_rng(0)
    rng.shuffle(ids)
    for code, i in enumerate(ids):
        digits = "".join(chr(ord("A") + int(d)) for d in str(code))
        vocab[f"IMGIMG{digits}Z"] = int(i)
    f = tmp_path / "text_tokenizer.json"
    f.write_text(json.dumps({"model": {"vocab": vocab}}))
    L = VocabLayout.aromni_7b(f)
    assert L.image.to_ids(list(range(11))) == ids
    assert L.image.to_codes(ids) == list(range(11))
    assert not L.image.is_contiguous
    assert list(L.text_ids) == [20000, 20001]
    assert VocabLayout.from_dict(json.loads(json.dumps(L.to_dict()))) == L


def test_serialization_round_trip():
    for L in (VocabLayout.aromni_7b(), VocabLayout.compact(10, 20, 30)):
        again = VocabLayout.from_dict(json.loads(json.dumps(L.to_dict())))
        assert again == L and again.bos == L.bos
        assert torch.equal(again.mask("text"), L.mask("text"))


def test_overlaps_and_out_of_range_fail_clearly():
    L = VocabLayout.compact(10, 20, 30, pad_to_multiple=1)
    with pytest.raises(ConfigError, match="past the vocabulary size"):
        L.replace(vocab_size=L.vocab_size - 1)
    with pytest.raises(ConfigError, match="overlap|is also"):
        L.replace(speech=CodeRange.contiguous("speech", L.image.start + 5, 30))
    with pytest.raises(ConfigError, match="both"):
        L.replace(special={**L.special, "eom": L.special["eoh"]})
    with pytest.raises(ConfigError, match="lacks special"):
        L.replace(special={k: v for k, v in L.special.items() if k != "boa"})
    with pytest.raises(ConfigError, match="malformed"):
        VocabLayout.from_dict({"name": "x"})
