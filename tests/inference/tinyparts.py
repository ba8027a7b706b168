"""Builders of tiny random parts for the inference tests: a BPE trained in the test, a compact layout, a ``tiny``
decoder (optionally with a logit bias), and tiny random image (VQGAN) and speech (our exactly-streaming codec)
tokenizers."""

from __future__ import annotations

import torch

from aromni.models import Decoder, DecoderConfig
from aromni.tokenizers.text import TextTokenizer
from aromni.vocab.layout import VocabLayout

CORPUS = [
    "USER: GPT: Convert this text into speech. This is input: hello world",
    "Can you please convert this speech into written text?",
    "Describe this image. Create a picture that matches the essence of this text.",
    "Please acknowledge the user's vocal input, create a textual response.",
    "a big red circle at the top left on a white background, a small blue star",
]


def tiny_text_and_layout(n_image: int, n_speech: int) -> tuple[TextTokenizer, VocabLayout]:
    probe = VocabLayout.compact(0, n_image, n_speech)
    specials = probe.special_token_strings()
    tk = TextTokenizer.train(CORPUS * 5, 400, specials, min_frequency=1)
    return tk, VocabLayout.compact(tk.vocab_size - len(specials), n_image, n_speech)


def tiny_decoder(layout: VocabLayout, seed: int = 0, **overrides) -> Decoder:
    cfg = DecoderConfig.preset("tiny", vocab_size=layout.vocab_size, **overrides)
    model = Decoder(cfg)
    model.init_weights(std=0.5, generator=torch.Generator().manual_seed(seed))  # peaky logits: varied choices
    return model.eval()


def tiny_image_tokenizer():
    from aromni.tokenizers.image.config import VQGANConfig
    from aromni.tokenizers.image.vqgan import VQGAN

    torch.manual_seed(1)
    return VQGAN(VQGANConfig.preset("tiny")).eval()


def tiny_speech_tokenizer():
    from aromni.tokenizers.speech.codec.config import CodecConfig
    from aromni.tokenizers.speech.codec.model import StreamingCodec

    torch.manual_seed(2)
    return StreamingCodec(CodecConfig.preset("tiny", codebook_size=64)).eval()


class BiasedDecoder(Decoder):
    """A decoder whose logits get a fixed bias (to make a random model open image/speech spans and stop)."""

    def __init__(self, base: Decoder, bias: torch.Tensor):
        super().__init__(base.cfg)
        self.load_state_dict(base.state_dict())
        self.register_buffer("bias", bias.float(), persistent=False)
        self.eval()

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        return out if kwargs.get("return_hidden") else out + self.bias


def biased(layout: VocabLayout, boosts: dict[str, float], seed: int = 0, **overrides) -> BiasedDecoder:
    bias = torch.zeros(layout.vocab_size)
    for role, v in boosts.items():
        if role in ("image", "speech", "text"):
            bias[layout.mask(role)] += v
        else:
            bias[layout.special_id(role)] += v
    return BiasedDecoder(tiny_decoder(layout, seed, **overrides), bias)
