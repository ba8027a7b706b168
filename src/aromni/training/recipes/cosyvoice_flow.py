"""Training CosyVoice2's flow-matching token-to-mel model (:class:`~aromni.cosyvoice.flow.Token2Mel`) on
:class:`~aromni.training.loop.TrainLoop`: ``aromni cosyvoice flow-train --tokens FILE.jsonl --world DIR --out DIR``.

Data: a speech-token JSONL (one line per clip: ``path`` relative to the world's folder, ``split``, ``tokens``; 25
Hz ids, as the FSQ tokenizer writes them) and the world's audio, resampled to 24 kHz and turned into Matcha
80-bin log-mel targets (50 Hz). Each clip keeps ``n = min(len(tokens), frames // 2)`` tokens and exactly ``2n``
mel frames. Training crops clips longer than ``crop_tokens`` at a random token.

Speaker input: CosyVoice2 feeds a 192-d CAM++ x-vector (OmniVIVO's speaker model is unknown). The toy world has
~20k voices and no x-vector model here, so the run learns ONE 192-d vector (module ``speaker``) that every clip
uses; it is exported with the model (``flow/speaker.safetensors``) and used when ``inference(spk=None)``. A
real embedding can be passed at inference instead (``load_speaker_embedding``: .npy or .safetensors).

The loss, prompt conditioning, CFG dropout and streaming chunk masks are the model's (CosyVoice2's
``compute_loss`` / ``forward``). Held-out figures (``eval_split``, clips of at most ``max_seconds``): mel L1 (mean
absolute log-mel difference over the valid frames) of 10-step CFG samples without a prompt, beside the L1 of
the encoder's ``mu`` alone and of the training set's mean mel frame.

Output directory::

    metrics.jsonl          losses, learning rate, gradient norm, steps/s; evaluations
    checkpoints/step-N/    the loop's checkpoints (model + speaker + optimizer + generators), written atomically
    flow/                  the export: config.json + model.safetensors + speaker.safetensors (Token2Mel.from_pretrained)
    summary.json           final figures
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from aromni.cosyvoice.data import Clip, load_clip
from aromni.cosyvoice.flow.model import FlowBatch, Token2Mel
from aromni.cosyvoice.mel import matcha_mel
from aromni.errors import InputError
from aromni.training.checkpoint import CHECKPOINTS
from aromni.training.guard import check_weights
from aromni.training.loop import LoopConfig, TrainLoop, Update, find_checkpoint
from aromni.training.optim import lr_factor
from aromni.training.recipes.cosyvoice_flow_config import FlowTrainConfig
from aromni.training.run_dir import prepare_run_dir
from aromni.utils.io import atomic_write_json, read_json, read_jsonl

__all__ = ["FlowClips", "FlowRecipe", "FlowTrainer", "SpeakerVector", "evaluate_export", "evaluate_flow",
           "read_token_lines", "resolve_vocab", "train_flow"]

EXPORT = "flow"
TOKEN_RATE = 25
Summary = dict[str, float | int | str | None]


class SpeakerVector(nn.Module):
    """The toy run's single learned 192-d speaker embedding (``embedding``)."""

    def __init__(self, dim: int, gen: torch.Generator):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(dim, generator=gen))

    def forward(self, batch: int) -> torch.Tensor:
        return self.embedding[None].expand(batch, -1)


def read_token_lines(path: str | Path, split: str) -> list[tuple[str, list[int]]]:
    """``(path, tokens)`` of every line of ``split`` in a token JSONL (one :class:`InputError` line otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no token file", "pass the JSONL the speech tokenizer wrote (path, split, tokens)")
    rows = []
    for n, row in read_jsonl(path, "speech-token file"):
        if not (isinstance(row, dict) and isinstance(row.get("path"), str) and isinstance(row.get("tokens"), list)
                and all(isinstance(t, int) and not isinstance(t, bool) for t in row["tokens"])):
            raise InputError(f"{path}: line {n} needs 'path' (string), 'split' and 'tokens' (a list of ints)")
        if row.get("split") == split:
            rows.append((row["path"], row["tokens"]))
    if not rows:
        raise InputError(f"{path}: no clips of split {split!r}", "check the token file and eval_split")
    return rows


def resolve_vocab(cfg: FlowTrainConfig, tokens: str | Path) -> int:
    """The token vocabulary: ``vocab_size``, else the tokenizer's codebook, else the largest id + 1."""
    if cfg.vocab_size:
        return cfg.vocab_size
    if cfg.tokenizer:
        raw = read_json(Path(cfg.tokenizer) / "config.json")
        # the FSQ tokenizer's config.json: {"config": {...}, "metadata": {"codebook_size": ...}}
        nested = [raw.get("metadata"), raw.get("config")] if isinstance(raw, dict) else []
        for d in (raw, *nested):
            if isinstance(d, dict) and isinstance(d.get("codebook_size"), int):
                return int(d["codebook_size"])
            if isinstance(d, dict) and isinstance(d.get("code_dims"), int):
                return 3 ** int(d["code_dims"])  # FSQ with 3 levels per dimension
        raise InputError(f"{cfg.tokenizer}/config.json: no codebook_size or code_dims", "set vocab_size=N")
    ids = [t for _, toks in read_token_lines(tokens, "train") for t in toks]
    return max(ids) + 1 if ids else 1


