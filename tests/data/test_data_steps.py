"""Each step on real English and Chinese text: normalise, langid, quality, PII, dedup."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lmforge.data.config import DedupConfig, LangIdConfig, NormalizeConfig, PIIConfig, QualityConfig
from lmforge.data.document import Document
from lmforge.data.steps import PII, LangId, MinHasher, Normalize, Quality, detect, redact
from lmforge.data.steps.dedup import exact_duplicates, exact_key, jaccard, near_clusters, optimal_bands
from lmforge.data.steps.pii import cn_id_ok, luhn_ok
from data_helpers import paragraphs


def run_step(step, texts):
    dropped = []
    docs = [Document(str(i), t, {}) for i, t in enumerate(texts)]
    kept = list(step(docs, lambda d, r: dropped.append((d, r))))
    return kept, dropped


# ------------------------------------------------------------------ normalise

def test_normalize_forms():
    step = Normalize(NormalizeConfig())
    (doc,), _ = run_step(step, ["Ｆｕｌｌ\u00a0width\x07  text &amp; <b>tags</b>\r\n\n\n\nnext\u200b line"])
    assert doc.text == "Full width text & tags\n\nnext line"
    (zh,), _ = run_step(step, ["你好，世界！ＡＢＣ１２３"])
    assert zh.text == "你好，世界！ABC123"  # CJK punctuation kept, full-width Latin folded
    assert step.stats.counters["changed"] == 2


def test_normalize_t2s_and_classic_options(dataset):
    import json

    tang = json.loads(dataset("pretrain/zh_classical/全唐诗/poet.tang.0.json").read_text(encoding="utf-8"))
    trad = "".join(tang[0]["paragraphs"])
    (doc,), _ = run_step(Normalize(NormalizeConfig(t2s=True)), [trad])
    assert doc.text != trad and len(doc.text) == len(trad)
    assert "門" not in doc.text and "門" in "".join("".join(p["paragraphs"]) for p in tang[:50])
    (en,), _ = run_step(Normalize(NormalizeConfig(lowercase=True, remove_stopwords=True, lemmatize=True)),
                        ["The Movies were Running and the films are great"])
    assert en.text == "movie run film great"


# ------------------------------------------------------------------ language id

def test_langid_real_text(dataset):
    en = dataset("translation/multi30k/val.en").read_text(encoding="utf-8").splitlines()[:200]
    de = dataset("translation/multi30k/val.de").read_text(encoding="utf-8").splitlines()[:200]
    zh = paragraphs(dataset("pretrain/zh_novels/西游记.txt"), 50, 40)
    cands = tuple(LangIdConfig().candidates)
    assert np.mean([detect(t, cands)[0] == "en" for t in en]) > 0.95
    assert np.mean([detect(t, cands)[0] == "de" for t in de]) > 0.95
    assert all(detect(t, cands)[0] == "zh" for t in zh)
    assert detect("ok fine", cands)[0] == "und"


def test_langid_step_keeps_requested_languages(dataset):
    en = paragraphs(dataset("pretrain/gutenberg/austen-emma.txt"), 20)
    zh = paragraphs(dataset("pretrain/zh_novels/三国演义.txt"), 20, 60)
    de = dataset("translation/multi30k/val.de").read_text(encoding="utf-8").splitlines()[:20]
    step = LangId(LangIdConfig(), ["en", "zh"])
    kept, dropped = run_step(step, en + zh + de)
    assert len(kept) == 40 and {d.meta["lang"] for d in kept} == {"en", "zh"}
    assert sum(r == "lang:de" for _, r in dropped) >= 18
    assert step.stats.docs_in == 60 and step.stats.docs_out == 40


# ------------------------------------------------------------------ quality

@pytest.mark.parametrize("rel,min_keep", [
    ("pretrain/gutenberg/austen-emma.txt", 0.97),
    ("pretrain/gutenberg/melville-moby_dick.txt", 0.95),
    ("pretrain/tinystories/tinystories_sample_2MiB.txt", 0.98),
    ("pretrain/zh_novels/红楼梦.txt", 0.97),
    ("pretrain/zh_novels/水浒传.txt", 0.97),
])
def test_quality_keeps_clean_prose(dataset, rel, min_keep):
    texts = paragraphs(dataset(rel), 600, 100)
    kept, dropped = run_step(Quality(QualityConfig()), texts)
    assert len(kept) / len(texts) >= min_keep, dropped[:5]


def test_quality_keeps_short_review_sentences(dataset):
    rows = dataset("classification/sst2/train.tsv").read_text(encoding="utf-8").splitlines()[1:3000]
    sents = [r.split("\t")[0] for r in rows if len(r.split("\t")[0].split()) >= 5]
    kept, dropped = run_step(Quality(QualityConfig()), sents)
    assert len(kept) / len(sents) > 0.99, dropped[:5]


def test_quality_drops_junk():
    junk = {
        "spam": "BUY NOW cheap viagra!!! click here for the best price, free shipping, click here now",
        "mash": "asdfgh qwerty zxcvbn hjkl asdfjkl qwertyuiop sdfghj xcvbnm wertyu dfghjk",
        "symbols": "$$$ !!! ### @@@ %%% ^^^ &&& *** $$$ !!! ### @@@ %%% ^^^ &&& *** ~~~ +++",
        "links": "\n".join(f"http://spam{i}.example.com/page/{i}?ref=abc" for i in range(10)),
        "lorem": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
        "repetition": " ".join(["the best deals on shoes and bags today"] * 12),
        "menu": "\n".join(["Home", "About", "Products", "Contact", "Login", "Register", "FAQ", "Sitemap"]),
        "zh_repetition": "我们的店铺是最好的，欢迎光临！" * 10,
        "short": "ok then",
    }
    step = Quality(QualityConfig())
    kept, dropped = run_step(step, list(junk.values()))
    assert not kept, [d.text for d in kept]
    reasons = dict(zip(junk, (r for _, r in dropped)))
    assert reasons["spam"] == "quality:spam"
    assert reasons["mash"] == "quality:mash"
    assert reasons["symbols"] == "quality:symbols"
    assert reasons["links"] == "quality:links"
    assert reasons["repetition"] == "quality:gopher_repetition"
    assert reasons["zh_repetition"] == "quality:gopher_repetition"
    assert reasons["short"] == "length"
    assert sum(step.stats.dropped.values()) == len(junk)


def test_quality_removes_c4_policy_lines(dataset):
    (para,) = paragraphs(dataset("pretrain/gutenberg/austen-sense.txt"), 1, 300)
    text = para + "\nThis site uses cookies. Read our privacy policy.\nPlease enable JavaScript to continue."
    (doc,), _ = run_step(Quality(QualityConfig()), [text])
    assert doc.text == para


# ------------------------------------------------------------------ PII

def test_pii_redaction(dataset):
    (para,) = paragraphs(dataset("pretrain/gutenberg/austen-emma.txt"), 1, 200)
    text = (f"{para} Write to emma.woodhouse@hartfield.co.uk or call +44 20 7946 0958 or (415) 555-0134. "
            "Server 192.168.10.254 and 2001:db8:85a3::8a2e:370:7334. Card 4111 1111 1111 1111. "
            "手机13812345678，身份证11010519491231002X。")
    out, counts = redact(text)
    assert para in out
    for secret in ("emma.woodhouse", "7946", "555-0134", "192.168", "2001:db8", "4111", "13812345678", "11010519491231002X"):
        assert secret not in out, secret
    assert counts == {"email": 1, "phone": 3, "ip": 2, "credit_card": 1, "cn_id": 1}
    assert "<EMAIL>" in out and "<CN_ID>" in out and "<CREDIT_CARD>" in out


def test_pii_checksums_avoid_false_positives():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert cn_id_ok("11010519491231002X") and not cn_id_ok("110105194912310021")
    assert not cn_id_ok("11010519491331002X")  # month 13
    text = "Order 4111 1111 1111 1112 shipped in 1999; version 10.2.3; id 110105194912310021; ratio 3:4:5."
    out, counts = redact(text)
    assert out == text and counts == {}


def test_pii_step_counts():
    step = PII(PIIConfig(kinds=["email"]))
    (doc,), _ = run_step(step, ["mail a@b.org, call +1 415 555 0134"])
    assert doc.text == "mail <EMAIL>, call +1 415 555 0134" and doc.meta["pii"] == {"email": 1}


# ------------------------------------------------------------------ dedup

def test_optimal_bands_favour_recall():
    b, r = optimal_bands(0.7, 128)
    assert b * r <= 128
    assert 1 - (1 - 0.8 ** r) ** b > 0.99  # a pair at Jaccard 0.8 shares a band almost surely


def _perturb(text: str, rng: random.Random, frac: float) -> str:
    words = text.split()
    for _ in range(max(1, int(len(words) * frac))):
        words[rng.randrange(len(words))] = rng.choice(["indeed", "quite", "very", "so"])
    return " ".join(words)


def test_near_dedup_on_planted_duplicates(dataset):
    rng = random.Random(0)
    base = paragraphs(dataset("pretrain/gutenberg/austen-emma.txt"), 300, 400)
    zh = paragraphs(dataset("pretrain/zh_novels/红楼梦.txt"), 100, 150)
    planted = [_perturb(t, rng, 0.02) for t in base[:100]]
    zh_planted = [t[:-3] + "呢。" for t in zh[:50]]
    texts = base + zh + planted + zh_planted
    hasher = MinHasher(DedupConfig())
    sigs = np.array([hasher.signature(t) for t in texts])
    bands = np.array([hasher.band_hashes(s) for s in sigs])
    uf = near_clusters(sigs, bands, np.arange(len(texts)), 0.7)
    n_orig = len(base) + len(zh)
    pairs = [(i, n_orig + i) for i in range(100)] + [(len(base) + i, n_orig + 100 + i) for i in range(50)]
    true = [p for p in pairs if jaccard(texts[p[0]], texts[p[1]]) >= 0.8]
    found = sum(uf.find(a) == uf.find(b) for a, b in true)
    assert len(true) > 120 and found / len(true) >= 0.95
    # no distinct original joins another one
    roots = [uf.find(i) for i in range(n_orig)]
    assert len(set(roots)) == n_orig


def test_exact_duplicates_normalised():
    keys = np.array([exact_key(t) for t in ["Hello, World!", "hello world", "other", "HELLO  world."]],
                    dtype=np.uint64)
    assert exact_duplicates(keys).tolist() == [0, 0, 2, 0]


def test_pii_between_chinese_characters_and_card_after_a_number():
    from lmforge.data.steps.pii import redact

    assert redact("请联系zhang@qq.com获取")[0] == "请联系<EMAIL>获取"
    assert redact("电话13812345678转人工")[0] == "电话<PHONE>转人工"
    assert redact("order 123 4111 1111 1111 1111 thanks")[0] == "order 123 <CREDIT_CARD> thanks"
    assert redact("订单号 20231 4111111111111111 已付")[0] == "订单号 20231 <CREDIT_CARD> 已付"
    # digit runs that are not laid out as a card stay as they are, as do addresses inside ASCII words
    assert redact("1234 5678 9012 3456")[0] == "1234 5678 9012 3456"
    assert redact("foo_bar@x.com_baz")[1] == {}
