"""The phoneme speech judge: its units, its word lookup, warm starts, and a tiny run that learns."""

import random
import shutil
import subprocess

import pytest
import torch

from aromni.errors import ConfigError, InputError
from aromni.toyworld.judges.nearest import WordSnapper
from aromni.toyworld.judges.phonemes import (
    phoneme_alphabet,
    pronunciation_table,
    strip_stress,
    text_to_phonemes,
)
from aromni.toyworld.judges.speech import (
    PHONEME_JUDGE_TYPE,
    SpeechJudge,
    SpeechJudgeConfig,
    SpeechJudgeModel,
    greedy_decode,
)
from aromni.toyworld.judges.speech_data import training_text
from aromni.toyworld.judges.store import default_judge_dir, speech_judge_dir
from aromni.toyworld.judges.wer import wer
from aromni.toyworld.lexicon import load_lexicon
from aromni.training.recipes.judge_speech import SpeechTrainConfig, warm_start

espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _lexicon_config(**shape) -> SpeechJudgeConfig:
    table = pronunciation_table()
    return SpeechJudgeConfig(alphabet=phoneme_alphabet(table), pronunciations=table, **shape)


def test_snapper_prefers_exact_then_nearest_then_the_earlier_key():
    s = WordSnapper(["kat", "bat", "kat"], ["cat", "bat", "kit"])
    assert s.nearest("kat") == ("cat", 0)  # a duplicate key keeps its first word
    assert s.nearest("zat") == ("cat", 1)  # "kat" and "bat" tie at one edit: the earlier wins
    assert s.nearest("ba") == ("bat", 1)
    assert s.nearest("b#t") == ("bat", 1)  # a symbol no key has is one substitution
    assert s.snap("katbat") == "cat bat"  # one token -> two words (one edit for the space)
    assert s.snap("ka t bat") == "cat bat"  # two tokens -> one word
    assert s.snap("") == ""
    with pytest.raises(ValueError):
        WordSnapper([])


def test_pronunciations_are_the_lexicon_without_stress():
    lexicon = load_lexicon()
    table = pronunciation_table()
    assert list(table) == list(lexicon.words)
    assert table["hospital"] == strip_stress(lexicon.phonemes[lexicon.words.index("hospital")])
    assert all("'" not in p and "," not in p for p in table.values())
    alphabet = phoneme_alphabet(table)
    assert alphabet[0] == " " and len(set(alphabet)) == len(alphabet)
    assert set("".join(table.values())) <= set(alphabet)
    assert text_to_phonemes("the hospital", table) == f"{table['the']} {table['hospital']}"
    with pytest.raises(InputError, match="no pronunciation"):
        text_to_phonemes("the zzyzx", table)


@espeak
def test_words_outside_the_lexicon_get_espeak_phonemes():
    table = pronunciation_table(["a shape can be big"])
    assert list(table)[-1] == "be" and "be" not in load_lexicon().words
    spoken = subprocess.run(["espeak-ng", "-q", "-x", "-v", "en-us", "be"], capture_output=True, text=True).stdout
    assert table["be"] == strip_stress(spoken.strip())


def test_phoneme_targets_decode_back_to_the_words():
    """Target ids -> a perfect CTC path -> greedy decoding -> the judge's word lookup gives the text back."""
    cfg = _lexicon_config(conv_channels=8, hidden=8, layers=2)
    judge = SpeechJudge(SpeechJudgeModel(cfg))
    rng = random.Random(0)
    texts = [t for t in (training_text(rng, 0.0) for _ in range(300)) if "know" not in t.split()]
    paths, lengths = [], []
    for t in texts:
        ids = cfg.target_ids(t)
        assert len(ids) == len(text_to_phonemes(t, cfg.pronunciations))
        path = [x for i in ids for x in (i, 0)]  # a blank after each symbol keeps doubled phonemes apart
        paths.append(path)
        lengths.append(len(path))
    width = max(lengths)
    best = torch.zeros(len(texts), width, dtype=torch.long)
    for j, p in enumerate(paths):
        best[j, : len(p)] = torch.tensor(p)
    logp = torch.nn.functional.one_hot(best, 1 + cfg.n_units).float().log()
    decoded = greedy_decode(logp, torch.tensor(lengths), cfg.alphabet)
    assert [judge._words_of_phonemes.snap(d) for d in decoded] == texts
    # the one homophone pair: "know" and "no" are both n-oU once stress is gone; the more frequent wins
    assert judge._words_of_phonemes.snap(text_to_phonemes("know", cfg.pronunciations)) == "no"


def test_phoneme_config_is_checked_and_round_trips(tmp_path):
    table = {"cat": "kat"}
    with pytest.raises(ConfigError, match="alphabet"):
        SpeechJudgeConfig(alphabet=" ka", pronunciations=table)
    with pytest.raises(ConfigError, match="not both"):
        SpeechJudgeConfig(alphabet=" kat", pronunciations=table, words=["cat"])
    torch.manual_seed(0)
    judge = SpeechJudge(SpeechJudgeModel(_lexicon_config(conv_channels=16, hidden=16, layers=2)))
    assert judge.model.head.out_features == 1 + len(judge.cfg.alphabet)
    judge.save(tmp_path / "p", {"steps": 1})
    again = SpeechJudge.load(tmp_path / "p")
    assert again.cfg == judge.cfg and again.cfg.kind == PHONEME_JUDGE_TYPE
    wav = [torch.randn(16000) * 0.1, torch.randn(9000) * 0.1]
    for k, v in judge.model.state_dict().items():  # compare at the saved precision
        judge.model.state_dict()[k].copy_(v.half().float())
    assert again.transcribe(wav) == judge.transcribe(wav)
    assert all(w in judge.cfg.pronunciations for t in judge.transcribe(wav) for w in t.split())


