import numpy as np

from aromni.vocab.conversation import ImageSegment, SpeechSegment, TextSegment
from aromni.vocab.segmenter import split_segments


def test_interleaved_reply_splits_into_typed_segments(toy_text):
    tk, L = toy_text
    img, aud = np.arange(16), np.arange(9)
    ids = (tk.encode("a red star") + [L.boi] + list(L.image.to_ids(img)) + [L.eoi] + [L.boa]
           + list(L.speech.to_ids(aud)) + [L.eoa] + tk.encode("done") + [L.eom] + [L.bos])
    out = split_segments(ids, L, tk, image_tokens=16)
    assert out.terminated_by == L.eom and out.consumed == len(ids) - 1
    assert [type(s) for s in out.segments] == [TextSegment, ImageSegment, SpeechSegment, TextSegment]
    assert out.segments[0].text == "a red star" and out.segments[3].text == "done"
    assert out.segments[1] == ImageSegment(img) and out.segments[2] == SpeechSegment(aud)


def test_truncated_spans_are_incomplete_not_errors(toy_text):
    tk, L = toy_text
    # image cut off before <eoi>
    out = split_segments([L.boi] + list(L.image.to_ids(np.arange(5))), L, tk, image_tokens=16)
    assert out.terminated_by is None and len(out.segments) == 1
    seg = out.segments[0]
    assert isinstance(seg, ImageSegment) and not seg.complete and list(seg.codes) == list(range(5))
    # closed image with too few codes
    out = split_segments([L.boi] + list(L.image.to_ids(np.arange(5))) + [L.eoi], L, tk, image_tokens=16)
    assert not out.segments[0].complete
    # speech interrupted by text: speech incomplete, text follows
    ids = [L.boa] + list(L.speech.to_ids([3, 4])) + tk.encode("hi")
    out = split_segments(ids, L, tk)
    assert isinstance(out.segments[0], SpeechSegment) and not out.segments[0].complete
    assert out.segments[1].text == "hi"
    # bare speech codes (no <boa>) count as speech, as the official decoder accepts them
    out = split_segments(list(L.speech.to_ids([1, 2, 3])) + [L.eoa], L, tk)
    assert isinstance(out.segments[0], SpeechSegment) and list(out.segments[0].codes) == [1, 2, 3]
    # stray markers and image codes outside a span are skipped
    out = split_segments([L.eoi, L.eoa] + list(L.image.to_ids([1])) + tk.encode("ok"), L, tk)
    assert [s.text for s in out.segments] == ["ok"]
    assert split_segments([], L, tk).segments == []