class FlowClips:
    """Clips of one split: ``tokens[i] [n]`` and ``mels[i] [80, 2n]`` (Matcha log-mel of the 24 kHz audio)."""

    def __init__(self, tokens: str | Path, world: str | Path, split: str, cfg: FlowTrainConfig, limit: int,
                 vocab: int, *, progress: bool = True):
        rows = [r for r in read_token_lines(tokens, split) if len(r[1]) <= cfg.max_seconds * TOKEN_RATE]
        if limit and len(rows) > limit:
            keep = torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed))[:limit]
            rows = [rows[i] for i in sorted(keep.tolist())]
        self.tokens: list[torch.Tensor] = []
        self.mels: list[torch.Tensor] = []
        for rel, toks in tqdm(rows, desc=f"load {split}", disable=not progress, leave=False):
            if toks and (min(toks) < 0 or max(toks) >= vocab):
                raise InputError(f"{tokens}: {rel} has token ids outside [0, {vocab})",
                                 "set vocab_size / tokenizer to the tokenizer that wrote the file")
            wav = load_clip(Clip(Path(world) / rel, "", "", None), 24000)
            if wav.numel() < 960:
                continue
            mel = matcha_mel(wav[None])[0]
            n = min(len(toks), mel.shape[1] // 2)
            if n < 4:
                continue
            self.tokens.append(torch.tensor(toks[:n], dtype=torch.long))
            self.mels.append(mel[:, : 2 * n].contiguous())
        if not self.tokens:
            raise InputError(f"{tokens}: no usable {split} clips of at most {cfg.max_seconds} s",
                             "each clip needs 4 tokens and its audio in --world")

    def __len__(self) -> int:
        return len(self.tokens)

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]], spk: torch.Tensor) -> FlowBatch:
        """Pad ``(tokens [n], mel [80, 2n])`` pairs into a :class:`FlowBatch` (``spk [B, 192]``)."""
        lens = torch.tensor([t.numel() for t, _ in items])
        t_max = int(lens.max())
        tokens = torch.stack([F.pad(t, (0, t_max - t.numel())) for t, _ in items])
        mels = torch.stack([F.pad(m, (0, 2 * t_max - m.shape[1])) for _, m in items])
        return FlowBatch(tokens, lens, mels, spk)

    def batch(self, n: int, crop: int, gen: torch.Generator, spk: torch.Tensor) -> FlowBatch:
        """``n`` random clips, each cropped to at most ``crop`` tokens (0: whole) at a random start."""
        items = []
        for i in torch.randint(len(self.tokens), (n,), generator=gen).tolist():
            toks, mel = self.tokens[i], self.mels[i]
            start = int(torch.randint(max(1, toks.numel() - crop + 1), (1,), generator=gen)) if crop else 0
            end = toks.numel() if not crop else start + crop
            items.append((toks[start:end], mel[:, 2 * start: 2 * end]))
        return self.collate(items, spk)


