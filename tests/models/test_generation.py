"""Sampling: KV cache equivalence, filters, repetition penalty, stop strings, EOS, streaming, batching."""

import pytest
import torch

from lmforge.errors import InputError
from lmforge.models.generate import (SamplingConfig, _filter_logits, generate, generate_batch, sample_next, stream,
                                     stream_batch, truncate_at_stop)
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.layers import KVCache

GREEDY = dict(temperature=0.0, top_k=None)


def model_for(**kw):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=4, d_model=32, **kw)
    m = GPT(cfg)
    with torch.no_grad():  # larger weights so greedy paths are not all one token
        for p in m.parameters():
            p.mul_(8) if p.dim() > 1 else None
    return m


@pytest.mark.parametrize("kw", [{}, dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, tie_embeddings=False)],
                         ids=["learned", "rope-gqa"])
def test_cached_and_uncached_greedy_agree(kw):
    model = model_for(**kw)
    prompt = [3, 14, 15, 9, 2, 6]
    # a mild repetition penalty keeps greedy decoding of a random model from looping on one token
    cfg = SamplingConfig(max_new_tokens=30, repetition_penalty=1.5, **GREEDY)
    with_cache = generate(model, prompt, cfg, use_cache=True)
    without = generate(model, prompt, cfg, use_cache=False)
    assert with_cache == without and len(with_cache) == 30
    assert len(set(with_cache)) > 8  # a non-degenerate sequence, so the comparison means something
    # and the cache gives the very logits of a full forward pass
    ids = torch.tensor([prompt + with_cache])
    full = model(ids)[0]
    cache = model.new_cache()
    step = [model(ids[:, :6], cache=cache)[0][:, -1]]
    step += [model(ids[:, t:t + 1], cache=cache)[0][:, -1] for t in range(6, 20)]
    assert torch.allclose(torch.stack(step, 1), full[:, 5:20], atol=1e-4)


def test_sampling_is_seeded_and_temperature_matters():
    model = model_for()
    cfg = SamplingConfig(max_new_tokens=20, temperature=1.0, top_k=None, seed=7)
    a, b = generate(model, [1, 2], cfg), generate(model, [1, 2], cfg)
    assert a == b
    assert generate(model, [1, 2], SamplingConfig(max_new_tokens=20, temperature=1.0, top_k=None, seed=8)) != a
    # top_k=1 is greedy whatever the temperature
    greedy = generate(model, [1, 2], SamplingConfig(max_new_tokens=20, **GREEDY))
    assert generate(model, [1, 2], SamplingConfig(max_new_tokens=20, temperature=2.0, top_k=1, seed=3)) == greedy


def test_top_k_and_top_p_filters():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    kept = torch.isfinite(_filter_logits(logits, 2, None))
    assert kept.tolist() == [[True, True, False, False, False]]
    p = logits.softmax(-1)[0]  # ≈ [.636, .234, .086, .032, .012]
    kept = torch.isfinite(_filter_logits(logits, None, 0.8))
    assert kept.tolist() == [[True, True, False, False, False]]  # .636 < .8 ≤ .636+.234
    kept = torch.isfinite(_filter_logits(logits, None, float(p[0]) - 0.01))
    assert kept.tolist() == [[True, False, False, False, False]]
    assert torch.isfinite(_filter_logits(logits, None, 0.999)).sum() == 5
    # order does not matter: the filters follow the values
    shuffled = logits[:, [3, 0, 4, 2, 1]]
    assert torch.isfinite(_filter_logits(shuffled, 2, None)).tolist() == [[False, True, False, False, True]]
    # sampling with top-k never leaves the top k
    model = model_for()
    last = model(torch.tensor([[5, 6]]))[0][0, -1]
    top3 = set(torch.topk(last, 3).indices.tolist())
    for seed in range(10):
        tok = generate(model, [5, 6], SamplingConfig(max_new_tokens=1, temperature=5.0, top_k=3, seed=seed))
        assert tok[0] in top3


