"""Beam search: exhaustive search on a tiny model, greedy as one beam, batching, the cache, transformers."""

import itertools
import tempfile
from pathlib import Path

import pytest
import torch

from lmforge.models.generate import SamplingConfig, beam_search
from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig, shift_right

PAD, BOS, EOS = 0, 1, 2
GREEDY = SamplingConfig(max_new_tokens=8, temperature=0.0, top_k=None)


def tiny(vocab=5, scale=6.0, **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=vocab, block_size=12, n_encoder_layer=1, n_decoder_layer=2, n_head=2, d_model=16)
    model = Seq2Seq(Seq2SeqConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():  # peakier distributions, so beams and greedy part ways
        for p in model.parameters():
            p.mul_(scale) if p.dim() > 1 else None
    return model


def sequence_scores(model, src, seqs, length_penalty):
    """Teacher-forced sum logprob / len**lp of each target (EOS included in the length when present)."""
    T = max(len(s) for s in seqs)
    tgt = torch.tensor([s + [PAD] * (T - len(s)) for s in seqs])  # right padding: causal, so harmless
    dec = shift_right(tgt, BOS, PAD)
    logp = model(src[None].expand(len(seqs), -1), dec)[0].log_softmax(-1)
    picked = logp.gather(-1, tgt[..., None])[..., 0]
    return [float(picked[i, :len(s)].sum().detach()) / len(s) ** length_penalty for i, s in enumerate(seqs)]


def exhaustive(model, src, vocab, max_len, length_penalty):
    """Every sequence the decoder can produce within max_len: EOS-terminated, or max_len long."""
    seqs = []
    for n in range(1, max_len + 1):
        for body in itertools.product([t for t in range(vocab) if t != EOS], repeat=n - 1):
            seqs.append(list(body) + [EOS])
            if n == max_len:
                seqs += [list(body) + [t] for t in range(vocab) if t != EOS]
    scores = sequence_scores(model, src, seqs, length_penalty)
    return sorted(zip(scores, seqs), key=lambda x: -x[0])


@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0])
def test_enough_beams_equal_exhaustive_search(length_penalty):
    model = tiny()
    srcs = torch.tensor([[3, 4, 4, 3], [4, 3, 0, 0]])  # the second is padded
    K = 5 ** 3  # more beams than partial sequences: beam search becomes exhaustive
    hyps = model.beam_search(srcs, num_beams=K, max_new_tokens=3, length_penalty=length_penalty,
                             num_return_sequences=10)
    for b, src in enumerate(srcs):
        real = src[src != PAD]
        best = exhaustive(model, real, 5, 3, length_penalty)[:10]
        got = [(h.score, h.tokens + ([EOS] if h.eos else [])) for h in hyps[b]]
        assert [s for _, s in got] == [s for _, s in best], (b, got[:3], best[:3])
        assert all(abs(x - y) < 1e-4 for (x, _), (y, _) in zip(got, best))
        assert all(abs(h.score - h.logprob / (len(h.tokens) + h.eos) ** length_penalty) < 1e-5 for h in hyps[b])
    assert len({tuple(h.tokens) for h in hyps[0]}) == 10


def test_one_beam_is_greedy_and_a_batch_decodes_like_its_sources():
    model = tiny(vocab=8, scale=4.0)
    g = torch.Generator().manual_seed(0)
    srcs = torch.randint(3, 8, (4, 6), generator=g)
    srcs[1, 4:], srcs[3, 2:] = PAD, PAD
    eos = 6  # a token this random model does produce for some rows
    cfg = SamplingConfig(max_new_tokens=8, temperature=0.0, top_k=None, eos_token_id=eos)
    greedy = model.generate(srcs, cfg)
    assert len({len(x) for x in greedy}) > 1  # rows end at different steps (EOS and max_new_tokens)
    assert model.generate(srcs, cfg, num_beams=1, num_return_sequences=1) == greedy
    one_beam = model.beam_search(srcs, num_beams=1, max_new_tokens=8, eos_token_id=eos)
    assert [h[0].tokens for h in one_beam] == greedy
    kw = dict(num_beams=3, max_new_tokens=8, num_return_sequences=3, eos_token_id=eos)
    batch = model.beam_search(srcs, **kw)
    assert any(h.eos for x in batch for h in x) and any(not h.eos for x in batch for h in x)
    for b in range(4):
        alone = model.beam_search(srcs[b][srcs[b] != PAD], **kw)[0]
        assert [h.tokens for h in batch[b]] == [h.tokens for h in alone]
        assert all(abs(x.score - y.score) < 1e-4 for x, y in zip(batch[b], alone))
    uncached = model.beam_search(srcs, **kw, use_cache=False)
    assert [[h.tokens for h in x] for x in uncached] == [[h.tokens for h in x] for x in batch]
    # generate's layout: num_return_sequences rows per source, best first
    flat = model.generate(srcs, cfg, num_beams=3, num_return_sequences=2)
    assert flat == [h.tokens for x in batch for h in x[:2]]
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.beam_search(srcs, num_beams=2, num_return_sequences=3)