@torch.no_grad()
def evaluate_flow(model: Token2Mel, spk: torch.Tensor, clips: FlowClips, cfg: FlowTrainConfig,
                  mean_frame: torch.Tensor, *, prompt_ratio: float = 0.0, streaming: bool = False) -> dict[str, float]:
    """Held-out log-mel L1 per valid frame and bin: sampled (``n_timesteps`` Euler steps, CFG ``cfg_rate``), the
    encoder's ``mu`` alone, and ``mean_frame``. ``prompt_ratio``: each clip's first ``int(ratio * n)`` tokens and
    their true mel are the prompt and only the rest is scored (0: no prompt)."""
    was = model.training
    model.eval()
    tot = {"sampled": 0.0, "mu": 0.0, "mean": 0.0}
    frames = 0
    for s in range(0, len(clips), cfg.eval_batch):
        toks, mels = clips.tokens[s:s + cfg.eval_batch], clips.mels[s:s + cfg.eval_batch]
        cut = [int(prompt_ratio * t.numel()) for t in toks]
        spks = spk[None].expand(len(toks), -1)
        rest = clips.collate([(t[c:], m[:, 2 * c:]) for t, m, c in zip(toks, mels, cut)], spks)
        prompt = clips.collate([(t[:c], m[:, :2 * c]) for t, m, c in zip(toks, mels, cut)], rest.spk) \
            if max(cut) > 0 else None
        mel = model.inference(rest.tokens, rest.token_len, None if prompt is None else prompt.tokens,
                              None if prompt is None else prompt.token_len, None if prompt is None else prompt.mel,
                              rest.spk, n_timesteps=cfg.n_timesteps, cfg_rate=cfg.cfg_rate, streaming=streaming)
        full = clips.collate(list(zip(toks, mels)), rest.spk)
        mu_full, _ = model.encode(full.tokens, full.token_len, streaming=streaming)
        mu = torch.zeros_like(rest.mel)
        for i, c in enumerate(cut):
            n = 2 * int(rest.token_len[i])
            mu[i, :, :n] = mu_full[i, :, 2 * c: 2 * c + n]
        mask = (torch.arange(mel.shape[-1])[None] < 2 * rest.token_len[:, None])[:, None].float()
        tot["sampled"] += float(((mel - rest.mel).abs() * mask).sum())
        tot["mu"] += float(((mu - rest.mel).abs() * mask).sum())
        tot["mean"] += float(((mean_frame[None, :, None] - rest.mel).abs() * mask).sum())
        frames += int(mask.sum())
    model.train(was)
    denom = max(1, frames * model.config.n_mels)
    return {f"{cfg.eval_split}_mel_l1_{k}": v / denom for k, v in tot.items()} | {"eval_frames": frames}


def evaluate_export(flow_dir: str | Path, tokens: str | Path, world: str | Path, cfg: FlowTrainConfig, *,
                    speaker: torch.Tensor | None = None, prompt_ratio: float = 0.0, streaming: bool = False,
                    mean_clips: int = 200, progress: bool = True) -> dict[str, float]:
    """:func:`evaluate_flow` for an exported ``flow/`` directory on ``cfg.eval_split`` (``cfg.eval_clips`` clips);
    the mean frame comes from ``mean_clips`` training clips; ``speaker`` None: the export's vector."""
    model = Token2Mel.from_pretrained(flow_dir)
    spk = speaker if speaker is not None else model.speaker
    if spk is None:
        spk = torch.zeros(model.config.spk_embed_dim)
    vocab = model.config.vocab_size
    evals = FlowClips(tokens, world, cfg.eval_split, cfg, cfg.eval_clips, vocab, progress=progress)
    train = FlowClips(tokens, world, "train", cfg, mean_clips, vocab, progress=progress)
    mean_frame = torch.cat(train.mels, dim=1).mean(dim=1)
    return evaluate_flow(model, spk, evals, cfg, mean_frame, prompt_ratio=prompt_ratio, streaming=streaming)


