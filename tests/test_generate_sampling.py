"""The per-row sampler draws from exactly the temperature / top-p distribution transformers defines."""

from __future__ import annotations

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from formablate.errors import ConfigError
from formablate.generate import TOP_P_CANDIDATES, PerRowSampler, sample_rows, top_p_keep


def hf_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """What transformers' own warpers make of ``logits``: the reference."""
    z = TemperatureLogitsWarper(temperature)(None, logits.float())
    if top_p < 1:
        z = TopPLogitsWarper(top_p)(None, z)
    return torch.softmax(z.double(), dim=-1)


def grid_frequencies(logits: torch.Tensor, temperature: float, top_p: float, n: int = 20_000) -> torch.Tensor:
    """Token frequencies of ``sample_rows`` over an evenly spaced grid of uniforms (one row repeated)."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    chosen = sample_rows(logits.expand(n, -1), temperature, top_p, u)
    return torch.bincount(chosen, minlength=logits.shape[-1]).double() / n


@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])
@pytest.mark.parametrize("top_p", [0.3, 0.9, 1.0])
def test_draws_follow_the_transformers_distribution(scale, top_p):
    g = torch.Generator().manual_seed(int(scale * 10) + int(top_p * 100))
    logits = torch.randn(1, 40, generator=g) * scale
    for temperature in (0.2, 1.0):
        want = hf_distribution(logits, temperature, top_p)[0]
        got = grid_frequencies(logits, temperature, top_p)
        # with a grid of 20,000 uniforms each probability is hit to within one grid step per token boundary
        assert torch.allclose(got, want, atol=2 / 20_000), (temperature, (got - want).abs().max())
        assert torch.all(got[want == 0] == 0), "a token top-p removes was drawn"


@pytest.mark.parametrize("vocab", [300, 5000])
@pytest.mark.parametrize("scale", [0.1, 2.0, 20.0])
def test_top_p_keeps_what_transformers_keeps_on_both_paths(vocab, scale):
    g = torch.Generator().manual_seed(vocab + int(scale))
    logits = torch.randn(8, vocab, generator=g) * scale
    for top_p in (0.5, 0.9, 0.99):
        hf_kept = torch.isfinite(TopPLogitsWarper(top_p)(None, logits.clone()))
        lse = torch.logsumexp(logits, -1, keepdim=True)
        vals, idx = torch.sort(logits, dim=-1, descending=True)
        keep, decided = top_p_keep(vals, lse, top_p)
        ours = torch.zeros_like(hf_kept).scatter(1, idx, keep)
        assert torch.equal(ours, hf_kept)
        assert decided.all()  # the full vocabulary always decides
        # the candidate shortcut: where the top candidates decide, they keep the same set
        k = min(TOP_P_CANDIDATES, vocab)
        cand_keep, cand_decided = top_p_keep(vals[:, :k], lse, top_p)
        for r in cand_decided.nonzero().squeeze(1).tolist():
            assert hf_kept[r].sum() == cand_keep[r].sum()
        # flat rows over a large vocabulary need more than the candidates: the full-sort path is exercised
        if scale == 0.1 and vocab == 5000:
            assert not cand_decided.any()


def test_a_rows_draw_depends_only_on_its_own_generator():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 100, generator=g) * 2
    ids = torch.zeros(4, 1, dtype=torch.long)
    together = PerRowSampler([11, 12, 13, 14], 1.0, 0.9, torch.device("cpu"))(ids, logits).argmax(-1)
    alone = [PerRowSampler([s], 1.0, 0.9, torch.device("cpu"))(ids[:1], logits[i : i + 1]).argmax(-1).item()
             for i, s in enumerate([11, 12, 13, 14])]
    assert together.tolist() == alone


def test_sampler_rejects_bad_settings():
    with pytest.raises(ConfigError, match="temperature=0"):
        PerRowSampler([1], 0.0, 0.9, torch.device("cpu"))
    with pytest.raises(ConfigError, match="top_p=0"):
        PerRowSampler([1], 1.0, 0.0, torch.device("cpu"))
    with pytest.raises(ConfigError, match="one row per prompt"):
        PerRowSampler([1], 1.0, 0.9, torch.device("cpu"))(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 5))


def test_draws_on_a_flat_distribution_use_the_full_vocabulary_path():
    # 400 nearly equal logits: the top candidates hold far less than top_p, so sample_rows sorts everything
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(1, 400, generator=g) * 0.1
    lse = torch.logsumexp(logits, -1, keepdim=True)
    _, decided = top_p_keep(torch.topk(logits, TOP_P_CANDIDATES).values, lse, 0.9)
    assert not decided.any()
    want = hf_distribution(logits, 1.0, 0.9)[0]
    got = grid_frequencies(logits, 1.0, 0.9, n=20_000)
    assert torch.allclose(got, want, atol=2 / 20_000)
    assert torch.all(got[want == 0] == 0) and (want == 0).sum() > 0
