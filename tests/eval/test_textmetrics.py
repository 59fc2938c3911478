import csv
import re

import numpy as np
import pytest
import sacrebleu

from lmforge.errors import InputError
from lmforge.eval.textmetrics import (bleu, bleu_fn, chrf, chrf_fn, detect_lang, length_stats, rouge,
                                      rouge_per_example, tokenize)

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def _rouge_score_means(hyps, refs, use_stemmer):
    sc = rouge_scorer.RougeScorer(TYPES, use_stemmer=use_stemmer)
    per = [sc.score_multi(r, h) if isinstance(r, list) else sc.score(r, h) for h, r in zip(hyps, refs)]
    return {k: 100 * float(np.mean([s[k].fmeasure for s in per])) for k in TYPES}


def _synthetic_english(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    vocab = ("the cats were running quickly across gardens , and dogs barked loudly ; "
             "a runner runs ran studies studied 2024 3.5% Mr. O'Neil's \"quoted\" words -- x y z").split()

    def text():
        sents = [" ".join(vocab[k] for k in rng.integers(0, len(vocab), rng.integers(0, 12)))
                 for _ in range(rng.integers(1, 4))]
        return "\n".join(sents)

    hyps = [text() for _ in range(n)]
    refs = [text() if i % 3 else [text(), text()] for i in range(n)]  # some examples have two references
    return hyps, refs


@pytest.mark.parametrize("use_stemmer", [True, False])
@pytest.mark.parametrize("lang", [None, "en"])
def test_rouge_matches_rouge_score_english(use_stemmer, lang):
    hyps, refs = _synthetic_english(0)
    ours = rouge(hyps, refs, lang=lang, use_stemmer=use_stemmer)
    want = _rouge_score_means(hyps, refs, use_stemmer)
    for k in TYPES:
        assert ours[k] == pytest.approx(want[k], abs=1e-6), k
    assert ours["stemmer"] is use_stemmer


def test_rouge_matches_rouge_score_on_cnn_dailymail(shared_datasets):
    path = shared_datasets / "summarization" / "cnn_dailymail_sample" / "train_sample.csv"
    if not path.exists():
        pytest.skip(f"{path} missing")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:40]
    # lead-3 baseline, one sentence per line (rougeLsum splits on newlines)
    hyps = ["\n".join(re.split(r"(?<=[.!?])\s+", r["article"])[3:6]) for r in rows]
    refs = [r["highlights"] for r in rows]
    for stem in (True, False):
        ours, want = rouge(hyps, refs, lang="en", use_stemmer=stem), _rouge_score_means(hyps, refs, stem)
        for k in TYPES:
            assert ours[k] == pytest.approx(want[k], abs=1e-6), (k, stem)


def test_rouge_chinese_by_hand_and_rouge_score_zero():
    hyp, ref = "我喜欢猫。", "我也喜欢猫！"
    # characters: hyp 我 喜 欢 猫 (4), ref 我 也 喜 欢 猫 (5); punctuation dropped
    # rouge1: 4 hits -> P 1, R 4/5, F 8/9; rouge2: hyp {我喜 喜欢 欢猫}, ref {我也 也喜 喜欢 欢猫}: 2 hits
    # -> P 2/3, R 1/2, F 4/7; rougeL: LCS 我喜欢猫 = 4 -> 8/9
    m = rouge([hyp], [ref])
    assert m["rouge1"] == pytest.approx(800 / 9)
    assert m["rouge2"] == pytest.approx(400 / 7)
    assert m["rougeL"] == pytest.approx(800 / 9) and m["rougeLsum"] == pytest.approx(800 / 9)
    # rouge-score's tokenizer drops all non-ASCII, so it scores Chinese 0: the reason we have our own
    assert rouge_scorer.RougeScorer(["rouge1"]).score(ref, hyp)["rouge1"].fmeasure == 0.0
    assert rouge([hyp], [ref], lang="en")["rouge1"] == 0.0  # lang="en" is rouge-score's behaviour


def test_tokenize_mixed_script():
    assert tokenize("iPhone手机 Running, café!", stem=True) == ["iphon", "手", "机", "run", "café"]
    assert tokenize("café", lang="en") == ["caf"]


def test_rouge_per_example_and_empty():
    per = rouge_per_example(["a b c", "", "x"], ["a b c", "a", "y"])
    assert per["rouge1"].tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(InputError, match="2 hypotheses but 1"):
        rouge(["a", "b"], ["a"])


def test_bleu_matches_sacrebleu_and_records_signature():
    hyps = ["the cat sat on the mat", "a dog barked at the moon today"]
    refs = ["the cat sat on a mat", "the dog barked at the moon"]
    m = bleu(hyps, refs)
    want = sacrebleu.corpus_bleu(hyps, [refs])
    assert m["bleu"] == pytest.approx(want.score)
    assert "tok:13a" in m["signature"] and "nrefs:1" in m["signature"] and m["tokenize"] == "13a"
    c = chrf(hyps, refs)
    assert c["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score) and "nc:6|nw:0" in c["signature"]


def test_bleu_chinese_auto_detects_zh_tokenizer():
    hyps, refs = ["我今天很高兴见到你"], ["今天我很高兴见到你"]
    m = bleu(hyps, refs)
    assert m["lang"] == "zh" and m["tokenize"] == "zh" and "tok:zh" in m["signature"]
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score)
    # with 13a the whole unspaced sentence is one word: no match at all
    assert bleu(hyps, refs, tokenize="13a")["bleu"] == pytest.approx(0.0)
    assert bleu(["hello"], ["hello"], lang="zh")["tokenize"] == "zh"
    assert detect_lang(["这是一个中文句子，with English words"]) == "zh"
    assert detect_lang(["mostly English text with 中文"]) is None


def test_bleu_variable_number_of_references():
    hyps = ["the cat sat on the mat", "a dog barked"]
    refs = [["the cat sat on a mat", "a cat sat on the mat"], ["a dog barked loudly"]]
    m = bleu(hyps, refs)
    want = sacrebleu.corpus_bleu(hyps, [["the cat sat on a mat", "a dog barked loudly"],
                                        ["a cat sat on the mat", None]])
    assert m["bleu"] == pytest.approx(want.score) and "nrefs:var" in m["signature"]


def test_bleu_fn_equals_corpus_bleu_on_subsets():
    rng = np.random.default_rng(0)
    words = "the a cat dog sat ran on under mat tree quickly".split()
    hyps = [" ".join(rng.choice(words, 8)) for _ in range(30)]
    refs = [" ".join(rng.choice(words, 8)) for _ in range(30)]
    fn = bleu_fn(hyps, refs)
    idx = rng.integers(0, 30, 30)
    assert fn(idx) == pytest.approx(sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]]).score)
    assert fn(np.arange(30)) == pytest.approx(bleu(hyps, refs)["bleu"])
    assert chrf_fn(hyps, refs)(idx) == pytest.approx(
        sacrebleu.corpus_chrf([hyps[i] for i in idx], [[refs[i] for i in idx]]).score)


def test_length_stats():
    s = length_stats(["a b", "c", "北京欢迎你"], ["a b c d", ["x y", "x y z w"], "北京"])
    assert s["hyp_mean"] == pytest.approx((2 + 1 + 5) / 3) and s["hyp_median"] == 2
    assert s["ref_mean"] == pytest.approx((4 + 3 + 2) / 3)
    assert s["ratio"] == pytest.approx(8 / 9) and s["empty_hyps"] == 0
