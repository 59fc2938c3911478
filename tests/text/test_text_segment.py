"""Word segmentation, stop words, lemmas and normalisation shared with the classic models."""

from __future__ import annotations

from lmforge.text import is_cjk, lemmatize, normalize, segment, stopwords, tokenize_en, to_simplified


def test_english_rules_match_treebank_style(shared_datasets):
    path = shared_datasets / "classification" / "sst2" / "dev.tsv"
    rows = [r.split("\t")[0].strip() for r in path.read_text(encoding="utf-8").splitlines()[1:200]]
    # SST-2 is already tokenized PTB-style: re-tokenizing its detokenized form gives it back
    same = 0
    for r in rows:
        detok = r.replace(" 's", "'s").replace(" n't", "n't").replace(" ,", ",").replace(" .", ".")
        same += tokenize_en(detok) == r.split()
    assert same / len(rows) > 0.85


def test_english_tokens():
    assert tokenize_en("It's a don't-miss film, isn't it? Mail me: a.b@c.org!") == [
        "It", "'s", "a", "don't-miss", "film", ",", "is", "n't", "it", "?", "Mail", "me", ":", "a.b@c.org", "!"]
    assert tokenize_en("Costs $1,234.50 today...") == ["Costs", "$", "1,234.50", "today", "..."]


def test_chinese_jieba(shared_datasets):
    text = (shared_datasets / "pretrain" / "zh_novels" / "红楼梦.txt").read_text(encoding="utf-8")[2000:2400]
    toks = segment(text)
    assert is_cjk(text)
    assert "".join(toks) == "".join(text.split())
    assert any(len(t) >= 2 for t in toks) and len(toks) < len("".join(toks))
    assert segment("我们今天去北京大学", "zh") == ["我们", "今天", "去", "北京大学"]


def test_stopwords_removed():
    assert segment("the film is a masterpiece of the genre", "en", remove_stopwords=True) == [
        "film", "masterpiece", "genre"]
    assert "的" in stopwords("zh") and "the" in stopwords("en")
    assert "的" not in segment("我的书是新的", "zh", remove_stopwords=True)


def test_lemmas():
    assert [lemmatize(w) for w in ["movies", "stories", "was", "running", "stopped", "boxes", "glass"]] == [
        "movie", "story", "be", "run", "stop", "box", "glass"]


def test_normalize_and_t2s():
    assert normalize("  Ｈｅｌｌｏ\t\tworld  \n\n\n\n  next ", lowercase=True) == "hello world\n\nnext"
    assert to_simplified("漢字與學習") == "汉字与学习"
    assert to_simplified("plain text") == "plain text"