class FlowRecipe:
    """One step: a batch (``data_gen``), the model's CFM loss (its noise, t, CFG and prompt draws from
    ``noise_gen``), one AdamW update of the model and the speaker vector."""

    def __init__(self, cfg: FlowTrainConfig, vocab: int, train: FlowClips, evals: FlowClips | None):
        self.cfg, self.train_set, self.eval_set = cfg, train, evals
        torch.manual_seed(cfg.seed)
        self.model = Token2Mel(cfg.flow_config(vocab)).train()
        self.speaker = SpeakerVector(self.model.config.spk_embed_dim, torch.Generator().manual_seed(cfg.seed + 3))
        params = list(self.model.parameters()) + list(self.speaker.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.mean_frame = torch.cat(train.mels, dim=1).mean(dim=1)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "speaker": self.speaker}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.steps, cfg.lr_min_ratio)
        batch = self.train_set.batch(cfg.batch_size, cfg.crop_tokens, self.data_gen, self.speaker(cfg.batch_size))
        loss = self.model(batch, generator=self.noise_gen, prior_weight=cfg.prior_weight)
        logs.update(loss=loss.item(), lr=self.opt.param_groups[0]["lr"])
        yield Update(loss, self.opt, clip=cfg.grad_clip, grad_norm_key="grad_norm")

    def log_fields(self) -> dict[str, float]:
        return {}

    def evaluate(self, step: int) -> dict[str, float]:
        if self.eval_set is None:
            return {}
        return evaluate_flow(self.model, self.speaker.embedding.detach(), self.eval_set, self.cfg, self.mean_frame)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"data_gen": self.data_gen.get_state(), "noise_gen": self.noise_gen.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.data_gen.set_state(state["data_gen"])
        self.noise_gen.set_state(state["noise_gen"])


class FlowTrainer:
    """One run: :class:`FlowRecipe` on a :class:`TrainLoop` writing to ``out``."""

    def __init__(self, cfg: FlowTrainConfig, vocab: int, train: FlowClips, evals: FlowClips | None, out: Path, *,
                 progress: bool = True):
        self.cfg, self.out = cfg, out
        self.recipe = FlowRecipe(cfg, vocab, train, evals)
        self.loop = TrainLoop(self.recipe, LoopConfig(
            out=out, steps=cfg.steps, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
            eval_every=cfg.eval_every if evals is not None else 0, eval_at_end=evals is not None,
            progress=progress, desc="flow", lr=cfg.lr, max_seconds=(cfg.max_minutes or 0.0) * 60,
            config=cfg.to_dict() | {"vocab_size": vocab}))

    def run(self, until: int | None = None) -> Summary:
        last = self.loop.run(until=until)
        return self.finish(last)

    def finish(self, last_eval: Mapping[str, object]) -> Summary:
        """Export ``flow/`` and write ``summary.json`` (evaluating the final weights if the loop did not)."""
        model, rec = self.recipe.model, self.recipe
        check_weights(model.parameters(), self.loop.step, find_checkpoint(self.out), lr=self.cfg.lr)
        model.speaker = rec.speaker.embedding.detach().clone()
        model.eval()
        model.save_pretrained(self.out / EXPORT, overwrite=True)
        model.train()
        figures = {k: v for k, v in last_eval.items() if k != "step"} if last_eval.get("step") == self.loop.step \
            else rec.evaluate(self.loop.step)
        summary: Summary = {"step": self.loop.step, "train_minutes": self.loop.train_seconds / 60,
                            "parameters": sum(p.numel() for p in model.parameters()),
                            "vocab_size": model.config.vocab_size, "train_clips": len(rec.train_set),
                            "eval_clips": 0 if rec.eval_set is None else len(rec.eval_set),
                            "export": str(self.out / EXPORT), **figures}
        atomic_write_json(self.out / "summary.json", summary)
        return summary


def train_flow(cfg: FlowTrainConfig, tokens: str | Path, world: str | Path, out: str | Path, *, resume: bool = False,
               overwrite: bool = False, progress: bool = True, until: int | None = None) -> Summary:
    """Train (or resume: ``cfg`` from :func:`~.cosyvoice_flow_config.resume_flow_config`) on ``tokens`` + the audio
    of ``world``; ``until``: stop at that step with a checkpoint, as an interrupted run would."""
    out = Path(out)
    if not Path(world).is_dir():
        raise InputError(f"{world}: no such world folder", "pass the folder the token file's paths are relative to")
    prepare_run_dir(out, resume=resume, overwrite=overwrite,
                    run_files=("metrics.jsonl", "summary.json", "train_config.json"),
                    run_dirs=(CHECKPOINTS, EXPORT))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    vocab = resolve_vocab(cfg, tokens)
    train = FlowClips(tokens, world, "train", cfg, cfg.train_clips, vocab, progress=progress)
    evals = FlowClips(tokens, world, cfg.eval_split, cfg, cfg.eval_clips, vocab, progress=progress) \
        if cfg.eval_clips else None
    if not resume:
        atomic_write_json(out / "train_config.json", cfg.to_dict())
    return FlowTrainer(cfg, vocab, train, evals, out, progress=progress).run(until=until)
