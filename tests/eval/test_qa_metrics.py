"""QA scores, checked with cases derived by hand from the SQuAD v1.1/v2.0 and CMRC 2018 scripts' rules."""

import json

import numpy as np
import pytest

from lmforge.eval.qa_metrics import exact_match, f1, normalize_answer, squad_metrics, squad_per_example, zh_segments


def test_normalize_answer_squad_rules():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theater") == "theater"  # articles only as whole words
    assert normalize_answer("U.S.A.") == "usa"
    # the official script removes only ASCII punctuation: curly quotes stay
    assert normalize_answer("“hello”") == "“hello”"


def test_exact_match_and_f1_english():
    assert exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower", "the tower"]) == 0.0
    # pred [cat, sat] vs gold [cat, sat, down]: P 1, R 2/3 -> F 0.8
    assert f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    # repeated tokens count once each: common {cat: 1, dog: 1} -> P = R = 2/3
    assert f1("cat cat dog", ["cat dog dog"]) == pytest.approx(2 / 3)
    # best over gold answers
    assert f1("denver broncos", ["broncos", "the denver broncos", "carolina"]) == pytest.approx(1.0)
    assert f1("x", ["y"]) == 0.0


def test_unanswerable_squad_v2_rule():
    assert exact_match("", []) == 1.0 and f1("", []) == 1.0
    assert exact_match("something", []) == 0.0 and f1("something", []) == 0.0
    assert f1("", ["an answer"]) == 0.0
    # a prediction of only articles/punctuation normalises to nothing: an abstention
    assert f1("the.", []) == 1.0


def test_squad_metrics_corpus():
    golds = {"q1": ["Denver Broncos"], "q2": ["Santa Clara, California", "Levi's Stadium"], "q3": [],
             "q4": ["1966"]}
    preds = {"q1": "the Denver Broncos", "q2": "Santa Clara", "q3": "", "extra": "ignored"}
    m = squad_metrics(preds, golds)
    # q1 EM 1 F1 1; q2 EM 0, F1 vs "santa clara california": P 1 R 2/3 -> 0.8; q3 1/1; q4 missing -> 0/0
    assert m["exact_match"] == pytest.approx(100 * 2 / 4)
    assert m["f1"] == pytest.approx(100 * (1 + 0.8 + 1 + 0) / 4)
    assert m["missing"] == 1 and m["n"] == 4 and m["lang"] == "en"
    assert m["no_ans_n"] == 1 and m["no_ans_exact_match"] == 100.0
    assert m["has_ans_f1"] == pytest.approx(100 * 1.8 / 3)
    per = squad_per_example(preds, golds)
    assert per["ids"] == ["q1", "q2", "q3", "q4"] and per["f1"].tolist() == pytest.approx([1, 0.8, 1, 0])


def test_chinese_segmentation():
    assert zh_segments("iPhone 12手机，很好用！") == ["iphone", "12", "手", "机", "很", "好", "用"]
    assert zh_segments("光荣和ω-force") == ["光", "荣", "和", "ω", "force"]


def test_chinese_cmrc_rules():
    assert exact_match("北京大学。", ["北京大学"]) == 1.0  # Chinese punctuation removed
    assert f1("北京大学。", ["北京大学"]) == 1.0
    # 5 vs 4 segments, common run 北京大学 = 4: P 4/5, R 1 -> 8/9
    assert f1("在北京大学", ["北京大学"]) == pytest.approx(8 / 9)
    assert exact_match("在北京大学", ["北京大学"]) == 0.0
    # CMRC's F1 uses the longest CONTIGUOUS common run: 北京 or 大学 (2), not all 4 characters
    assert f1("北京的大学", ["北京大学"]) == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    # English words stay whole inside Chinese answers: iphone, 12 common -> P 2/4, R 1 -> 2/3
    assert f1("iPhone 12手机", ["iphone 12"], lang="zh") == pytest.approx(2 / 3)
    assert f1("iphon", ["iphone"], lang="zh") == 0.0
    # best gold; unanswerable rule applies too
    assert f1("上海", ["北京", "上海市"]) == pytest.approx(0.8)
    assert exact_match("", [], lang="zh") == 1.0 and exact_match("。", [], lang="zh") == 1.0


def test_chinese_deliberate_differences_from_cmrc_script():
    # the script keeps ASCII '.' and spaces for EM; we drop all punctuation and compare segments
    assert exact_match("北京.", ["北京"]) == 1.0
    assert exact_match("北 京", ["北京"]) == 1.0


def test_language_picked_once_per_dataset():
    golds = {"a": ["北京大学"], "b": ["清华大学"], "c": ["MIT"]}
    preds = {"a": "北京大学", "b": "清华", "c": "the MIT"}
    m = squad_metrics(preds, golds)
    assert m["lang"] == "zh"
    # 'c' is scored by the Chinese rules too: 'the' is no article there, so no exact match
    assert m["exact_match"] == pytest.approx(100 / 3)
    assert squad_metrics(preds, golds, lang="en")["exact_match"] == pytest.approx(200 / 3)


def test_cmrc_dev_gold_as_prediction(shared_datasets):
    path = shared_datasets / "qa" / "cmrc2018" / "cmrc2018_dev.json"
    if not path.exists():
        pytest.skip(f"{path} missing")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    golds = {q["id"]: [a["text"] for a in q["answers"]] for art in data for p in art["paragraphs"] for q in p["qas"]}
    ids = list(golds)[:500]
    golds = {i: golds[i] for i in ids}
    m = squad_metrics({i: g[-1] + "。" for i, g in golds.items()}, golds)
    assert m["lang"] == "zh" and m["exact_match"] == 100.0 and m["f1"] == 100.0
    half = squad_metrics({i: g[0][: max(1, len(g[0]) // 2)] for i, g in golds.items()}, golds)
    assert 0 < half["exact_match"] < half["f1"] < 100
    assert np.isfinite(half["f1"])
