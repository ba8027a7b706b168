"""``VivoPipeline`` (aromni.omnivivo.api) on a tiny untrained export the test builds: its codes equal a direct
``vivo_generate.generate`` call with the same seeds, its image is the VQ's decode of those codes and its audio the
codec's offline decode; streamed events arrive while the image is drawn and concatenate to the non-streamed
result under any chunking; timings are consistent; bad inputs raise one clear error before any compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aromni.errors import AromniError, CheckpointError, InputError
from aromni.omnivivo.api import TimedEvent, VivoPipeline, VivoResult
from aromni.omnivivo.lora import lora_parameters
from aromni.omnivivo.ras import SpeechSampling
from aromni.omnivivo.t2i_checkpoint import save_t2i
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_generate import T2ISampling
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.toy_conditioner import ToyTextConditioner, ToyTextConfig
from aromni.omnivivo.vivo_generate import ImageDone, SpeechAudio, SpeechCodes, collect, generate
from aromni.omnivivo.vivo_model import VivoModel
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.tokenizers.image.llamagen_vq_config import LlamaGenVQConfig
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec
from aromni.tokenizers.text import TextTokenizer
from aromni.training.recipes.omnivivo import export_vivo, load_vivo
from aromni.training.recipes.omnivivo_config import VivoTrainConfig
from aromni.training.recipes.omnivivo_data import load_components

PROMPTS = ["a red circle at the top left", "a small blue square"]
TOL = 1e-5  # the tiny codec's chunked decode equals the offline one up to float rounding


def build_tiny_export(root: Path) -> dict[str, Path]:
    """A toy t2i backbone (16 codes per image), toy conditioner, tiny codec and a toy VQ (32 px -> 4 x 4 codes),
    and an OmniVIVO export of a fresh (untrained) speech path on them with non-zero LoRA. Speech runs 2x to 3x
    the caption's tokens (at most 24 codes), so it outlasts the 16 image codes."""
    torch.manual_seed(0)
    backbone = T2IBackbone(T2IConfig.preset("toy", n_layer=2, block_size=16)).eval()
    backbone.init_weights(zero_output=False)
    save_t2i(backbone, root / "backbone")
    tok = TextTokenizer.train(PROMPTS * 4, vocab_size=280, special_tokens=["<pad>"], min_frequency=1)
    ToyTextConditioner(ToyTextConfig(vocab_size=tok.vocab_size, n_layer=1, ffn_dim=64), tok).save_pretrained(
        root / "conditioner")
    StreamingCodec(CodecConfig.preset("tiny")).eval().save_pretrained(root / "codec")
    LlamaGenVQ(LlamaGenVQConfig.preset("toy", image_size=32)).eval().save_pretrained(root / "vq")
    cfg = VivoTrainConfig.from_dict({
        "backbone": str(root / "backbone"), "conditioner": str(root / "conditioner"),
        "speech_tokenizer": str(root / "codec"), "train_manifest": "unused.jsonl",
        "vivo": {"branch_layers": 1, "max_speech_len": 24, "max_len_ratio": 3.0, "lora": {"r": 4, "alpha": 4.0}},
    }).resolved()
    comps = load_components(Path(cfg.backbone), Path(cfg.conditioner), Path(cfg.speech_tokenizer), block_size=None,
                            device=torch.device("cpu"))
    model = VivoModel(comps.backbone, cfg.vivo_config(comps.speech_tokenizer.codebook_size),
                      generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # LoRA B starts at zero: make the adapter change the speech rows
        for p in lora_parameters(model.backbone)[1::2]:
            p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(2))
    export_vivo(model, root / "export", cfg, comps, training={})
    return {"root": root, "export": root / "export", "vq": root / "vq", "backbone": root / "backbone"}


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_export(tmp_path_factory.mktemp("vivo_api"))


@pytest.fixture(scope="module")
def pipe(parts) -> VivoPipeline:
    return VivoPipeline.load(parts["export"], parts["vq"])


IMAGE = T2ISampling(cfg_scale=3.0, top_k=50)
SPEECH = SpeechSampling(top_p=0.9, top_k=20)


