"""Sampling: KV cache equivalence, filters, repetition penalty, stop strings, EOS, streaming."""

import pytest
import torch

from lmforge.models.generate import SamplingConfig, _filter_logits, generate, stream, truncate_at_stop
from lmforge.models.gpt import GPT, GPTConfig

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
