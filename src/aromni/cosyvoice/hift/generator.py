"""CosyVoice2's HiFT vocoder (HiFi-GAN with a neural-source-filter excitation and an iSTFT head), with the
module tree of CosyVoice's ``cosyvoice/hifigan/generator.py HiFTGenerator`` so the released ``hift.pt`` loads
key for key (:mod:`.official`).

``mel [B, 80, F]`` (Matcha 24 kHz log-mel, :func:`aromni.cosyvoice.mel.matcha_mel`) ->

1. ``f0_predictor``: F0 per frame ``[B, F]`` (Hz), repeated 480 times -> ``[B, 480 F, 1]``;
2. ``m_source``: the harmonic-plus-noise excitation ``s [B, 1, 480 F]``;
3. ``conv_pre`` (k7) -> for each stage i: LeakyReLU(0.1), ``ups[i]`` (ConvTranspose, rates 8, 5, 3), a
   left reflection pad of one step after the last stage, plus ``source_resblocks[i](source_downs[i](STFT(s)))``
   (the source's 16-point STFT, real and imaginary parts stacked as 18 channels, strided down to the stage's
   rate), then the mean of the three ``resblocks`` of the stage (kernels 3, 7, 11, dilations 1, 3, 5, Snake
   activations);
4. LeakyReLU(0.01), ``conv_post`` -> 18 channels: magnitude ``exp(x[:9])`` (clipped at 100), phase
   ``sin(x[9:])``; iSTFT with n_fft 16, hop 4, periodic Hann window -> ``[B, 480 F]``, clamped to +-0.99.

Streaming (CosyVoice2's ``token2wav``): each call re-vocodes the last 8 mel frames of the previous chunk in front
of the new ones and passes the previous call's last ``8 * 480 = 3840`` source samples as ``cache_source``; they
replace the first 3840 samples of the new excitation so the sine phase stays continuous across the seam, and the
caller cross-fades the overlapping output with a Hamming window (see :meth:`HiFTGenerator.inference`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from aromni.cosyvoice.hift.config import HiFTConfig
from aromni.cosyvoice.hift.f0 import ConvRNNF0Predictor
from aromni.cosyvoice.hift.source import SourceModuleHnNSF
from aromni.errors import CheckpointError, InputError
from aromni.utils.io import atomic_dir, atomic_write_json, read_json

__all__ = ["HIFT_TYPE", "HiFTGenerator", "ResBlock", "Snake"]

HIFT_TYPE = "cosyvoice_hift"


def _wn(conv: nn.Module) -> nn.Module:
    """HiFi-GAN's N(0, 0.01) initialisation, applied to the raw weight *before* weight normalisation. (CosyVoice
    calls ``init_weights`` after wrapping, where it rewrites a derived tensor and has no effect; loading released
    weights is unaffected either way.)"""
    nn.init.normal_(conv.weight, 0.0, 0.01)
    return weight_norm(conv)


class Snake(nn.Module):
    """``x + sin^2(alpha x) / alpha`` per channel (BigVGAN's Snake, linear-scale ``alpha [C]`` starting at 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha[None, :, None]
        return x + torch.sin(x * a).pow(2) / (a + 1e-9)


class ResBlock(nn.Module):
    """``x + conv2(snake(conv1_d(snake(x))))`` for each dilation ``d`` in turn (same-length padding)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(_wn(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                                  padding=d * (kernel_size - 1) // 2)) for d in dilations)
        self.convs2 = nn.ModuleList(_wn(nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2))
                                    for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations1, self.activations2):
            x = x + c2(a2(c1(a1(x))))
        return x


class HiFTGenerator(nn.Module):
    """CosyVoice2's vocoder: ``mel [B, 80, F] -> wav [B, 480 F]`` at 24 kHz (module docstring)."""

    type_name = HIFT_TYPE

    def __init__(self, config: HiFTConfig | None = None):
        super().__init__()
        cfg = self.config = config or HiFTConfig()
        base, n_fft = cfg.base_channels, cfg.istft_n_fft
        self.f0_predictor = ConvRNNF0Predictor(cfg.in_channels, cfg.f0_channels)
        self.m_source = SourceModuleHnNSF(cfg.sampling_rate, cfg.hop_length, cfg.nb_harmonics, cfg.nsf_alpha,
                                          cfg.nsf_sigma, cfg.nsf_voiced_threshold, cfg.sine_generator)
        self.conv_pre = weight_norm(nn.Conv1d(cfg.in_channels, base, 7, padding=3))
        self.ups = nn.ModuleList(
            _wn(nn.ConvTranspose1d(base // 2 ** i, base // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)))
        # stage i runs at (source STFT rate) / prod(later upsample rates): stride that much down from the STFT
        self.source_downs, self.source_resblocks = nn.ModuleList(), nn.ModuleList()
        n_up = len(cfg.upsample_rates)
        for i, (k, d) in enumerate(zip(cfg.source_resblock_kernel_sizes, cfg.source_resblock_dilation_sizes)):
            ch, down = base // 2 ** (i + 1), int(torch.tensor(cfg.upsample_rates[i + 1:] or [1]).prod())
            self.source_downs.append(nn.Conv1d(n_fft + 2, ch, 1) if down == 1 else
                                     nn.Conv1d(n_fft + 2, ch, down * 2, down, padding=down // 2))
            self.source_resblocks.append(ResBlock(ch, k, d))
        self.resblocks = nn.ModuleList(
            ResBlock(base // 2 ** (i + 1), k, d)
            for i in range(n_up) for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
        self.conv_post = _wn(nn.Conv1d(base // 2 ** n_up, n_fft + 2, 7, padding=3))
        self.register_buffer("stft_window", torch.hann_window(n_fft), persistent=False)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    def _check_mel(self, mel: torch.Tensor) -> None:
        if not isinstance(mel, torch.Tensor) or mel.dim() != 3 or mel.shape[1] != self.config.in_channels:
            shape = tuple(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__
            raise InputError(f"HiFT expects a mel [B, {self.config.in_channels}, F], got {shape}",
                             "compute it with aromni.cosyvoice.mel.matcha_mel (24 kHz, 80 bins)")
        if mel.shape[0] == 0 or mel.shape[2] == 0:
            raise InputError(f"HiFT got an empty mel of shape {tuple(mel.shape)}", "pass at least one frame")
        if not mel.is_floating_point():
            raise InputError(f"HiFT expects a float mel, got {mel.dtype}")

    def source(self, f0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Frame F0 ``[B, F]`` (Hz) -> excitation ``[B, 1, 480 F]`` (nearest upsampling, then the NSF source)."""
        f0_up = f0.float().repeat_interleave(self.hop_length, dim=1)[:, :, None]  # [B, T, 1]
        return self.m_source(f0_up, generator).transpose(1, 2)

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``mel [B, 80, F]`` + excitation ``source [B, 1, 480 F]`` -> ``wav [B, 480 F]``."""
        cfg = self.config
        spec = torch.stft(source.squeeze(1), cfg.istft_n_fft, cfg.istft_hop, cfg.istft_n_fft,
                          window=self.stft_window, return_complex=True)  # [B, 9, 120 F + 1]
        s_stft = torch.cat([spec.real, spec.imag], dim=1)
        x = self.conv_pre(mel)
        n_up, n_k = len(self.ups), len(cfg.resblock_kernel_sizes)
        for i in range(n_up):
            x = self.ups[i](F.leaky_relu(x, cfg.lrelu_slope))
            if i == n_up - 1:
                x = F.pad(x, (1, 0), mode="reflect")  # 120 F -> 120 F + 1 frames, as many as the STFT's
            x = x + self.source_resblocks[i](self.source_downs[i](s_stft))
            x = sum(self.resblocks[i * n_k + j](x) for j in range(n_k)) / n_k
        x = self.conv_post(F.leaky_relu(x))  # CosyVoice uses the default slope 0.01 here
        half = cfg.istft_n_fft // 2 + 1
        magnitude = torch.exp(x[:, :half]).clamp(max=1e2)
        phase = torch.sin(x[:, half:])  # as CosyVoice: sin() of the phase channels (redundant but kept)
        wav = torch.istft(torch.polar(magnitude, phase), cfg.istft_n_fft, cfg.istft_hop, cfg.istft_n_fft,
                          window=self.stft_window)
        return wav.clamp(-cfg.audio_limit, cfg.audio_limit)

    def forward(self, mel: torch.Tensor, f0_source: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: ``mel [B, 80, F]`` -> ``(wav [B, 480 F], predicted F0 [B, F])``. The excitation is built from
        the predicted F0 (CosyVoice), or from ``f0_source [B, F]`` when given (teacher forcing)."""
        self._check_mel(mel)
        f0 = self.f0_predictor(mel)
        src = self.source((f0 if f0_source is None else f0_source).detach(), generator)
        return self.decode(mel, src), f0

    @torch.no_grad()
    def inference(self, mel: torch.Tensor, cache_source: torch.Tensor | None = None, *,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``mel [B, 80, F]`` -> ``(wav [B, 480 F], source [B, 1, 480 F])``.

        ``cache_source [B, 1, S]`` (``S <= 480 F``), when given, replaces the first ``S`` samples of the
        excitation before decoding (CosyVoice2's streaming: the previous call's ``source[:, :, -3840:]`` while the
        previous call's last 8 mel frames are prepended to ``mel``). The returned ``source`` is the excitation
        that was used, so the caller takes the next cache from it. ``generator`` seeds the source noise.
        """
        self._check_mel(mel)
        src = self.source(self.f0_predictor(mel.float()), generator)
        if cache_source is not None and cache_source.numel() > 0:
            if cache_source.dim() != 3 or cache_source.shape[:2] != (mel.shape[0], 1) \
                    or cache_source.shape[2] > src.shape[2]:
                raise InputError(f"cache_source must be [B={mel.shape[0]}, 1, S <= {src.shape[2]}], "
                                 f"got {tuple(cache_source.shape)}", "pass the previous call's source[:, :, -S:]")
            src[:, :, : cache_source.shape[2]] = cache_source.to(src)
        return self.decode(mel.float(), src), src

    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write ``config.json`` (``"type": "cosyvoice_hift"``) + ``model.safetensors`` into ``path`` atomically."""
        with atomic_dir(path, overwrite=overwrite) as tmp:
            atomic_write_json(tmp / "config.json", {"type": HIFT_TYPE, "config": self.config.to_dict()})
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": HIFT_TYPE})

    @classmethod
    def from_pretrained(cls, path: str | Path, *, map_location: str | torch.device = "cpu") -> HiFTGenerator:
        """Load a directory written by :meth:`save_pretrained` (:class:`CheckpointError` naming a bad file)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: no config.json", "pass a HiFT directory (aromni cosyvoice hift-train)")
        meta = read_json(path / "config.json")
        if not isinstance(meta, dict) or meta.get("type") != HIFT_TYPE or not isinstance(meta.get("config"), dict):
            raise CheckpointError(f"{path / 'config.json'} does not describe a {HIFT_TYPE}",
                                  f"expected {{'type': '{HIFT_TYPE}', 'config': {{...}}}}")
        model = cls(HiFTConfig.from_dict(meta["config"]))
        try:
            state = load_file(str(path / "model.safetensors"))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path / 'model.safetensors'}: missing or corrupt ({str(e).splitlines()[0][:160]})",
                                  "re-export the vocoder") from None
        load_strict(model, state, str(path / "model.safetensors"))
        return model.to(map_location).eval()


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state, strict=True)``, every mismatch as one :class:`CheckpointError` line naming
    the first missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
              if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing {missing[:4]}" if missing else "",
                 f"{len(unexpected)} unexpected {unexpected[:4]}" if unexpected else "",
                 f"{len(shapes)} mis-shaped {shapes[:2]}" if shapes else ""]
        raise CheckpointError(f"{source}: does not match the HiFT config: " + "; ".join(p for p in parts if p),
                              "pick the config (preset) the weights were trained with")
    model.load_state_dict(state, strict=True)