def test_repetition_penalty_discourages_repeats():
    model = model_for()
    cfg = dict(max_new_tokens=40, **GREEDY)
    plain = generate(model, [1], SamplingConfig(**cfg))
    assert len(set(plain)) < 40  # greedy decoding of a random model loops
    penalised = generate(model, [1], SamplingConfig(repetition_penalty=1e6, **cfg))
    assert len(set(penalised)) == 40 and 1 not in penalised  # every token, the prompt's too, is used once


def test_stop_strings_eos_and_streaming():
    model = model_for()
    cfg = SamplingConfig(max_new_tokens=30, **GREEDY)
    full = generate(model, [4, 4], cfg)
    decode = lambda ids: " ".join(f"t{i}" for i in ids)  # noqa: E731
    stop_at = full.index(full[3])  # the first occurrence of the 4th token
    stopped = generate(model, [4, 4], SamplingConfig(max_new_tokens=30, stop=[f"t{full[3]}"], **GREEDY), decode=decode)
    assert stopped == full[: stop_at + 1]
    assert truncate_at_stop(decode(stopped), [f"t{full[3]}"]) == decode(full[:stop_at]) + (" " if stop_at else "")
    eos = generate(model, [4, 4], SamplingConfig(max_new_tokens=30, eos_token_id=full[5], **GREEDY))
    assert eos == full[: full.index(full[5])]
    it = stream(model, [4, 4], cfg)
    assert next(it) == full[0] and next(it) == full[1]  # tokens arrive one at a time
    # a cache never runs past the context: 60 prompt + 4 fed-back tokens fill block_size=64, the 5th is the last
    assert len(generate(model, list(range(50)) + [1] * 10, SamplingConfig(max_new_tokens=30, **GREEDY))) == 5


def test_generate_restores_training_mode():
    model = model_for().train()
    generate(model, [1], SamplingConfig(max_new_tokens=2, **GREEDY))
    assert model.training


ROPE_GQA = dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, tie_embeddings=False)


@pytest.mark.parametrize("kw", [{}, ROPE_GQA], ids=["learned", "rope-gqa"])
@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_batched_greedy_equals_one_at_a_time(kw, use_cache):
    model = model_for(**kw)
    prompts = [[3, 14, 15, 9, 2, 6], [7], [1, 2, 3], list(range(5, 40)), [8, 8, 9, 10, 11]]
    one = [generate(model, p, SamplingConfig(max_new_tokens=20, repetition_penalty=1.3, **GREEDY)) for p in prompts]
    # rows finish at different steps: an EOS that only some rows produce, and max_new_tokens for the rest
    eos = next(t for t in one[0][2:] if t not in one[1])
    cfg = SamplingConfig(max_new_tokens=20, repetition_penalty=1.3, eos_token_id=eos, **GREEDY)
    alone = [generate(model, p, cfg, use_cache=use_cache) for p in prompts]
    assert len({len(a) for a in alone}) > 1 and any(len(a) == 20 for a in alone)
    assert generate_batch(model, prompts, cfg, pad_id=0, use_cache=use_cache) == alone
    assert generate_batch(model, prompts, cfg, pad_id=49, use_cache=use_cache) == alone  # the pad value is masked


