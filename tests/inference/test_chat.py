"""Chat sessions: official prompt and history format, overflow trimming with a warning, interleaved replies."""

import warnings

import numpy as np
import pytest
from tinyparts import biased

from aromni.bundle import Bundle
from aromni.errors import InputError
from aromni.inference.chat import HistoryTruncatedWarning
from aromni.inference.omni import OmniModel
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.vocab.templates import OFFICIAL_CHAT_APPEND


def model_with(tiny_parts, boosts, seed=0, **decoder):
    text, layout, image, speech = tiny_parts
    return OmniModel(Bundle(decoder=biased(layout, boosts, seed=seed, **decoder), layout=layout, text=text,
                            image=image, speech=speech))


def test_user_turn_and_history_follow_the_official_format(tiny_parts):
    tk, layout = tiny_parts[0], tiny_parts[1]
    m = model_with(tiny_parts, {"eom": 2.0})
    chat = m.chat(seed=0, options={"max_new_tokens": 12})
    turn1 = chat.user_turn_ids(text="hello world")
    assert turn1 == (tk.encode("USER:") + tk.encode("hello world") + tk.encode(OFFICIAL_CHAT_APPEND) + [layout.eoh]
                     + tk.encode("GPT:"))
    r1 = chat.send(text="hello world")
    r2 = chat.send(text="a big red circle")
    turn2 = chat.user_turn_ids(text="a big red circle")
    reply1 = r1.tokens if r1.tokens[-1] == layout.eom else r1.tokens + [layout.eom]
    assert chat.history[0] == turn1 + reply1
    # the second prompt is <bos> + turn 1 (ending in <eom>) + turn 2
    assert r2.prompt_tokens == 1 + len(turn1) + len(reply1) + len(turn2)
    prompt3, dropped = chat.build_prompt(turn1)
    assert dropped == 0 and prompt3 == [layout.bos] + chat.history[0] + chat.history[1] + turn1
    chat.reset()
    assert chat.history == [] and chat.build_prompt(turn1)[0] == [layout.bos] + turn1


def test_audio_and_images_go_in_as_spans(tiny_parts, tmp_path):
    layout, image, speech = tiny_parts[1], tiny_parts[2], tiny_parts[3]
    m = model_with(tiny_parts, {})
    wav = tmp_path / "q.wav"
    save_wav(wav, np.sin(np.arange(8000) / 7.0).astype(np.float32) * 0.3, 16000)
    pic = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (20, 20), (200, 30, 30)).save(pic)
    ids = m.chat().user_turn_ids(audio=str(wav), images=[str(pic)], text="and this")
    i_boi, i_boa = ids.index(layout.boi), ids.index(layout.boa)
    assert i_boi < i_boa and ids[i_boi + 1 + image.codes_per_image] == layout.eoi
    n_frames = ids.index(layout.eoa) - i_boa - 1
    assert n_frames == -(-8000 // speech.hop_length)
    with pytest.raises(InputError, match="no such audio file"):
        m.chat().user_turn_ids(audio=str(tmp_path / "missing.wav"))
    with pytest.raises(InputError, match="needs text or audio"):
        m.chat().user_turn_ids()


def test_history_overflow_drops_the_oldest_turns_with_a_warning(tiny_parts):
    m = model_with(tiny_parts, {"eom": 30.0}, max_seq_len=160)
    chat = m.chat(seed=0, reserve_tokens=20)
    long_text = "a big red circle at the top left on a white background " * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            chat.send(text=long_text)  # each turn ~ 50 tokens: a third no longer fits with both before it
    assert len(chat.history) == 2
    with pytest.warns(HistoryTruncatedWarning, match="dropped the oldest"):
        reply = chat.send(text=long_text)
    assert reply.dropped_turns >= 1 and reply.prompt_tokens + chat.reserve_tokens <= 160
    with pytest.raises(InputError, match="does not fit the context"):
        chat.send(text=long_text * 6)


def test_interleaved_reply_is_split_and_decoded(tiny_parts):
    layout, image = tiny_parts[1], tiny_parts[2]
    m = model_with(tiny_parts, {"boi": 12.0, "boa": 6.0, "eoa": 4.0, "eos": -20.0, "eom": -20.0}, seed=1)
    chat = m.chat(seed=3, options={"max_new_tokens": 160, "image": {"cfg": False}})
    events = list(chat.stream(text="hello world"))
    reply = events[-1].value
    kinds = {e.kind for e in events}
    assert reply.images and reply.images[0].size == (image.image_size, image.image_size)
    assert "image" in kinds
    if any(layout.boa == t for t in reply.tokens):
        assert reply.audio and "speech" in kinds and reply.audio[0].dim() == 1
    assert reply.text == "".join(e.value for e in events if e.kind == "text").strip()
