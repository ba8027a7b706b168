"""The shipped toy OmniVIVO bundle (``assets/vivo/``) works where the package is installed: it loads with its
components found through relative paths (the speech codec is the AR-Omni toy bundle's), its image stream is
bit-identical to the frozen backbone alone, and its speech path follows the text of held-out sentences (a floor set
below the measured figure; the judge cannot yet read its speech: WER above 100%, docs/omnivivo.md). The full
measurement is ``make vivo-toy``'s eval (README "OmniVIVO")."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from aromni.omnivivo.api import VivoPipeline
from aromni.omnivivo.t2i_generate import T2ISampling, generate_images
from aromni.toyworld.demo import ASSETS, VIVO_TEXT, find_vivo
from aromni.training.recipes.omnivivo import load_export_backbone

VIVO = find_vivo()
pytestmark = pytest.mark.skipif(VIVO is None, reason="no toy OmniVIVO bundle shipped in this installation")

# Held-out sentences: transcripts of the version-2 seed-0 world's TTS test records (never in training).
HELDOUT = ["what is the opposite of white", "okay in the middle put a little yellow triangle on beige thanks",
           "describe the picture", "it is purple", "at the bottom left of a white picture draw a tiny blue cross",
           "yes green is a color", "how big is the shape"]
PROMPTS = [VIVO_TEXT, "a small red circle in the middle on a black background",
           "a big green square at the bottom right on a gray background"]


@pytest.fixture(scope="module")
def pipeline() -> VivoPipeline:
    return VivoPipeline.load(*VIVO)


def test_components_resolve_inside_the_package():
    config = json.loads((VIVO[0] / "config.json").read_text())
    assert config["backbone"]["copied"] and config["conditioner"]["copied"]
    codec = (VIVO[0] / config["speech_tokenizer"]["path"]).resolve()
    assert not config["speech_tokenizer"]["copied"] and codec == (ASSETS / "vivo" / "speech").resolve()


def test_the_image_stream_is_the_frozen_backbones(pipeline):
    sampling = T2ISampling(cfg_scale=4.0, top_k=0)
    results = pipeline.generate(PROMPTS, seed=[0, 1, 2], image=sampling)
    feats, mask = pipeline.conditioner.encode(PROMPTS)
    alone = generate_images(load_export_backbone(VIVO[0]), feats, mask, cfg_scale=4.0, top_k=0, seed=[0, 1, 2],
                            progress=False)
    assert torch.equal(torch.stack([r.image_codes for r in results]), alone)
    assert all(r.audio.numel() > 0 and r.image is not None for r in results)


def test_held_out_speech_follows_its_text(pipeline):
    """Teacher-forced loss of held-out sentences spoken in the world's assistant voice (espeak-ng): low with their
    own text, higher with another sentence's. Measured when the bundle shipped: 1.08 with the right text, 1.31 to
    1.56 with the texts rotated by 1-3 (chance: ln 1025 = 6.93); the floors sit below."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from aromni.toyworld.voices import ASSISTANT_VOICE, synthesize

    tok = pipeline.speech_tokenizer
    codes = [tok.encode(torch.from_numpy(synthesize(t, ASSISTANT_VOICE))[None])[0] for t in HELDOUT]
    lengths = torch.tensor([len(c) for c in codes])
    padded = torch.stack([torch.nn.functional.pad(c, (0, int(lengths.max()) - len(c))) for c in codes])

    def loss(texts: list[str]) -> float:
        with torch.inference_mode():
            feats, mask = pipeline.conditioner.encode(texts)
            return pipeline.model.speech_loss(feats, mask, padded, lengths)[0].item()

    right = loss(HELDOUT)
    assert right < 1.3
    for k in (1, 2, 3):
        assert loss(HELDOUT[k:] + HELDOUT[:k]) > right + 0.1, k