def test_results_equal_a_direct_generate_call(parts, pipe):
    results = pipe.generate(PROMPTS, seed=5, image=IMAGE, speech=SPEECH)
    loaded, vq = load_vivo(parts["export"]), LlamaGenVQ.from_pretrained(parts["vq"])
    with torch.no_grad():
        feats, mask = loaded.conditioner.encode(PROMPTS)
    want = collect(generate(loaded.model, feats, mask, seed=5, image_sampling=IMAGE, speech_sampling=SPEECH,
                            progress=False), len(PROMPTS))
    assert len(results) == 2 and all(isinstance(r, VivoResult) for r in results)
    codec = loaded.speech_tokenizer
    for b, r in enumerate(results):
        assert r.prompt == PROMPTS[b]
        assert torch.equal(r.image_codes, want.image_codes[b])
        assert torch.equal(r.speech_codes, want.speech_codes[b]) and r.stop_reason == want.speech_reasons[b]
        assert len(r.speech_codes) > 16  # the speech outlasts the image (its length rule is 2x to 3x the caption)
        pixels = np.asarray(vq.to_pil(vq.decode(want.image_codes[b:b + 1]))[0])
        assert r.image.size == (32, 32) and np.array_equal(np.asarray(r.image), pixels)
        offline = codec.decode(r.speech_codes[None])[0]
        assert r.audio.dtype == torch.float32 and r.audio.shape == offline.shape
        assert r.sample_rate == codec.sample_rate and r.seconds == len(offline) / codec.sample_rate
        assert (r.audio - offline).abs().max() <= TOL and offline.abs().max() > 1e-4
        t = r.timings
        assert t.image_seconds is not None and t.image_seconds > 0
        assert 0 < t.ftl <= t.first_audio <= t.speech_seconds  # first code, first audio, last sample, in order
        assert t.audio_seconds == pytest.approx(r.seconds) and t.rtf == pytest.approx(t.speech_seconds / r.seconds)
        assert set(t.to_dict()) == {"image_seconds", "ftl", "first_audio", "speech_seconds", "audio_seconds", "rtf"}
    assert not torch.equal(results[0].image_codes, results[1].image_codes)  # seeds 5 and 6


def test_a_single_prompt_gives_one_result_and_no_vq_gives_codes_only(parts, pipe):
    one = pipe.generate(PROMPTS[0], seed=5, image=IMAGE, speech=SPEECH)
    batch = pipe.generate(PROMPTS, seed=5, image=IMAGE, speech=SPEECH)
    assert isinstance(one, VivoResult)  # a batch row's codes depend only on its own seeds
    assert torch.equal(one.image_codes, batch[0].image_codes) and torch.equal(one.speech_codes, batch[0].speech_codes)
    bare = VivoPipeline.load(parts["export"]).generate(PROMPTS[0], seed=5, image=IMAGE, speech=SPEECH)
    assert bare.image is None and torch.equal(bare.image_codes, one.image_codes)
    assert torch.equal(bare.audio, one.audio)


@pytest.mark.parametrize("first, later", [(1, 1), (4, 20), (3, 7)])
def test_streamed_chunks_concatenate_to_the_non_streamed_result(pipe, first, later):
    whole = pipe.generate(PROMPTS, seed=1)
    stream = pipe.generate(PROMPTS, seed=1, stream=True, first_chunk_codes=first, chunk_codes=later)
    with pytest.raises(AromniError, match="has not ended"):
        stream.results  # noqa: B018
    events = list(stream)
    assert all(isinstance(e, TimedEvent) for e in events)
    assert [e.time for e in events] == sorted(e.time for e in events)
    image_at = [i for i, e in enumerate(events) if isinstance(e.event, ImageDone)]
    assert len(image_at) == 1 and torch.equal(events[image_at[0]].event.codes,
                                              torch.stack([r.image_codes for r in whole]))
    for b, r in enumerate(whole):
        chunks = [e.event for e in events if isinstance(e.event, SpeechCodes) and e.event.prompt == b]
        sizes = [c.codes.numel() for c in chunks]
        assert sizes[0] == first and all(s == later for s in sizes[1:-1]) and sizes[-1] <= later
        assert torch.equal(torch.cat([c.codes for c in chunks]), r.speech_codes) and chunks[-1].final
        audio = [(i, e.event) for i, e in enumerate(events) if isinstance(e.event, SpeechAudio) and e.event.prompt == b]
        streamed = torch.cat([a.audio for _, a in audio])
        assert streamed.shape == r.audio.shape and (streamed - r.audio).abs().max() <= TOL
        if (first, later) == (4, 20):  # the non-streamed call's own chunking: the very same samples
            assert torch.equal(streamed, r.audio)
        assert audio[0][0] < image_at[0]  # audio plays while the image is still being drawn
        assert audio[-1][1].final
        assert torch.equal(stream.results[b].speech_codes, r.speech_codes)
    assert stream.exact
    with pytest.raises(AromniError, match="already been iterated"):
        iter(stream)


