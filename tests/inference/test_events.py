"""The incremental segmenter equals ``split_segments`` on any id sequence; text deltas add up to the text."""

from hypothesis import given, settings
from hypothesis import strategies as st

from aromni.inference.events import IncrementalText, SegmentAssembler
from aromni.vocab.layout import VocabLayout
from aromni.vocab.segmenter import split_segments

LAYOUT = VocabLayout.compact(n_text=12, n_image=6, n_speech=6, pad_to_multiple=1)


def as_tuples(segs):
    return [(type(s).__name__, tuple(int(c) for c in getattr(s, "codes", [])), tuple(getattr(s, "ids", None) or ()),
             getattr(s, "complete", None)) for s in segs]


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, LAYOUT.vocab_size - 1), max_size=40), n=st.sampled_from([None, 2, 3]))
def test_assembler_equals_split_segments(ids, n):
    ref = split_segments(ids, LAYOUT, image_tokens=n)
    asm = SegmentAssembler(LAYOUT, image_tokens=n)
    assert as_tuples(asm.feed(ids)) == as_tuples(ref.segments)
    assert asm.terminated_by == ref.terminated_by


def test_resume_from_an_open_prompt_span():
    img = LAYOUT.image.to_ids([1, 2])
    asm = SegmentAssembler(LAYOUT, image_tokens=3)
    asm.resume_from([LAYOUT.bos, LAYOUT.boi, img[0]])
    segs = asm.feed([img[1], img[0], LAYOUT.eoi])
    assert as_tuples(segs) == [("ImageSegment", (1, 2, 1), (), True)]


def test_incremental_text_deltas_concatenate_to_the_decoded_text(tiny_parts):
    tk = tiny_parts[0]
    ids = tk.encode("héllo wörld, a big red circle")
    inc = IncrementalText(tk)
    assert "".join(inc.push([i]) for i in ids) == tk.decode(ids)


def test_iter_segments_follows_every_row_of_a_generation(tiny_parts):
    from tinyparts import biased

    from aromni.inference.engine import Engine
    from aromni.inference.events import iter_segments
    from aromni.inference.options import DecodeOptions, ImageSampling

    text, layout = tiny_parts[0], tiny_parts[1]
    eng = Engine(biased(layout, {"boi": 10.0, "boa": 6.0, "eoa": 5.0}, seed=2), layout, image_tokens=64)
    opts = DecodeOptions(max_new_tokens=90, seed=0, image=ImageSampling(cfg=False))
    prompts = [[layout.bos, int(layout.text_ids[5])], [layout.bos, int(layout.text_ids[9]), int(layout.text_ids[2])]]
    stream = eng.generate(prompts, opts)
    got = [[], []]
    for row, seg in iter_segments(stream, layout, text, image_tokens=64):
        got[row].append(seg)
    for row, g in enumerate(stream.results):
        ref = split_segments(g.tokens, layout, text, image_tokens=64).segments
        assert as_tuples(got[row]) == as_tuples(ref)
