"""Streaming events of the joint loop: speech code chunks concatenate to the whole utterance and arrive while the
image is still being drawn; audio streamed through the house protocol (our tiny exactly-streaming codec) equals
the offline decode of the same codes; the image event carries the VQ-decoded images."""

from __future__ import annotations

import pytest
import torch

from aromni.omnivivo.lora import LoRAConfig, lora_parameters
from aromni.omnivivo.ras import SpeechSampling
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.omnivivo.vivo_generate import ImageDone, SpeechAudio, SpeechCodes, collect, generate
from aromni.omnivivo.vivo_model import VivoModel
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.tokenizers.image.llamagen_vq_config import LlamaGenVQConfig
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec

CFG = T2IConfig.preset("toy", n_layer=2, block_size=16)
L, K = CFG.cls_token_num, 32
TOL = 1e-5


@pytest.fixture(scope="module")
def model() -> VivoModel:
    torch.manual_seed(0)
    backbone = T2IBackbone(CFG).eval()
    backbone.init_weights(zero_output=False)
    vivo = VivoModel(backbone, VivoConfig(speech_vocab=K, branch_layers=2, lora=LoRAConfig(r=4, alpha=4.0),
                                          max_speech_len=40), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in lora_parameters(vivo.backbone)[1::2]:
            p.normal_(0.0, 0.05, generator=g)
    return vivo


@pytest.fixture(scope="module")
def codec() -> StreamingCodec:
    torch.manual_seed(0)
    return StreamingCodec(CodecConfig.preset("tiny", codebook_size=K)).eval()


def _captions() -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.randn(2, L, CFG.caption_dim, generator=torch.Generator().manual_seed(3))
    mask = torch.arange(L)[None, :] < torch.tensor([6, 16])[:, None]
    return left_pad_captions(feats * mask[..., None], mask)


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_code_chunks_concatenate_to_the_utterance_and_stream_before_the_image(model, chunk):
    feats, mask = _captions()
    kw = {"seed": [1, 2], "min_len": [5, 22], "max_len": [5, 22], "progress": False}
    events = list(generate(model, feats, mask, chunk_codes=chunk, **kw))
    whole = collect(generate(model, feats, mask, chunk_codes=1000, **kw), 2)
    image_at = [i for i, e in enumerate(events) if isinstance(e, ImageDone)]
    assert len(image_at) == 1
    for prompt, n in enumerate([5, 22]):
        chunks = [(i, e) for i, e in enumerate(events) if isinstance(e, SpeechCodes) and e.prompt == prompt]
        sizes = [e.codes.numel() for _, e in chunks]
        assert all(s == chunk for s in sizes[:-1]) and 0 < sizes[-1] <= chunk  # full chunks, then the rest
        assert [e.final for _, e in chunks] == [False] * (len(chunks) - 1) + [True]
        assert chunks[-1][1].reason == "max_len"
        assert torch.equal(torch.cat([e.codes for _, e in chunks]), whole.speech_codes[prompt])
        assert len(whole.speech_codes[prompt]) == n
    first_speech = min(i for i, e in enumerate(events) if isinstance(e, SpeechCodes))
    short_done = next(i for i, e in enumerate(events) if isinstance(e, SpeechCodes) and e.prompt == 0 and e.final)
    assert first_speech < image_at[0] and short_done < image_at[0]  # speech is out while the image is drawn


@pytest.mark.parametrize("as_decoders", [False, True], ids=["tokenizer", "decoders"])
def test_streamed_audio_equals_offline_decode(model, codec, as_decoders):
    feats, mask = _captions()
    source = [codec.stream_decoder(1), codec.stream_decoder(1)] if as_decoders else codec
    events = list(generate(model, feats, mask, seed=[4, 5], min_len=[3, 20], max_len=[6, 20], chunk_codes=4,
                           speech_sampling=SpeechSampling(), speech_decoder=source, progress=False))
    out = collect(events, 2)
    image_at = next(i for i, e in enumerate(events) if isinstance(e, ImageDone))
    for prompt in range(2):
        codes = out.speech_codes[prompt]
        offline = codec.decode(codes[None])[0]
        assert offline.abs().max() > 1e-4 and out.audio[prompt].shape == offline.shape
        assert (out.audio[prompt] - offline).abs().max() <= TOL
        audio_events = [e for e in events if isinstance(e, SpeechAudio) and e.prompt == prompt]
        assert len(audio_events) >= 2 and audio_events[-1].final
    assert any(isinstance(e, SpeechAudio) for e in events[:image_at])  # audio plays while the image is drawn


def test_image_done_carries_the_decoded_images(model):
    vq = LlamaGenVQ(LlamaGenVQConfig.preset("toy", image_size=32)).eval()  # 4 x 4 codes = the backbone's block
    feats, mask = _captions()
    events = list(generate(model, feats, mask, seed=[1, 2], min_len=2, max_len=2, image_tokenizer=vq,
                           progress=False))
    done = [e for e in events if isinstance(e, ImageDone)]
    assert len(done) == 1 and done[0].codes.shape == (2, CFG.block_size)
    assert done[0].images.shape == (2, 3, 32, 32)
    assert torch.equal(done[0].images, vq.decode(done[0].codes))
