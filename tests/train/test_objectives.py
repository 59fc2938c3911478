"""MLM + NSP and seq2seq objectives: batch structure, determinism, and that the trainer learns with them."""

import json

import numpy as np
import pytest
import torch

from lmforge.models.bert import BERT, BertConfig, MaskingInfo
from lmforge.models.io import load_model
from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig
from lmforge.tokenizer import TokenizerConfig, encode_corpus, read_shard, train_tokenizer
from lmforge.train.config import PretrainConfig, TrainConfig
from lmforge.train.loop import Trainer
from lmforge.train.objectives import BertPretrainModel, MaskedLM, Seq2SeqLM


@pytest.fixture(scope="module")
def bert_shards(tmp_path_factory, shakespeare):
    d = tmp_path_factory.mktemp("mlm")
    (d / "train.txt").write_text(shakespeare[:120_000], encoding="utf-8")
    (d / "val.txt").write_text(shakespeare[-30_000:], encoding="utf-8")
    tok = train_tokenizer([shakespeare[:120_000]], TokenizerConfig(kind="wordpiece", family="bert", vocab_size=600))
    encode_corpus([d / "train.txt"], tok, d / "train.bin", progress=False)
    encode_corpus([d / "val.txt"], tok, d / "val.bin", progress=False)
    return tok, read_shard(d / "train.bin"), read_shard(d / "val.bin")


def _mlm(tok, tr, va, batch=16, **kw):
    return MaskedLM(tr.tokens, tr.doc_offsets, va.tokens, va.doc_offsets, 32, batch, 7, MaskingInfo.from_tokenizer(tok),
                    tok.cls_id, tok.sep_id, tok.pad_id, **kw)


def test_mlm_nsp_batches(bert_shards):
    tok, tr, va = bert_shards
    obj = _mlm(tok, tr, va, batch=256)
    b = obj.train_batch(0, 0, 1)
    ids, labels, types, att = b["input_ids"], b["labels"], b["token_type_ids"], b["attention_mask"]
    assert ids.shape[1] <= 32 and (ids[:, 0] == tok.cls_id).all()
    n_sep = ((ids == tok.sep_id) & (labels == -100)).sum(1)  # [SEP]s are never selected for masking
    assert (n_sep == 2).all()
    assert ((types == 1) & (att == 0)).sum() == 0 and (types[:, 0] == 0).all()
    # about half the pairs are "random next", and about 15% of real tokens are selected
    assert 0.4 < b["next_sentence_label"].float().mean() < 0.6
    real = (att == 1) & (ids != tok.cls_id) & (ids != tok.sep_id)
    assert 0.11 < (labels != -100).sum() / real.sum() < 0.19
    masked = labels != -100
    assert 0.7 < (ids[masked] == tok.mask_id).float().mean() < 0.9  # 80% [MASK]
    # batches are a pure function of the step; micro-batches slice the same global batch
    again = _mlm(tok, tr, va, batch=256).train_batch(0, 1, 2)
    assert torch.equal(again["input_ids"], ids[128:256])
    assert not torch.equal(obj.train_batch(1, 0, 1)["input_ids"][:8], ids[:8])


def test_mlm_trains_and_saves_a_plain_bert(tmp_path, bert_shards):
    tok, tr, va = bert_shards
    torch.manual_seed(0)
    bert = BERT(BertConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, d_model=64, dropout=0.0,
                           pad_token_id=tok.pad_id))
    cfg = TrainConfig(max_steps=40, batch_size=16, lr=2e-3, warmup_steps=4, eval_every=20, eval_batches=3)
    res = Trainer(BertPretrainModel(bert), _mlm(tok, tr, va), cfg, tmp_path, progress=False).train()
    first, last = res.history[0], res.history[-1]
    assert last["val_loss"] < first["val_loss"] < np.log(tok.vocab_size) + 1
    assert 0 <= last["val_accuracy"] <= 1 and "val_nsp_accuracy" in last and "val_bpb" not in last
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, BERT)
    for k, v in bert.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_seq2seq_stream_pairs_and_training(tmp_path, shakespeare):
    chars = sorted(set(shakespeare))
    data = np.array([chars.index(c) + 3 for c in shakespeare[:100_000]], dtype=np.uint16)
    obj = Seq2SeqLM(8, seed=1, start_id=1, pad_id=0, eos_id=2, train_tokens=data[:90_000], val_tokens=data[90_000:],
                    source_len=24, target_len=16, val_bytes_per_token=1.0)
    b = obj.train_batch(3, 0, 1)
    assert b["src"].shape == (8, 24) and b["labels"].shape == (8, 16)
    assert (b["tgt"][:, 0] == 1).all() and torch.equal(b["tgt"][:, 1:], b["labels"][:, :-1])
    # the target continues the source in the stream
    row = b["src"][0].numpy()
    start = next(i for i in range(90_000) if np.array_equal(data[i:i + 24], row))
    assert np.array_equal(data[start + 24:start + 40], b["labels"][0].numpy())
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=len(chars) + 3, block_size=32, n_encoder_layer=1, n_decoder_layer=1,
                                  n_head=2, d_model=32))
    cfg = TrainConfig(max_steps=30, batch_size=8, lr=3e-3, warmup_steps=3, eval_every=15, eval_batches=2)
    res = Trainer(model, obj, cfg, tmp_path, progress=False).train()
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]
    assert res.history[-1]["val_bpb"] == pytest.approx(res.history[-1]["val_loss"] / np.log(2), rel=1e-4)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "seq2seq"


def test_seq2seq_explicit_pairs_pad_and_mask():
    pairs = [([5, 6, 7], [8, 2]), ([5], [9, 9, 9, 2])]
    obj = Seq2SeqLM(2, seed=0, start_id=1, pad_id=0, eos_id=2, train_pairs=pairs, val_pairs=pairs)
    b = next(iter(obj.eval_batches(1)))
    assert b["src"].tolist() == [[5, 6, 7], [5, 0, 0]] and b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[8, 2, -100, -100], [9, 9, 9, 2]]
    assert b["tgt"].tolist() == [[1, 8, 2, 0], [1, 9, 9, 9]]
    assert obj.count(b) == 6


def test_pretrain_config_families():
    cfg = PretrainConfig.model_validate({"objective": "mlm", "model": {"n_layer": 2, "type_vocab_size": 2}})
    assert cfg.family == "bert"
    with pytest.raises(ValueError, match="do not apply to the bert family"):
        PretrainConfig.model_validate({"objective": "mlm", "model": {"positions": "rope"}})
    with pytest.raises(ValueError, match="trains gpt or rnn models, not model.family=bert"):
        PretrainConfig.model_validate({"objective": "clm", "model": {"family": "bert"}})
    s2s = PretrainConfig.model_validate({"objective": "seq2seq", "model": {"n_encoder_layer": 2, "norm": "rmsnorm"}})
    assert s2s.model.family_dict("seq2seq")["n_encoder_layer"] == 2
    with pytest.raises(ValueError, match="muon"):
        PretrainConfig.model_validate({"train": {"optimizer": "muon", "distributed": "fsdp"}})
