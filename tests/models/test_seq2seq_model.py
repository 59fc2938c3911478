"""Encoder–decoder: shapes, source padding, training on a toy task, cached generation."""

import pytest
import torch

from lmforge.models.generate import SamplingConfig
from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig, shift_right

PAD, BOS, EOS = 0, 1, 2
SMALL = dict(vocab_size=40, block_size=32, n_encoder_layer=2, n_decoder_layer=2, n_head=4, d_model=64)


def test_shapes_config_and_shift_right():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**SMALL)).eval()
    src, tgt = torch.randint(3, 40, (2, 9)), torch.randint(3, 40, (2, 6))
    logits, loss = model(src, tgt)
    assert logits.shape == (2, 6, 40) and loss is None
    _, loss = model(src, tgt, torch.randint(3, 40, (2, 6)))
    assert 3.0 < loss.item() < 4.5  # ~ln(40) at init
    assert Seq2SeqConfig.from_dict(Seq2SeqConfig(**SMALL).to_dict()) == Seq2SeqConfig(**SMALL)
    labels = torch.tensor([[5, 6, EOS, -100]])
    assert shift_right(labels, BOS, PAD).tolist() == [[BOS, 5, 6, EOS]]
    # the decoder is causal: later target tokens do not change earlier logits
    tgt2 = tgt.clone()
    tgt2[:, 4:] = 3
    assert torch.allclose(model(src, tgt)[0][:, :4], model(src, tgt2)[0][:, :4], atol=1e-5)


def test_source_padding_is_ignored():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**SMALL)).eval()
    src = torch.randint(3, 40, (1, 7))
    padded = torch.cat([src, torch.full((1, 5), PAD)], 1)
    tgt = torch.randint(3, 40, (1, 5))
    assert torch.allclose(model(src, tgt)[0], model(padded, tgt)[0], atol=1e-5)
    # and the padding mask is what makes it so: treating PAD as a real token changes the result
    unmasked = model(padded, tgt, attention_mask=torch.ones_like(padded))[0]
    assert not torch.allclose(model(src, tgt)[0], unmasked, atol=1e-3)


def reverse_batch(g, n=32):
    """Toy translation: the target is the source reversed (variable lengths, padded)."""
    srcs, tgts = [], []
    for _ in range(n):
        k = int(torch.randint(3, 7, (1,), generator=g))
        s = torch.randint(3, 13, (k,), generator=g).tolist()
        srcs.append(s + [PAD] * (6 - k))
        tgts.append(s[::-1] + [EOS] + [-100] * (6 - k))
    return torch.tensor(srcs), torch.tensor(tgts)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_training_lowers_the_loss_and_generation_uses_the_cache(positions):
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**SMALL, positions=positions))
    src, labels = reverse_batch(torch.Generator().manual_seed(0), 16)  # a fixed set to learn by heart
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        _, loss = model(src, shift_right(labels, BOS, PAD), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    greedy = SamplingConfig(max_new_tokens=10, temperature=0.0, top_k=None)
    cached = model.generate(src, greedy, use_cache=True)
    assert cached == model.generate(src, greedy, use_cache=False)
    expected = [[t for t in row if t not in (-100, EOS)] for row in labels.tolist()]
    assert sum(c == e for c, e in zip(cached, expected)) >= 12  # it has learnt the pairs, EOS included
    # each row stops at its own EOS; a batch decodes like its rows one by one
    assert [model.generate(src[i], greedy)[0] for i in range(16)] == cached
    assert model.training


def test_cached_decoding_matches_full_decoder_logits():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**SMALL, positions="rope")).eval()
    src, tgt = torch.randint(3, 40, (2, 9)), torch.randint(3, 40, (2, 8))
    full = model(src, tgt)[0]
    mask = model.source_mask(src)
    memory = model.encode(src, mask)
    cache = model.new_cache()
    steps = [model.lm_head(model.decode(tgt[:, :3], memory, mask, cache))]
    steps += [model.lm_head(model.decode(tgt[:, t:t + 1], memory, mask, cache)) for t in range(3, 8)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    sampled = model.generate(src, SamplingConfig(max_new_tokens=6, temperature=1.0, top_k=5, seed=1))
    assert sampled == model.generate(src, SamplingConfig(max_new_tokens=6, temperature=1.0, top_k=5, seed=1),
                                     use_cache=False)


def test_hidden_states_are_the_encoder_states_and_follow_the_mask():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**SMALL)).eval()
    src = torch.randint(3, 40, (1, 7))
    padded = torch.cat([src, torch.full((1, 3), PAD)], 1)
    mask = (padded != PAD).long()
    h = model.hidden_states(src)
    assert h.shape == (1, 7, 64) and torch.allclose(h, model.encode(src), atol=1e-6)
    assert torch.allclose(model.hidden_states(padded, attention_mask=mask)[:, :7], h, atol=1e-5)
    assert torch.allclose(model.hidden_states(padded)[:, :7], h, atol=1e-5)  # mask from pad ids when none given


def test_min_new_tokens_holds_back_eos():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**SMALL)).eval()
    src = torch.randint(3, 40, (3, 6))
    first = [row[0] for row in model.generate(src, SamplingConfig(max_new_tokens=6, temperature=0.0, top_k=None))]
    eos = first[0]  # make the first greedy token of row 0 the EOS
    cfg = dict(max_new_tokens=6, temperature=0.0, top_k=None, eos_token_id=eos)
    assert model.generate(src, SamplingConfig(**cfg))[0] == []
    held = model.generate(src, SamplingConfig(**cfg, min_new_tokens=3))
    assert all(len(r) >= 3 and eos not in r[:3] for r in held)
