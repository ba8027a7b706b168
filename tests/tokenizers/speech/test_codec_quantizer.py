"""EMA vector quantiser: k-means init finds clusters, dead-code restart revives unused codes, EMA, gradients."""

from __future__ import annotations

import pytest
import torch

from aromni.tokenizers.speech.codec.quantizer import EMAVectorQuantizer, kmeans


def _blobs(n_per: int, centers: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = centers.repeat_interleave(n_per, 0)
    return x + std * torch.randn(x.shape, generator=g)


def test_kmeans_recovers_separated_clusters():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 20.0]])
    x = _blobs(200, centers, 0.5)
    c = kmeans(x, 5, iters=20, generator=torch.Generator().manual_seed(1))
    dist = torch.cdist(centers, c)  # each true centre has a centroid close to it
    assert dist.min(1).values.max() < 0.3


def test_kmeans_with_fewer_points_than_codes_gives_distinct_codes():
    x = torch.randn(10, 4)
    c = kmeans(x, 32, iters=5, generator=torch.Generator().manual_seed(0))
    assert c.shape == (32, 4) and torch.unique(c, dim=0).shape[0] == 32


def test_init_codebook_uses_the_data():
    q = EMAVectorQuantizer(8, 2)
    centers = torch.tensor([[float(i), -float(i)] for i in range(8)]) * 5
    q.init_codebook(_blobs(50, centers, 0.1), iters=20, generator=torch.Generator().manual_seed(0))
    assert bool(q.inited)
    assert torch.cdist(centers, q.embed).min(1).values.max() < 0.2
    codes = q.encode(centers)
    assert torch.unique(codes).numel() == 8


def _run(q: EMAVectorQuantizer, data: torch.Tensor, steps: int) -> None:
    q.train()
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        q(data[torch.randint(data.shape[0], (256,), generator=g)][None])


@pytest.mark.parametrize("dead_code_steps", [0, 5])
def test_dead_code_restart_revives_unused_codes(dead_code_steps):
    """Half the codebook sits far from the data and is never chosen; restarts move it onto the data."""
    torch.manual_seed(0)
    q = EMAVectorQuantizer(16, 2, decay=0.9, dead_code_steps=dead_code_steps)
    data = _blobs(100, torch.tensor([[float(i), 0.0] for i in range(16)]), 0.2)  # 16 clusters on a line
    q.embed.copy_(torch.cat([data[torch.arange(8) * 100], torch.full((8, 2), 1000.0)]))  # 8 live, 8 far away
    q.embed_avg.copy_(q.embed)
    q.inited.fill_(True)
    _run(q, data, 40)
    used = torch.unique(q.encode(data)).numel()
    if dead_code_steps:
        assert used == 16 and q.usage(window=5) == 1.0
        assert torch.cdist(q.embed, data).min(1).values.max() < 1.0  # every code now lives on the data
    else:  # control: without restarts the far codes stay dead
        assert used == 8 and q.usage(window=5) == 0.5


def test_ema_moves_codes_to_cluster_means_and_stats():
    q = EMAVectorQuantizer(2, 2, decay=0.5, dead_code_steps=0)
    q.embed.copy_(torch.tensor([[0.0, 0.0], [5.0, 5.0]]))
    q.embed_avg.copy_(q.embed)
    q.inited.fill_(True)
    x = torch.tensor([[1.0, 1.0], [1.0, 1.0], [4.0, 6.0], [4.0, 6.0]])[None]
    for _ in range(30):
        out = q.train()(x)
    assert torch.allclose(q.embed, torch.tensor([[1.0, 1.0], [4.0, 6.0]]), atol=1e-3)
    assert out.perplexity == pytest.approx(2.0)
    assert out.codes.tolist() == [[0, 0, 1, 1]]


def test_straight_through_gradient_and_commitment():
    q = EMAVectorQuantizer(4, 3, dead_code_steps=0).eval()
    q.inited.fill_(True)
    x = torch.randn(2, 5, 3, requires_grad=True)
    out = q(x)
    assert torch.allclose(out.quantized, q.decode(out.codes))  # forward value = the codes' vectors
    assert out.commit_loss.item() == pytest.approx(((x - q.decode(out.codes)) ** 2).mean().item(), rel=1e-5)
    (out.quantized * 2).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 2.0))  # identity gradient
    before = q.embed.clone()
    q(x.detach())  # eval mode: no codebook update
    assert torch.equal(q.embed, before)
