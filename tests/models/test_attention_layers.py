"""Shared layers against straightforward reference implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.models.layers import MLP, Attention, KVCache, RMSNorm, Rotary


def reference_attention(attn: Attention, x, context=None, causal=False, key_mask=None):
    """softmax(QK^T/sqrt(d) + mask) V with explicit loops over heads; GQA by sharing kv heads."""
    B, T, C = x.shape
    src = x if context is None else context
    S = src.shape[1]
    hd, nh, nkv = attn.head_dim, attn.n_head, attn.n_kv_head
    q = attn.q_proj(x).view(B, T, nh, hd)
    kv = attn.kv_proj(src).view(B, S, 2, nkv, hd)
    k, v = kv[:, :, 0], kv[:, :, 1]
    out = torch.zeros(B, T, nh, hd)
    for h in range(nh):
        g = h // (nh // nkv)
        if attn.rotary is not None:
            qh = attn.rotary(q[:, :, h][:, None])[:, 0]
            kh = attn.rotary(k[:, :, g][:, None])[:, 0]
        else:
            qh, kh = q[:, :, h], k[:, :, g]
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(hd)  # (B, T, S)
        if causal:
            scores = scores.masked_fill(torch.ones(T, S, dtype=torch.bool).triu(1), float("-inf"))
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, :], float("-inf"))
        out[:, :, h] = scores.softmax(-1) @ v[:, :, g]
    return attn.o_proj(out.reshape(B, T, C))


@pytest.mark.parametrize("n_kv_head", [None, 2, 1])
@pytest.mark.parametrize("rope", [False, True])
def test_self_attention_matches_reference(n_kv_head, rope):
    torch.manual_seed(0)
    attn = Attention(32, 4, n_kv_head, rotary=Rotary(8, 16) if rope else None).eval()
    x = torch.randn(2, 10, 32)
    for causal in (False, True):
        ours = attn(x, causal=causal)
        ref = reference_attention(attn, x, causal=causal)
        assert torch.allclose(ours, ref, atol=1e-5), (causal, (ours - ref).abs().max())


def test_padding_mask_and_cross_attention_match_reference():
    torch.manual_seed(0)
    attn = Attention(32, 4, cross=True).eval()
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[1, 4:] = False
    ours = attn(x, context=ctx, mask=keep[:, None, None, :])
    ref = reference_attention(attn, x, context=ctx, key_mask=keep)
    assert torch.allclose(ours, ref, atol=1e-5)
    # masked keys really are ignored: changing them changes nothing
    ctx2 = ctx.clone()
    ctx2[1, 4:] = 100.0
    assert torch.allclose(attn(x, context=ctx2, mask=keep[:, None, None, :]), ours, atol=1e-5)


@pytest.mark.parametrize("n_kv_head", [None, 2])
def test_kv_cache_matches_full_causal_attention(n_kv_head):
    torch.manual_seed(0)
    attn = Attention(32, 4, n_kv_head, rotary=Rotary(8, 32)).eval()
    x = torch.randn(1, 12, 32)
    full = attn(x, causal=True)
    cache = KVCache(1)
    parts = [attn(x[:, :5], causal=True, cache=cache)]  # a prompt, then one token at a time
    parts += [attn(x[:, t:t + 1], causal=True, cache=cache) for t in range(5, 12)]
    assert cache.length == 12
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    # two new tokens at once on top of a cache use the offset causal mask
    cache = KVCache(1)
    attn(x[:, :6], causal=True, cache=cache)
    assert torch.allclose(attn(x[:, 6:8], causal=True, cache=cache), full[:, 6:8], atol=1e-5)


def test_causal_attention_ignores_the_future():
    torch.manual_seed(0)
    attn = Attention(32, 4).eval()
    x = torch.randn(1, 8, 32)
    y = x.clone()
    y[:, 5:] = torch.randn(1, 3, 32)
    assert torch.allclose(attn(x, causal=True)[:, :5], attn(y, causal=True)[:, :5], atol=1e-6)
    assert not torch.allclose(attn(x)[:, :5], attn(y)[:, :5], atol=1e-3)  # bidirectional does see it


def test_rotary_scores_depend_only_on_relative_position():
    rot = Rotary(16, 64)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    s1 = (rot(q, 3) * rot(k, 1)).sum()
    s2 = (rot(q, 40) * rot(k, 38)).sum()
    s3 = (rot(q, 40) * rot(k, 30)).sum()
    assert torch.allclose(s1, s2, atol=1e-4)
    assert not torch.allclose(s1, s3, atol=1e-3)
    assert torch.allclose(rot(q, 0), q)  # position 0 is the identity


def test_rmsnorm_and_mlp_kinds():
    x = torch.randn(3, 8)
    norm = RMSNorm(8, eps=1e-6)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert torch.allclose(norm(x), ref, atol=1e-6)
    for kind, act in [("gelu", lambda h: F.gelu(h, approximate="tanh")), ("gelu_exact", F.gelu)]:
        mlp = MLP(8, 16, kind)
        assert torch.allclose(mlp(x), mlp.down(act(mlp.up(x))), atol=1e-6)
    mlp = MLP(8, 16, "swiglu")
    assert torch.allclose(mlp(x), mlp.down(F.silu(mlp.gate(x)) * mlp.up(x)), atol=1e-6)
    with pytest.raises(ValueError):
        MLP(8, 16, "relu6")
    with pytest.raises(ValueError):
        Attention(30, 4)


def test_set_attention_dropout_reaches_every_attention_and_only_it():
    """Fine-tuning can turn off dropout on attention probabilities (so CPU attention can use its fused
    kernel) while the residual and MLP dropout of the body stay as they were."""
    import torch.nn as nn

    from lmforge.models.bert import BERT, BertConfig
    from lmforge.models.layers import Attention, set_attention_dropout

    model = BERT(BertConfig(vocab_size=50, block_size=16, n_layer=3, n_head=2, d_model=16, dropout=0.1))
    assert set_attention_dropout(model, 0.0) == 3
    assert all(m.dropout == 0.0 for m in model.modules() if isinstance(m, Attention))
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.1}
