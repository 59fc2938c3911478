"""BERT: shapes, padding mask, token types, MLM+NSP training, masking statistics."""

import pytest
import torch

from lmforge.models.bert import BERT, BertConfig, MaskingInfo, mask_tokens

SMALL = dict(vocab_size=100, block_size=64, n_layer=2, n_head=4, d_model=32, dropout=0.0)
PAD, CLS, SEP, MASK = 0, 1, 2, 3
INFO = MaskingInfo(mask_token_id=MASK, vocab_size=100, special_ids=[PAD, CLS, SEP, MASK])


def test_shapes_and_heads():
    torch.manual_seed(0)
    model = BERT(BertConfig(**SMALL)).eval()
    x = torch.randint(4, 100, (3, 16))
    logits, loss = model(x)
    assert logits.shape == (3, 16, 100) and loss is None
    h = model.hidden_states(x)
    assert h.shape == (3, 16, 32) and model.nsp_logits(h).shape == (3, 2) and model.pooled(h).shape == (3, 32)
    assert model.mlm_head.weight is model.wte.weight
    assert BertConfig.from_dict(BertConfig(**SMALL).to_dict()) == BertConfig(**SMALL)
    assert BertConfig(**SMALL).to_dict()["model_type"] == "bert"
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_padding_is_ignored_and_token_types_matter():
    torch.manual_seed(0)
    model = BERT(BertConfig(**SMALL)).eval()
    x = torch.randint(4, 100, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    y = x.clone()
    y[1, 8:] = torch.randint(4, 100, (4,))  # different garbage under the padding
    a, b = model.hidden_states(x, attention_mask=mask), model.hidden_states(y, attention_mask=mask)
    assert torch.allclose(a[1, :8], b[1, :8], atol=1e-5)
    assert not torch.allclose(model.hidden_states(x)[1, :8], model.hidden_states(y)[1, :8], atol=1e-3)
    # a row without padding is unaffected by another row's mask
    assert torch.allclose(a[0], model.hidden_states(x[:1])[0], atol=1e-5)
    tt = torch.zeros_like(x)
    tt[:, 6:] = 1
    assert not torch.allclose(model.hidden_states(x, tt), model.hidden_states(x), atol=1e-3)


def test_mlm_and_nsp_losses_go_down():
    torch.manual_seed(0)
    model = BERT(BertConfig(**SMALL))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 100, (8, 24), generator=g)
    ids[:, 0], ids[:, 12], ids[:, -1] = CLS, SEP, SEP
    tt = torch.zeros_like(ids)
    tt[:, 13:] = 1
    inputs, labels = mask_tokens(ids, INFO, prob=0.3, generator=g)
    nsp = torch.randint(0, 2, (8,), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        logits, loss = model(inputs, labels, token_type_ids=tt, next_sentence_label=nsp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or loss.item()
    model.eval()
    h = model.hidden_states(inputs, tt)
    assert loss.item() < 0.4 * first
    assert (model.nsp_logits(h).argmax(-1) == nsp).all()
    assert (model.mlm_logits(h).argmax(-1)[labels != -100] == labels[labels != -100]).float().mean() > 0.9


def test_mask_tokens_statistics():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 100, (200, 128), generator=g)
    ids[:, 0], ids[:, 64], ids[:, -10:] = CLS, SEP, PAD
    inputs, labels = mask_tokens(ids, INFO, generator=g)
    special = (ids <= MASK)
    selected = labels != -100
    assert not (selected & special).any() and torch.equal(inputs[special], ids[special])
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])  # only selected positions change
    rate = selected.sum() / (~special).sum()
    assert 0.14 < rate < 0.16
    n = selected.sum()
    masked = (inputs == MASK) & selected
    changed = (inputs != ids) & (inputs != MASK) & selected
    kept = (inputs == ids) & selected  # 10% left alone, plus random draws that hit the same token
    assert 0.78 < masked.sum() / n < 0.82
    assert 0.085 < changed.sum() / n < 0.11
    assert 0.09 < kept.sum() / n < 0.115
    assert (inputs[changed] > MASK).all()  # random replacements are never special tokens
    a = mask_tokens(ids, INFO, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, INFO, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # reproducible from the generator


def test_whole_word_masking_selects_whole_words():
    info = MaskingInfo(MASK, 100, [PAD, CLS, SEP, MASK], continuation_ids=list(range(60, 100)))
    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(300):  # words of 1-4 pieces: a start token in [4, 60) then continuations in [60, 100)
        row = [CLS]
        while len(row) < 60:
            row += [int(torch.randint(4, 60, (1,), generator=g))]
            row += torch.randint(60, 100, (int(torch.randint(0, 4, (1,), generator=g)),), generator=g).tolist()
        rows.append(row[:60] + [SEP])
    ids = torch.tensor(rows)
    _, labels = mask_tokens(ids, info, prob=0.15, whole_word=True, generator=g)
    selected = labels != -100
    word = (~((ids >= 60) & (ids < 100))).long().cumsum(-1)
    words_total = words_selected = 0
    for r in range(len(rows)):
        for w in word[r].unique().tolist():
            pieces = selected[r][(word[r] == w) & (ids[r] > MASK)]
            if len(pieces) == 0:
                continue
            assert pieces.all() or not pieces.any(), "a word was split"
            words_total += 1
            words_selected += int(pieces.all())
    assert 0.13 < words_selected / words_total < 0.17
    multi = [(selected[r] & (ids[r] >= 60)).any() for r in range(len(rows))]
    assert sum(multi) > 100  # continuation pieces do get masked (with their word)


def test_masking_info_from_a_wordpiece_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(["unbelievable tokenization of wordpieces"] * 50 + ["the cat sat on the mat"] * 50,
                            trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    info = MaskingInfo.from_tokenizer(tok)
    assert info.mask_token_id == tok.token_to_id("[MASK]")
    assert sorted(info.special_ids) == sorted(tok.token_to_id(t) for t in specials)
    assert info.continuation_ids and all(tok.id_to_token(i).startswith("##") for i in info.continuation_ids)
    ids = torch.tensor([tok.encode("unbelievable tokenization").ids] * 400)
    _, labels = mask_tokens(ids, info, prob=0.5, whole_word=True, generator=torch.Generator().manual_seed(0))
    cont = torch.tensor([tok.id_to_token(int(i)).startswith("##") for i in ids[0]])
    sel = labels != -100
    first_word_end = int(cont[1:].logical_not().nonzero()[0]) + 1  # index where the second word starts
    assert (sel[:, :first_word_end].all(1) | ~sel[:, :first_word_end].any(1)).all()


def test_masking_info_from_an_lmforge_tok_and_a_dict():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from lmforge.tokenizer.tok import Tok

    hf = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.train_from_iterator(["masked language models predict hidden words"] * 20,
                           trainers.WordPieceTrainer(vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok = Tok(hf)
    info = MaskingInfo.coerce(tok)
    assert info.mask_token_id == tok.mask_id and tok.pad_id in info.special_ids
    as_dict = {"mask_token_id": 3, "vocab_size": 100, "special_ids": [0, 1, 2, 3]}
    assert MaskingInfo.coerce(as_dict) == INFO
    ids = torch.randint(4, 100, (4, 50))
    a = mask_tokens(ids, as_dict, generator=torch.Generator().manual_seed(0))
    b = mask_tokens(ids, INFO, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
