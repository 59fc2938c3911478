"""Recurrent models: textbook gates == torch.nn's fused kernels, padding never leaks into real steps
(either direction, left or right), the state as a generation cache, save/load, the LM through the
pretrain stage and `lmforge generate`, word vectors, and BiLSTM(-CRF) bodies on the task interface
(English classification, Chinese NER)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.models.rnn import RNNConfig, RNNModel, RNNState, build_from_recipe, lstm_cell

CELLS = ["lstm", "gru", "rnn"]


def _pair(cell: str, bidirectional: bool, n_layer: int = 2, **kw) -> tuple[RNNModel, RNNModel]:
    """The same weights in a fused and a textbook model."""
    torch.manual_seed(0)
    cfg = dict(vocab_size=40, n_layer=n_layer, d_model=12, d_embed=8, cell=cell, bidirectional=bidirectional, **kw)
    fused = RNNModel(RNNConfig(impl="fused", **cfg)).eval()
    book = RNNModel(RNNConfig(impl="textbook", **cfg)).eval()
    book.load_state_dict(fused.state_dict(), strict=True)  # one layout: the keys match exactly
    return fused, book


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(0, 40, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0] * 2 + [1] * 5])  # full, right-padded, left-padded
    return ids, mask


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_textbook_equals_fused(cell, bidirectional):
    fused, book = _pair(cell, bidirectional, n_layer=3)
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in book.named_parameters()]
    ids, mask = _batch()
    for m in (None, mask):
        a, b = fused.hidden_states(ids, attention_mask=m), book.hidden_states(ids, attention_mask=m)
        assert a.shape == (3, 7, fused.output_dim) and fused.output_dim == 12 * (2 if bidirectional else 1)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # gradients agree too (the textbook loop is a faithful, differentiable copy)
    fused.train(), book.train()
    for model in (fused, book):
        model.hidden_states(ids, attention_mask=mask).pow(2).sum().backward()
    for (name, p), (_, q) in zip(fused.named_parameters(), book.named_parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_textbook_lstm_cell_is_the_equations_torch_uses():
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(5, 4)
    x, h, c = torch.randn(2, 5), torch.randn(2, 4), torch.randn(2, 4)
    h2, c2 = lstm_cell(x @ ref.weight_ih.T + ref.bias_ih, h, c, ref.weight_hh, ref.bias_hh)
    rh, rc = ref(x, (h, c))
    torch.testing.assert_close(h2, rh), torch.testing.assert_close(c2, rc)


@pytest.mark.parametrize("impl", ["fused", "textbook"])
@pytest.mark.parametrize("cell", CELLS)
def test_padded_row_equals_the_row_alone_both_directions(impl, cell):
    fused, book = _pair(cell, bidirectional=True)
    model = fused if impl == "fused" else book
    ids, mask = _batch()
    h = model.hidden_states(ids, attention_mask=mask)
    right = model.hidden_states(ids[1:2, :4])[0]
    left = model.hidden_states(ids[2:3, 2:])[0]
    torch.testing.assert_close(h[1, :4], right, atol=1e-6, rtol=0)
    torch.testing.assert_close(h[2, 2:], left, atol=1e-6, rtol=0)
    assert h[1, 4:].abs().max() == 0 and h[2, :2].abs().max() == 0  # padded positions output zero
    # the padding token's value does not matter
    noisy = ids.masked_fill(~mask.bool(), 39)
    torch.testing.assert_close(model.hidden_states(noisy, attention_mask=mask), h)


def test_fused_refuses_holes_in_the_mask_textbook_handles_them():
    fused, book = _pair("lstm", bidirectional=False)
    ids = torch.randint(0, 40, (1, 5))
    mask = torch.tensor([[1, 0, 1, 1, 1]])
    with pytest.raises(ValueError, match="one run"):
        fused.hidden_states(ids, attention_mask=mask)
    h = book.hidden_states(ids, attention_mask=mask)
    alone = book.hidden_states(ids[:, [0, 2, 3, 4]])
    torch.testing.assert_close(h[0, [0, 2, 3, 4]], alone[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("impl", ["fused", "textbook"])
@pytest.mark.parametrize("cell", CELLS)
def test_state_carries_over_chunks(impl, cell):
    fused, book = _pair(cell, bidirectional=False)
    model = fused if impl == "fused" else book
    ids = torch.randint(0, 40, (2, 9))
    whole, _ = model(ids)
    cache = model.new_cache()
    parts = [model(ids[:, a:b], cache=cache)[0] for a, b in ((0, 4), (4, 5), (5, 9))]
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-6, rtol=0)
    assert cache.length == 9
    # rows can leave the batch (generation compacts it)
    cache = model.new_cache()
    model(ids[:, :4], cache=cache)
    cache.select(torch.tensor([1]))
    torch.testing.assert_close(model(ids[1:, 4:], cache=cache)[0], whole[1:, 4:], atol=1e-6, rtol=0)


def _trained_lm(text: str, steps: int = 120, impl: str = "fused") -> RNNModel:
    """A tiny character LSTM fitted to ``text`` (byte ids), so greedy decoding is not degenerate."""
    torch.manual_seed(0)
    data = torch.tensor(list(text.encode()), dtype=torch.long)
    model = RNNModel(RNNConfig(vocab_size=256, n_layer=1, d_model=32, d_embed=16, block_size=16, impl=impl))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for step in range(steps):
        starts = torch.randint(0, len(data) - 17, (16,))
        x = torch.stack([data[s : s + 16] for s in starts])
        y = torch.stack([data[s + 1 : s + 17] for s in starts])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_generation_batched_equals_alone_equals_no_cache_and_runs_past_block_size():
    from lmforge.models.generate import SamplingConfig, generate, generate_batch

    model = _trained_lm("the cat sat on the mat. a dog ran to the log. " * 20)
    greedy = SamplingConfig(max_new_tokens=12, temperature=0, top_k=None)
    prompts = [list(b"the c"), list(b"a d"), list(b"on the m")]
    batched = generate_batch(model, prompts, greedy, pad_id=0)
    alone = [generate(model, p, greedy) for p in prompts]
    no_cache = [generate(model, p, greedy, use_cache=False) for p in prompts]
    assert batched == alone == no_cache
    assert len({tuple(x) for x in batched}) > 1  # the prompts steer the model
    # sampling with a seed is reproducible
    sample = SamplingConfig(max_new_tokens=20, temperature=1.0, top_k=None, seed=3)
    assert generate(model, prompts[0], sample) == generate(model, prompts[0], sample)
    # the state is the cache: no context limit (block_size is 16)
    long = SamplingConfig(max_new_tokens=40, temperature=0, top_k=None)
    assert len(generate(model, list(b"the cat sat on the "), long)) == 40


def test_bidirectional_is_no_language_model():
    fused, _ = _pair("lstm", bidirectional=True)
    assert fused.lm_head is None
    with pytest.raises(ConfigError, match="bidirectional"):
        fused(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="bidirectional"):
        fused.hidden_states(torch.zeros(1, 3, dtype=torch.long), cache=RNNState())


def test_tied_embeddings_with_projection():
    m = RNNModel(RNNConfig(vocab_size=30, n_layer=1, d_model=12, d_embed=6, tie_embeddings=True))
    assert m.lm_head.weight is m.wte.weight and m.proj.weight.shape == (6, 12)
    assert m(torch.zeros(2, 3, dtype=torch.long))[0].shape == (2, 3, 30)
    untied = RNNModel(RNNConfig(vocab_size=30, n_layer=1, d_model=12, d_embed=6, tie_embeddings=False))
    assert untied.proj is None and untied.lm_head.weight is not untied.wte.weight


def test_pool_last_reads_each_direction_at_its_end():
    fused, _ = _pair("gru", bidirectional=True)
    ids, mask = _batch()
    h = fused.hidden_states(ids, attention_mask=mask)
    pooled = fused.pool_last(h, mask)
    H = fused.config.d_model
    torch.testing.assert_close(pooled[1], torch.cat([h[1, 3, :H], h[1, 0, H:]]))  # right-padded row
    torch.testing.assert_close(pooled[2], torch.cat([h[2, 6, :H], h[2, 2, H:]]))  # left-padded row


def test_save_load_round_trip_and_switch_impl(tmp_path):
    from lmforge.models.io import load_model, read_config, save_model

    fused, _ = _pair("lstm", bidirectional=True)
    save_model(fused, tmp_path / "m")
    assert read_config(tmp_path / "m").model_type == "rnn"
    loaded = load_model(tmp_path / "m").eval()
    ids, mask = _batch()
    expected = fused.hidden_states(ids, attention_mask=mask)
    torch.testing.assert_close(loaded.hidden_states(ids, attention_mask=mask), expected)
    # the same checkpoint opened with the textbook loop
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "impl": "textbook"}))
    book = load_model(tmp_path / "m").eval()
    from lmforge.models.rnn import TextbookRNN

    assert isinstance(book.rnn, TextbookRNN)
    torch.testing.assert_close(book.hidden_states(ids, attention_mask=mask), expected, atol=1e-5, rtol=0)


def _char_tok(tmp_path, text: str):
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    return train_tokenizer([text], TokenizerConfig(kind="char", family="gpt", vocab_size=256, min_frequency=1))


def test_pretrain_stage_trains_an_lstm_lm_and_lmforge_generate_samples_it(tmp_path, capsys):
    from lmforge.cli import main
    from lmforge.train.config import PretrainConfig
    from lmforge.train.loop import flops_per_token
    from lmforge.train.pretrain import run

    text = "to be or not to be, that is the question.\n" * 60
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text)
    tok = _char_tok(tmp_path, text)
    tok.save(tmp_path / "tok")
    cfg = PretrainConfig.model_validate({
        "objective": "clm", "data": {"train": [str(corpus)], "val_fraction": 0.2, "txt_split": "file"},
        "model": {"family": "rnn", "cell": "lstm", "block_size": 16, "n_layer": 1, "d_model": 24, "d_embed": 12},
        "train": {"max_steps": 40, "batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "eval_every": 20,
                  "eval_batches": 2, "save_every": 100, "log_every": 100}})
    result = run(cfg, tmp_path / "tok", tmp_path / "pre", progress=False)
    assert result.metrics["val_loss"] < 1.5, result.metrics  # ~3.1 nats at random init; the text repeats
    model_dir = tmp_path / "pre" / "model"
    from lmforge.models.io import load_model

    assert flops_per_token(load_model(model_dir)) is None or flops_per_token(load_model(model_dir)) > 0
    capsys.readouterr()
    assert main(["generate", "--model", str(model_dir), "--prompt", "to be or", "--max-new-tokens", "20",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("to be or") and len(out.strip()) > len("to be or")
    # a bidirectional recurrent LM is refused by the config (the model raises) and by generation
    bad = cfg.model_copy(update={"model": cfg.model.model_copy(update={"bidirectional": True})})
    with pytest.raises(ConfigError, match="bidirectional"):
        run(bad.model_copy(update={"train": bad.train.model_copy(update={"max_steps": 1})}), tmp_path / "tok",
            tmp_path / "pre2", progress=False)
    from lmforge.models.io import save_model
    from lmforge.tasks.generation import load_decoder

    save_model(RNNModel(RNNConfig(vocab_size=tok.vocab_size, n_layer=1, d_model=8, bidirectional=True)),
               tmp_path / "bi", extra_files=sorted((tmp_path / "tok").glob("tokenizer*.json")))
    with pytest.raises(InputError, match="bidirectional"):
        load_decoder(tmp_path / "bi")


def test_word_vectors_initialise_the_embedding(tmp_path):
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    words = ["paris", "rome", "oslo", "anna", "met"]
    tok = train_tokenizer([" ".join(words)] * 20, TokenizerConfig(kind="wordpiece", family="bert", vocab_size=120))
    vec = tmp_path / "vectors.txt"  # word2vec text format: header, then word and values
    rows = {"paris": [1.0, 2.0, 3.0], "rome": [-1.0, 0.5, 0.0], "anna": [0.1, 0.2, 0.3]}
    vec.write_text(f"{len(rows)} 3\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()))
    fields = {"vocab_size": tok.vocab_size, "n_layer": 1, "d_model": 6, "vectors": str(vec), "freeze_embeddings": True}
    model = build_from_recipe(fields, tok)
    assert model.config.d_embed == 3 and not model.wte.weight.requires_grad
    for w, v in rows.items():
        assert model.wte.weight[tok.token_to_id(w)].tolist() == pytest.approx(v)
    assert model.vector_coverage == pytest.approx(3 / tok.vocab_size)
    with pytest.raises(ConfigError, match="d_embed"):
        build_from_recipe({**fields, "d_embed": 5}, tok)


def _write_tok(tmp_path, text: str, kind: str = "wordpiece"):
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    tok = train_tokenizer([text] * 20, TokenizerConfig(kind=kind, family="bert", vocab_size=200, min_frequency=1))
    tok.save(tmp_path / "tok")
    return tmp_path / "tok"


def test_bilstm_sentence_classifier_end_to_end(tmp_path):
    from lmforge.cli import main
    from lmforge.tasks.stage import FinetuneConfig, run

    pos, neg, filler = ["good", "great", "fine"], ["bad", "awful", "sad"], ["the", "film", "was", "very", "plot"]
    rng = random.Random(0)
    rows = []
    for i in range(60):
        label = "pos" if i % 2 else "neg"
        words = [rng.choice(filler) for _ in range(rng.randint(2, 6))]
        words.insert(rng.randint(0, len(words)), rng.choice(pos if label == "pos" else neg))
        rows.append({"text": " ".join(words), "label": label})
    data = tmp_path / "sent.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok_dir = _write_tok(tmp_path, " ".join(pos + neg + filler))
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16, "pooling": "mean", "dropout": 0.0},
        "model": {"family": "rnn", "cell": "lstm", "bidirectional": True, "n_layer": 1, "d_model": 24, "d_embed": 16,
                  "block_size": 16},
        "data": {"train": str(data), "val": str(data)},
        "train": {"max_steps": 50, "batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "eval_every": 25,
                  "metric_for_best": "val_accuracy"}})
    run(cfg, None, tmp_path / "ft", progress=False, tokenizer_dir=tok_dir)
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    assert json.loads((model_dir / "config.json").read_text())["body"]["model_type"] == "rnn"
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(out),
                 "--bootstrap", "100"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["accuracy"] > 0.9, m


def test_bilstm_crf_tagger_on_chinese_characters(tmp_path):
    """A BiLSTM-CRF over characters (MSRA's format): names and places learnt from context."""
    from lmforge.cli import main
    from lmforge.tasks.stage import FinetuneConfig, run

    people, places = ["王小明", "李华", "张伟"], ["北京", "上海", "广州"]
    verbs, tails = ["去了", "住在", "来自"], ["。", "吗？", "，很好。"]
    rng = random.Random(0)
    sents = []
    for _ in range(50):
        p, v, q, t = rng.choice(people), rng.choice(verbs), rng.choice(places), rng.choice(tails)
        tags = ["B-PER"] + ["I-PER"] * (len(p) - 1) + ["O"] * len(v) + ["B-LOC"] + ["I-LOC"] * (len(q) - 1) \
            + ["O"] * len(t)
        sents.append("\n".join(f"{c}\t{y}" for c, y in zip(p + v + q + t, tags)) + "\n")
    data = tmp_path / "zh.bio"
    data.write_text("\n".join(sents), encoding="utf-8")
    chars = "".join(people + places + verbs + tails)
    tok_dir = _write_tok(tmp_path, " ".join(chars))
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "ner", "format": "chars", "max_len": 24, "crf": True, "dropout": 0.0},
        "model": {"family": "rnn", "cell": "lstm", "bidirectional": True, "n_layer": 1, "d_model": 24, "d_embed": 16,
                  "block_size": 32},
        "data": {"train": str(data), "val": str(data)},
        "train": {"max_steps": 60, "batch_size": 8, "lr": 2e-2, "warmup_steps": 2, "eval_every": 30,
                  "metric_for_best": "val_entity_f1"}})
    run(cfg, None, tmp_path / "ft", progress=False, tokenizer_dir=tok_dir)
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["crf"] is True and saved["body"]["bidirectional"] is True
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(out),
                 "--bootstrap", "100"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["entity_f1"] > 0.9, m
    from lmforge.tasks.predict import predict_texts

    pred = predict_texts(model_dir, ["李华住在上海。"])[0]
    assert {(e["type"], e["text"]) for e in pred["entities"]} == {("PER", "李华"), ("LOC", "上海")}
