import numpy as np
import pytest

from aromni.errors import InputError
from aromni.vocab.conversation import (
    OFFICIAL,
    PAPER,
    Conversation,
    ImageSegment,
    SpeechSegment,
    TextSegment,
    Turn,
    decode_conversation,
    encode_conversation,
)
from aromni.vocab.tasks import TASKS
from aromni.vocab.templates import OFFICIAL_CHAT_APPEND, official_chat_turn, task_conversation

IMG = np.arange(16) % 64
AUD = (np.arange(23) * 7) % 128


def _normalize(conv):
    """Merge adjacent text segments (token boundaries of separately encoded pieces are not recoverable)."""
    turns = []
    for t in conv.turns:
        segs = []
        for s in t.segments:
            if isinstance(s, TextSegment) and segs and isinstance(segs[-1], TextSegment):
                segs[-1] = TextSegment(segs[-1].text + s.text)
            else:
                segs.append(TextSegment(s.text) if isinstance(s, TextSegment) else s)
        turns.append((t.role, segs, t.assistant_prefix))
    return turns, conv.is_chat


def _inputs(task):
    spec = TASKS[task]
    kw = {}
    kw.update(text="a big red circle" if "text" in spec.inputs else None)
    kw.update(image=IMG if "image" in spec.inputs else None, speech=AUD if "speech" in spec.inputs else None)
    out = dict(response_text="a small green star" if "text" in spec.outputs else None,
               response_image=IMG[::-1].copy() if "image" in spec.outputs else None,
               response_speech=AUD[::-1].copy() if "speech" in spec.outputs else None)
    return kw, out


TEMPLATED = sorted(t.name for t in TASKS.values() if t.official_instruction or t.paper_instruction)


@pytest.mark.parametrize("style", ["official", "paper"])
@pytest.mark.parametrize("task", TEMPLATED)
def test_every_template_round_trips(toy_text, task, style):
    tk, L = toy_text
    if (TASKS[task].official_instruction if style == "official" else TASKS[task].paper_instruction) is None:
        pytest.skip(f"no {style} template")
    kw, out = _inputs(task)
    conv = task_conversation(task, style=style, **kw, **out)
    enc = encode_conversation(conv, L, tk, OFFICIAL if style == "official" else PAPER)
    back = decode_conversation(enc.ids, L, tk, OFFICIAL if style == "official" else PAPER)
    assert _normalize(back) == _normalize(conv)
    # the prompt (no response) is a prefix of the full sequence and ends with the assistant prefix
    prompt = encode_conversation(task_conversation(task, style=style, **kw), L, tk, style)
    assert np.array_equal(enc.ids[: len(prompt)], prompt.ids)
    assert not prompt.is_response.any()
    assert enc.response_start == len(prompt)


def test_official_prompts_match_reference_strings(toy_text):
    """official-formats.md §C.2, written out piece by piece."""
    tk, L = toy_text
    e = tk.encode
    img_ids = list(L.image.to_ids(IMG))
    aud_ids = list(L.speech.to_ids(AUD))
    instr = TASKS["asr"].official_instruction
    asr = encode_conversation(task_conversation("asr", speech=AUD), L, tk, OFFICIAL).ids.tolist()
    assert asr == [L.bos] + e("USER:") + e(instr) + [L.boa] + aud_ids + [L.eoa, L.eoh] + e("GPT:")
    tts = encode_conversation(task_conversation("tts", text="hello world"), L, tk, OFFICIAL).ids.tolist()
    assert tts == ([L.bos] + e("USER:") + e("Convert this text into speech.") + e("This is input: ")
                   + e("hello world") + [L.eoh] + e("GPT:"))
    t2i = encode_conversation(task_conversation("t2i", text="a red star"), L, tk, OFFICIAL).ids.tolist()
    assert t2i == ([L.bos] + e("USER:") + e(TASKS["t2i"].official_instruction) + e(" This is input: ")
                   + e("a red star") + [L.eoh] + e(" GPT:"))
    cap = encode_conversation(task_conversation("caption", image=IMG), L, tk, OFFICIAL).ids.tolist()
    assert cap == [L.bos] + e("USER:") + [L.boi] + img_ids + [L.eoi] + e("Describe this image.") + [L.eoh] + e("GPT:")


def test_official_chat_history_is_joined_with_eom(toy_text):
    tk, L = toy_text
    e = tk.encode
    t1 = official_chat_turn(speech=AUD)
    t2 = official_chat_turn(speech=AUD[:5], images=[IMG])
    conv = Conversation([t1, Turn("assistant", [TextSegment("a red star")]), t2])
    ids = encode_conversation(conv, L, tk, OFFICIAL).ids.tolist()
    aud = list(L.speech.to_ids(AUD))
    expected = ([L.bos] + e("USER:") + [L.boa] + aud + [L.eoa] + e(OFFICIAL_CHAT_APPEND) + [L.eoh] + e("GPT:")
                + e("a red star") + [L.eom]
                + e("USER:") + [L.boi] + list(L.image.to_ids(IMG)) + [L.eoi] + [L.boa]
                + list(L.speech.to_ids(AUD[:5])) + [L.eoa] + e(OFFICIAL_CHAT_APPEND) + [L.eoh] + e("GPT:"))
    assert ids == expected


def test_paper_style_puts_bos_on_every_turn_and_masks_responses(toy_text):
    tk, L = toy_text
    conv = Conversation([
        Turn("user", [SpeechSegment(AUD), TextSegment("Reply in text.")]),
        Turn("assistant", [TextSegment("hello")]),
        Turn("user", [SpeechSegment(AUD[:4]), TextSegment("Transcribe the audio and generate an image.")]),
        Turn("assistant", [TextSegment("a star"), ImageSegment(IMG)]),
    ])
    enc = encode_conversation(conv, L, tk, PAPER)
    ids = enc.ids
    assert (ids == L.bos).sum() == 2 and (ids == L.eom).sum() == 2 and (ids == L.eos).sum() == 0
    # response mask covers exactly the assistant content, markers and terminators
    resp = ids[enc.is_response]
    assert resp.tolist() == (tk.encode("hello") + [L.eom] + tk.encode("a star") + [L.boi]
                             + list(L.image.to_ids(IMG)) + [L.eoi, L.eom])
    kinds = [(s.kind, s.role, s.turn) for s in enc.spans]
    assert kinds == [("speech", "user", 0), ("text", "user", 0), ("text", "assistant", 1), ("speech", "user", 2),
                     ("text", "user", 2), ("text", "assistant", 3), ("image", "assistant", 3)]
    img = enc.spans_of("image")[0]
    assert np.array_equal(L.image.to_codes(ids[img.start:img.stop]), IMG)
    assert set(enc.turn.tolist()) == {0, 1, 2, 3}


def test_malformed_inputs_fail_clearly(toy_text):
    tk, L = toy_text
    with pytest.raises(InputError, match="alternate"):
        Conversation([Turn("assistant", [TextSegment("x")])])
    with pytest.raises(InputError, match="needs"):
        task_conversation("asr")
    with pytest.raises(InputError, match="unknown task"):
        task_conversation("dance")
    with pytest.raises(InputError, match="out of range"):
        encode_conversation(task_conversation("caption", image=[999]), L, tk)
    with pytest.raises(InputError):
        decode_conversation([L.eoh, 5, 6], L, tk)