def test_warm_start_copies_the_network_and_leaves_a_new_output_layer(tmp_path):
    torch.manual_seed(0)
    chars = SpeechJudge(SpeechJudgeModel(SpeechJudgeConfig(conv_channels=16, hidden=16, layers=2)))
    chars.save(tmp_path / "c")
    model = SpeechJudgeModel(_lexicon_config(conv_channels=16, hidden=16, layers=2))
    head = model.head.weight.detach().clone()
    assert warm_start(model, tmp_path / "c") == ["head.bias", "head.weight"]
    torch.testing.assert_close(model.rnn.weight_hh_l1, chars.model.rnn.weight_hh_l1.half().float())
    torch.testing.assert_close(model.head.weight, head)
    with pytest.raises(InputError, match="another shape"):
        warm_start(SpeechJudgeModel(_lexicon_config(conv_channels=16, hidden=24, layers=2)), tmp_path / "c")


@espeak
def test_a_missing_warm_start_judge_fails_before_the_pool_is_synthesised(tmp_path):
    from aromni.training.recipes.judge_speech import train_speech_judge

    with pytest.raises(InputError, match="no such file"):
        train_speech_judge(tmp_path / "out", SpeechTrainConfig(init_from=str(tmp_path / "nothing")), progress=False)
    assert not (tmp_path / "out" / "pool").exists()


@espeak
def test_tiny_phoneme_run_learns_a_few_clips(tmp_path):
    from aromni.toyworld.voices import ASSISTANT_VOICE, synthesize
    from aromni.training.recipes.judge import fit_judge
    from aromni.training.recipes.judge_speech import SpeechJudgeRecipe

    texts = ["red", "blue cat", "stop"]
    cfg = SpeechTrainConfig(steps=250, batch_seconds=10, lr=3e-3, warmup=10, clean_fraction=1.0, save_every=1000,
                            log_every=1000, conv_channels=48, hidden=48, layers=2, units="phonemes")
    wavs = [synthesize(t, ASSISTANT_VOICE) for t in texts]
    model = SpeechJudgeModel(cfg.model_config(texts))
    mels = [model.mel(torch.from_numpy(w)[None])[0] for w in wavs]
    torch.set_num_threads(1)
    recipe = SpeechJudgeRecipe(cfg, mels, texts)
    assert recipe.model.cfg.pronunciations and recipe.fresh == []
    assert fit_judge(recipe, cfg, tmp_path, desc="tiny", progress=False, until=None) == 250
    assert SpeechJudge(recipe.model).transcribe(wavs) == texts


# ---- the shipped phoneme judge (world version 2's judge) -------------------------------------------------------

SHIPPED = default_judge_dir("speech_phonemes")
shipped = pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped phoneme judge")


@shipped
def test_version_2_worlds_are_scored_by_the_shipped_phoneme_judge():
    assert speech_judge_dir(2) == SHIPPED and speech_judge_dir(1) != SHIPPED
    judge = SpeechJudge.load(SHIPPED)
    assert judge.cfg.kind == PHONEME_JUDGE_TYPE
    assert set(load_lexicon().words) <= set(judge.cfg.pronunciations)


@shipped
@espeak
def test_shipped_phoneme_judge_reads_held_out_speakers_saying_random_words():
    """The same 36 clips as the character judge's test (`test_judges.py`): the world's fixed test voices, never in
    the judge's training, reading random word sequences over the lexicon."""
    from aromni.toyworld.lexicon import random_sequence
    from aromni.toyworld.voices import synthesize, test_voices

    rng = random.Random("test-shipped-speech-judge")
    voices = test_voices()
    refs = [random_sequence(load_lexicon().words, rng, 3, 8) for _ in range(36)]
    wavs = [synthesize(t, voices[i % len(voices)]) for i, t in enumerate(refs)]
    hyps = SpeechJudge.load(SHIPPED).transcribe(wavs)
    # Measured with the shipped phoneme judge on these 36 clips: 18.1% WER (35 of 193 words); the character judge:
    # 43.5% raw, 26.9% snapped.
    assert wer(refs, hyps) <= 0.28, [(r, h) for r, h in zip(refs, hyps) if r != h]


def test_held_out_scores_of_a_phoneme_judge_have_no_snapped_figures():
    from aromni.toyworld.judges.measure import _scores

    torch.manual_seed(0)
    judge = SpeechJudge(SpeechJudgeModel(_lexicon_config(conv_channels=8, hidden=8, layers=2)))
    items = [("random", "the hospital", torch.randn(8000).numpy() * 0.1),
             ("grammar", "a red circle", torch.randn(12000).numpy() * 0.1)]
    out = _scores(judge, items)
    hyps = judge.transcribe([w for _, _, w in items])
    assert out["word_source"] == "pronunciation lookup" and not any(k.endswith("_snapped") for k in out)
    assert out["wer"] == round(wer([t for _, t, _ in items], hyps), 5)
    assert out["wer_random"] == round(wer(["the hospital"], hyps[:1]), 5)