def test_batched_stop_strings_context_limit_and_streaming_events():
    model = model_for()
    decode = lambda ids: " ".join(f"t{i}" for i in ids)  # noqa: E731
    # a 60-token prompt fills block_size=64 after 5 new tokens; the shorter prompts keep going
    prompts = [list(range(50)) + [1] * 10, [4, 4], [9, 3], list(range(10, 42))]
    cfg = SamplingConfig(max_new_tokens=30, **GREEDY)
    alone = [generate(model, p, cfg) for p in prompts]
    assert [len(a) for a in alone] == [5, 30, 30, 30]
    assert generate_batch(model, prompts, cfg) == alone
    # stop strings end rows one by one; events come as (row, token), step by step
    full = alone[1]
    prompts = [[4, 4], [9, 3], [1], [2, 7, 7]]
    cfg = SamplingConfig(max_new_tokens=30, stop=[f"t{full[3]}"], **GREEDY)
    alone = [generate(model, p, cfg, decode=decode) for p in prompts]
    assert alone[0] == full[: full.index(full[3]) + 1] and len({len(a) for a in alone}) > 1
    events = list(stream_batch(model, prompts, cfg, pad_id=0, decode=decode))
    assert [[t for r, t in events if r == i] for i in range(4)] == alone
    steps = [sum(1 for r2, _ in events[:j] if r2 == r) for j, (r, _) in enumerate(events)]
    assert steps == sorted(steps)  # every live row's k-th token before any row's (k+1)-th
    with pytest.raises(InputError, match="prompt 1 is empty"):
        generate_batch(model, [[1], []], cfg)


def test_batched_sampling_is_seeded_and_min_new_tokens_bans_eos():
    model = model_for()
    prompts = [[1, 2], [5, 6, 7]]
    cfg = SamplingConfig(max_new_tokens=12, temperature=1.0, top_k=None, seed=3)
    a = generate_batch(model, prompts, cfg)
    assert a == generate_batch(model, prompts, cfg) and all(len(r) == 12 for r in a)
    greedy = generate(model, [1, 2], SamplingConfig(max_new_tokens=12, **GREEDY))
    eos = greedy[0]
    assert generate(model, [1, 2], SamplingConfig(max_new_tokens=12, eos_token_id=eos, **GREEDY)) == []
    late = generate(model, [1, 2], SamplingConfig(max_new_tokens=12, eos_token_id=eos, min_new_tokens=4, **GREEDY))
    assert len(late) >= 4 and eos not in late[:4]


def test_sample_next_penalty_ignores_padding_and_bans_eos():
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.5], [2.0, 1.0, -1.0, 0.5]])
    cfg = SamplingConfig(temperature=0.0, top_k=None, repetition_penalty=4.0, eos_token_id=3, min_new_tokens=2)
    seen = torch.tensor([[0, 0, -1], [-1, -1, -1]])  # row 0 saw token 0 (twice), row 1 nothing (all padding)
    assert sample_next(logits, cfg, seen_ids=seen, step=5).tolist() == [1, 0]
    logits = torch.tensor([[0.0, 0.0, 0.0, 9.0]])
    assert sample_next(logits, cfg, step=1).tolist() == [0]  # EOS (3) banned before min_new_tokens
    assert sample_next(logits, cfg, step=2).tolist() == [3]
    assert sample_next(logits, cfg, step=0, eos_token_id=2).tolist() == [3]  # the override names another EOS


def test_preallocated_cache_select_and_trim_match_the_growing_cache():
    torch.manual_seed(0)
    grow, pre = KVCache(2), KVCache(2, max_len=8)
    for T in (3, 1, 1):
        k, v = torch.randn(4, 2, T, 5), torch.randn(4, 2, T, 5)
        for layer in range(2):
            a, b = grow.update(layer, k, v), pre.update(layer, k, v)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    rows = torch.tensor([2, 2, 0, 1])  # beams: same batch size, reordered in place
    grow.select(rows), pre.select(rows)
    assert pre.length == 5 and torch.equal(grow.k[1], pre.k[1]) and torch.equal(grow.v[0], pre.v[0])
    grow.select(rows[:2]), pre.select(rows[:2])  # finished rows dropped
    grow.trim_front(2), pre.trim_front(2)
    assert pre.length == 3 and pre.k[0].shape == (2, 2, 3, 5) and torch.equal(grow.k[0], pre.k[0])
    k = torch.randn(2, 2, 1, 5)
    assert torch.equal(grow.update(0, k, k)[0], pre.update(0, k, k)[0])
    with pytest.raises(ValueError, match="holds 8 tokens"):
        pre.update(1, torch.randn(2, 2, 6, 5), torch.randn(2, 2, 6, 5))