def test_a_stream_left_early_ends_its_run_at_once(pipe):
    whole = pipe.generate(PROMPTS, seed=4)
    left = pipe.generate(PROMPTS, seed=4, stream=True)
    for _ in left:
        break  # its run ends here (caches freed), not when `left` is collected
    with pytest.raises(AromniError, match="has not ended"):
        left.results  # noqa: B018
    with pytest.raises(AromniError, match="already been iterated"):
        iter(left)
    again = pipe.generate(PROMPTS, seed=4, stream=True)
    events = iter(again)
    first = next(events)  # a run on the same model is under way ...
    del left  # ... when the abandoned stream is collected: it must not touch that run's caches
    rest = [first, *events]
    assert any(isinstance(e.event, ImageDone) for e in rest)
    for b, r in enumerate(whole):
        assert torch.equal(again.results[b].speech_codes, r.speech_codes)
        assert torch.equal(again.results[b].image_codes, r.image_codes)


@pytest.mark.parametrize("prompts, kw, match", [
    ("", {}, "prompt 0 is empty"),
    (["a red circle", "   "], {}, "prompt 1 is empty"),
    ([], {}, "no prompts"),
    (42, {}, "must be a list of strings"),
    (["a red circle", 7], {}, "caption 1 must be a string"),
    ("a red circle", {"seed": -1}, "seed must be an integer"),
    ("a red circle", {"seed": "3"}, "seed must be an integer"),
    ("a red circle", {"image": {"cfg_scale": 2}}, "image must be a T2ISampling"),
    ("a red circle", {"speech": IMAGE}, "speech must be a SpeechSampling"),
    ("a red circle", {"chunk_codes": 0}, "chunk_codes must be an integer >= 1"),
    ("a red circle", {"stream": "yes"}, "stream must be True or False"),
    (["a red circle", "a blue square"], {"seed": [1]}, "1 seeds for 2 prompts"),
])
def test_bad_generate_inputs_are_input_errors(pipe, prompts, kw, match):
    with pytest.raises(InputError, match=match):
        pipe.generate(prompts, **kw)


def test_bad_directories_are_clear_errors(parts, tmp_path):
    with pytest.raises(InputError, match="no such OmniVIVO export directory"):
        VivoPipeline.load(tmp_path / "missing", parts["vq"])
    with pytest.raises(InputError, match="no such VQ image tokenizer"):
        VivoPipeline.load(parts["export"], tmp_path / "missing_vq")
    with pytest.raises(CheckpointError, match="not an omnivivo export"):
        VivoPipeline.load(parts["backbone"], parts["vq"])  # a directory, but a t2i backbone
    LlamaGenVQ(LlamaGenVQConfig.preset("toy", image_size=64)).save_pretrained(tmp_path / "vq64")
    with pytest.raises(CheckpointError, match="makes 64 codes per image"):
        VivoPipeline.load(parts["export"], tmp_path / "vq64")
    LlamaGenVQ(LlamaGenVQConfig.preset("toy", image_size=32, codebook_size=128)).save_pretrained(tmp_path / "vq128")
    with pytest.raises(CheckpointError, match="the VQ has 128 codes, the backbone draws from 256"):
        VivoPipeline.load(parts["export"], tmp_path / "vq128")
    with pytest.raises(InputError, match="export_dir must be a path"):
        VivoPipeline.load(None)