def test_early_stopping_false_searches_on_and_min_new_tokens_holds():
    model = tiny(vocab=12, scale=4.0)
    srcs = torch.randint(3, 12, (6, 5), generator=torch.Generator().manual_seed(1))
    eager = model.beam_search(srcs, num_beams=2, max_new_tokens=10, early_stopping=True)
    patient = model.beam_search(srcs, num_beams=2, max_new_tokens=10, early_stopping=False)
    never = model.beam_search(srcs, num_beams=2, max_new_tokens=10, early_stopping="never")
    # the same beams up to where early stopping quits; searching on can only improve the best
    assert all(p[0].score >= e[0].score - 1e-6 for p, e in zip(patient, eager))
    assert all(n[0].score >= p[0].score - 1e-6 for n, p in zip(never, patient))
    long = model.beam_search(srcs, num_beams=2, max_new_tokens=10, min_new_tokens=4)
    assert all(len(h[0].tokens) >= 4 for h in long)


def reverse_data(n=24):
    g = torch.Generator().manual_seed(0)
    srcs, tgts = [], []
    for _ in range(n):
        k = int(torch.randint(3, 6, (1,), generator=g))
        s = torch.randint(3, 11, (k,), generator=g).tolist()
        srcs.append(s + [PAD] * (5 - k))
        tgts.append(s[::-1] + [EOS] + [-100] * (5 - k))
    return torch.tensor(srcs), torch.tensor(tgts)


def test_beam_scores_at_least_greedy_on_a_trained_model():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=11, block_size=12, n_encoder_layer=1, n_decoder_layer=1, n_head=2,
                                  d_model=32))
    src, labels = reverse_data()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(40):  # part-trained: good enough to mean something, unsure enough for beams to matter
        loss = model(src, shift_right(labels, BOS, PAD), labels)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    greedy = model.generate(src, GREEDY)
    beams = model.beam_search(src, num_beams=4, max_new_tokens=8)
    for b in range(len(src)):
        real = src[b][src[b] != PAD]
        g_seq = greedy[b] + ([EOS] if len(greedy[b]) < 8 else [])
        g_score = sequence_scores(model, real, [g_seq], 1.0)[0]
        assert beams[b][0].score >= g_score - 1e-5, b
    expected = [[t for t in row if t not in (-100, EOS)] for row in labels.tolist()]
    assert sum(h[0].tokens == e for h, e in zip(beams, expected)) >= sum(g == e for g, e in zip(greedy, expected))


def test_beam_search_matches_transformers_on_an_exported_gpt():
    """The search itself, against transformers' beam search: same GPT-2 weights, same hypotheses and scores."""
    transformers = pytest.importorskip("transformers")
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.models.hf import export_hf
    from lmforge.models.io import save_model

    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, d_model=32)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.mul_(5) if p.dim() > 1 else None
    with tempfile.TemporaryDirectory() as d:
        save_model(ours, Path(d) / "ours")
        export_hf(Path(d) / "ours", Path(d) / "hf")
        theirs = transformers.AutoModelForCausalLM.from_pretrained(Path(d) / "hf").eval()
    prompt = [5, 9, 11, 3]
    K, n = 4, 6

    def ours_search(eos, lp, early):
        cache = ours.new_cache(max_len=len(prompt) + n)

        def step(seqs, rows):  # the prompt stands in for the start token
            if rows is None:  # first step: one row per source
                return ours(torch.tensor([prompt]), cache=cache)[0][:, -1]
            cache.select(rows)  # expands to K beams after the first step, then follows them
            return ours(seqs[:, -1:], cache=cache)[0][:, -1]

        return beam_search(step, 1, num_beams=K, max_new_tokens=n, start_token_id=0, eos_token_id=eos,
                           length_penalty=lp, num_return_sequences=K, early_stopping=early)[0]

    endings = set()
    for eos, lp, early in [(36, 1.0, True), (36, 0.5, False), (33, 0.5, False)]:
        hyps = ours_search(eos, lp, early)
        with torch.no_grad():
            out = theirs.generate(torch.tensor([prompt]), num_beams=K, num_return_sequences=K, max_new_tokens=n,
                                  eos_token_id=eos, pad_token_id=eos, length_penalty=lp, early_stopping=early,
                                  do_sample=False, output_scores=True, return_dict_in_generate=True)
        ref = [s[len(prompt):].tolist() for s in out.sequences]
        ref = [s[: s.index(eos)] if eos in s else s for s in ref]
        assert [h.tokens for h in hyps] == ref, (eos, lp, early)
        assert torch.allclose(torch.tensor([h.score for h in hyps]), out.sequences_scores, atol=1e-4)
        endings |= {h.eos for h in hyps}
    assert endings == {True, False}  # hypotheses ending on EOS and at max_new_tokens were both compared
