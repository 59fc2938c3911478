"""Word vectors: training learns real structure, files round-trip through gensim, evaluations agree
with gensim's, bad input gives one clear message. The corpus is synthetic and tiny (a few seconds)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lmforge.errors import ConfigError, InputError
from lmforge.models.vectors import (VectorsConfig, WordVectors, build_corpus, cooccurrence, embedding_from_vectors,
                                    iter_sentences, load_vectors, read_vectors, tokenize, train, write_vectors)

ANIMALS = ["cat", "dog", "horse", "cow", "sheep", "goat"]
COLORS = ["red", "blue", "green", "yellow", "black", "white"]
FOODS = ["bread", "rice", "soup", "cake", "apple", "cheese"]
TEMPLATES = {
    "A": ["the {} runs in the field", "a {} sleeps near the barn", "my {} eats grass", "the farmer feeds the {}"],
    "C": ["the wall is painted {}", "she likes the {} dress", "a bright {} colour", "paint it {} again"],
    "F": ["we cook {} for dinner", "he eats warm {} today", "fresh {} from the market", "a plate of {} tastes good"],
}


def synthetic_sentences(n: int = 3000, seed: int = 0) -> list[list[str]]:
    """Three word classes that appear in different contexts: what any word-vector method must separate."""
    rng = random.Random(seed)
    groups = {"A": ANIMALS, "C": COLORS, "F": FOODS}
    out = []
    for _ in range(n):
        g = rng.choice("ACF")
        out.append(rng.choice(TEMPLATES[g]).format(rng.choice(groups[g])).split())
    return out


def group_margin(wv: WordVectors) -> float:
    """Mean within-class cosine minus mean across-class cosine."""
    groups = [ANIMALS, COLORS, FOODS]
    within, across = [], []
    for gi, g in enumerate(groups):
        for a in g:
            for gj, h in enumerate(groups):
                for b in h:
                    if a != b:
                        (within if gi == gj else across).append(wv.similarity(a, b))
    return float(np.mean(within) - np.mean(across))


def small_cfg(**kw) -> VectorsConfig:
    base = dict(dim=24, window=3, min_count=2, epochs=5, threads=1, sample=0.0, bucket=5000)
    base.update(kw)
    return VectorsConfig(**base)


@pytest.fixture(scope="module")
def corpus_cfg():
    cfg = small_cfg()
    return build_corpus(synthetic_sentences(), cfg), cfg


@pytest.fixture(scope="module")
def sg_vectors(corpus_cfg):
    corpus, cfg = corpus_cfg
    return train(corpus, cfg)[0]


# -- training -------------------------------------------------------------------------------------


def test_skipgram_separates_word_classes_and_is_reproducible(corpus_cfg, sg_vectors):
    corpus, cfg = corpus_cfg
    assert group_margin(sg_vectors) > 0.3
    again, stats = train(corpus, cfg)
    np.testing.assert_array_equal(again.vectors, sg_vectors.vectors)  # one thread + seed: exact
    assert stats.raw_words == corpus.raw_words and stats.epochs == 5 and stats.words_per_s > 0
    # two threads (hogwild) still learn the same structure
    two, _ = train(corpus, cfg.model_copy(update={"threads": 2}))
    assert group_margin(two) > 0.3


def test_subsampling_drops_frequent_words(corpus_cfg):
    corpus, cfg = corpus_cfg
    _, full = train(corpus, cfg.model_copy(update={"epochs": 1}))
    _, sub = train(corpus, cfg.model_copy(update={"epochs": 1, "sample": 1e-3}))
    assert full.effective_words == corpus.retained_words
    assert sub.effective_words < 0.9 * corpus.retained_words


def test_cbow_learns_classes(corpus_cfg):
    corpus, cfg = corpus_cfg
    wv, _ = train(corpus, cfg.model_copy(update={"model": "cbow", "epochs": 10}))
    assert group_margin(wv) > 0.3


def test_fasttext_subwords_give_oov_vectors(corpus_cfg, tmp_path):
    from lmforge.models.vectors import save_model

    corpus, cfg = corpus_cfg
    cfg = cfg.model_copy(update={"subwords": True})
    wv, _ = train(corpus, cfg)
    assert group_margin(wv) > 0.2
    assert "horses" not in wv and wv.has_vector("horses")
    # an unseen word shares n-grams with its stem: closer to it than to unrelated words
    assert wv.similarity("horses", "horse") > wv.similarity("horses", "bread") + 0.1
    save_model(wv, tmp_path / "ft", cfg)
    back = WordVectors.load(tmp_path / "ft")
    np.testing.assert_allclose(back.vector("horses"), wv.vector("horses"), atol=1e-6)
    np.testing.assert_allclose(back.vector("cat"), wv.vector("cat"), atol=1e-5)


def test_glove_counts_match_brute_force_and_learn():
    sents = [s for s in synthetic_sentences(600, seed=1)]
    cfg = small_cfg(model="glove", epochs=30, window=3, min_count=1)
    corpus = build_corpus(sents, cfg)
    X = cooccurrence(corpus, 3).toarray()
    index = {w: i for i, w in enumerate(corpus.words)}
    ref = np.zeros_like(X)
    for s in sents:
        ids = [index[w] for w in s]
        for i in range(len(ids)):
            for j in range(max(0, i - 3), i):
                ref[ids[j], ids[i]] += 1.0 / (i - j)
                ref[ids[i], ids[j]] += 1.0 / (i - j)
    np.testing.assert_allclose(X, ref, rtol=1e-12)
    wv, stats = train(corpus, cfg)
    assert group_margin(wv) > 0.2 and stats.extra["cooccurrences"] == np.count_nonzero(ref)


def test_empty_and_tiny_corpora():
    with pytest.raises(InputError, match="empty corpus"):
        build_corpus([], small_cfg())
    with pytest.raises(InputError, match="min_count=5"):
        build_corpus([["a", "b", "c"]], small_cfg(min_count=5))


def test_config_errors_name_the_key():
    from lmforge.models.vectors_cli import load_config

    with pytest.raises(ConfigError, match="did you mean 'window'"):
        load_config(["windw=3"])
    with pytest.raises(ConfigError, match="dim"):
        load_config(["dim=0"])
    assert load_config(["model=cbow", "dim=50", "extra_formats=[glove]"]).start_alpha == 0.05


# -- Chinese --------------------------------------------------------------------------------------

ZH = "我们今天去北京参观故宫。我们明天去上海看外滩。他们喜欢北京的秋天和上海的夜景。"


def test_chinese_words_or_characters(tmp_path):
    words = tokenize(ZH, small_cfg(zh_segmentation="words"))
    chars = tokenize(ZH, small_cfg(zh_segmentation="chars"))
    assert "北京" in words and "我们" in words
    assert "北" in chars and all(len(t) == 1 for t in chars) and "。" not in chars  # punctuation dropped
    path = tmp_path / "zh.txt"
    path.write_text((ZH + "\n\n") * 40, encoding="utf-8")
    cfg = small_cfg(min_count=5, epochs=2)
    corpus = build_corpus(iter_sentences([path], cfg), cfg)
    assert "上海" in corpus.words and "上" not in corpus.words
    wv, _ = train(corpus, cfg)
    assert wv.most_similar("北京", topn=3)


# -- files ----------------------------------------------------------------------------------------


def test_formats_round_trip_through_gensim(sg_vectors, tmp_path):
    from gensim.models import KeyedVectors

    wv = sg_vectors
    for fmt, name, kw in [("word2vec", "v.txt", {}), ("word2vec_binary", "v.bin", {"binary": True}),
                          ("glove", "g.txt", {"no_header": True})]:
        path = write_vectors(tmp_path / name, wv.words, wv.vectors, fmt)
        kv = KeyedVectors.load_word2vec_format(path, **kw)
        assert list(kv.index_to_key) == wv.words
        np.testing.assert_allclose(kv.vectors, wv.vectors, rtol=1e-5, atol=1e-6)
        words, mat = load_vectors(path)
        assert words == wv.words
        np.testing.assert_allclose(mat, wv.vectors, rtol=1e-5, atol=1e-6)
    # files gensim writes load here too
    kv = KeyedVectors(wv.dim)
    kv.add_vectors(wv.words, wv.vectors)
    for binary in (False, True):
        p = tmp_path / f"gensim.{'bin' if binary else 'txt'}"
        kv.save_word2vec_format(str(p), binary=binary)
        words, mat = read_vectors(p)
        assert words == wv.words
        np.testing.assert_allclose(mat, wv.vectors, rtol=1e-6)


@pytest.mark.parametrize("content,match", [
    (b"2 3\na 1 2 3\nb 1 2\n", r"bad\.txt:3: 2 values, expected 3"),
    (b"a 1 2 3\nb 1 2 3 4\n", r"bad\.txt:2: 4 values, expected 3"),
    (b"2 3\na 1 2 3\n", r"header promises 2 vectors, the file holds 1"),
    (b"1 3\na 1 2 3\nb 1 2 3\n", r"bad\.txt:3: more vectors than the header"),
    (b"2 3\na 1 2 3\n\xe9t\xe9 1 2 3\n", r"bad\.txt:3: not valid UTF-8"),
    (b"2 3\na 1 x 3\nb 1 2 3\n", r"bad\.txt:2: 'x' is not a number"),
    (b"", r"bad\.txt:1: empty vector file"),
])
def test_bad_text_vector_files(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_vectors(path)


def test_bad_binary_vector_files(tmp_path, sg_vectors):
    good = write_vectors(tmp_path / "v.bin", sg_vectors.words[:5], sg_vectors.vectors[:5], "word2vec_binary")
    data = good.read_bytes()
    (tmp_path / "hdr.bin").write_bytes(b"five 24\n" + data.split(b"\n", 1)[1])
    with pytest.raises(InputError, match=r"hdr\.bin:1: bad header"):
        read_vectors(tmp_path / "hdr.bin")
    (tmp_path / "cut.bin").write_bytes(data[:-40])
    with pytest.raises(InputError, match=r"cut\.bin: entry 5 of 5 .* truncated"):
        read_vectors(tmp_path / "cut.bin")
    (tmp_path / "dim.bin").write_bytes(b"5 25\n" + data.split(b"\n", 1)[1])
    with pytest.raises(InputError, match=r"dim\.bin"):
        read_vectors(tmp_path / "dim.bin")


# -- queries and evaluation -----------------------------------------------------------------------


def _gensim_kv(wv: WordVectors):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(wv.dim)
    kv.add_vectors(wv.words, wv.vectors)
    return kv


def test_neighbours_and_analogies_match_gensim(sg_vectors):
    kv = _gensim_kv(sg_vectors)
    for word in ["cat", "red", "bread"]:
        ours = sg_vectors.most_similar(word, topn=5)
        theirs = kv.most_similar(word, topn=5)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)
    ours = sg_vectors.analogy("cat", "dog", "red", topn=3)
    theirs = kv.most_similar(positive=["dog", "red"], negative=["cat"], topn=3)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    assert abs(sg_vectors.similarity("cat", "dog") - float(kv.similarity("cat", "dog"))) < 1e-5
    with pytest.raises(InputError, match="'zebra' is not in the vocabulary"):
        sg_vectors.vector("zebra")


def test_evaluation_agrees_with_gensim(tmp_path):
    """Structured vectors (country + 'capital' offset + noise) so accuracy is neither 0 nor 1."""
    rng = np.random.default_rng(0)
    countries = [f"country{i}" for i in range(30)]
    capitals = [f"city{i}" for i in range(30)]
    base = rng.normal(size=(30, 16))
    offset = rng.normal(size=16)
    words = countries + capitals + [f"w{i}" for i in range(40)]
    vecs = np.vstack([base, base + offset + rng.normal(scale=1.2, size=(30, 16)), rng.normal(size=(40, 16))])
    wv = WordVectors(words, vecs.astype(np.float32))
    lines = [": capitals"] + [f"{countries[i]} {capitals[i]} {countries[j]} {capitals[j]}"
                              for i in range(30) for j in range(30) if i != j][:400]
    lines += [": with-unknowns", "country1 city1 nowhere city2", "Country2 CITY2 country3 city3"]
    (tmp_path / "ana.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")  # CRLF like CA8
    pairs = ["# comment"] + [f"{words[i]}\t{words[j]}\t{rng.uniform(0, 10):.2f}"
                             for i, j in rng.integers(0, 100, size=(60, 2)) if i != j] + ["zebra\tcat\t5.0"]
    (tmp_path / "pairs.tsv").write_text("\n".join(pairs) + "\n", encoding="utf-8")

    ours = wv.evaluate_analogies(tmp_path / "ana.txt")
    score, sections = _gensim_kv(wv).evaluate_word_analogies(str(tmp_path / "ana.txt"))
    assert 0.05 < ours["accuracy"] < 0.95
    assert ours["accuracy"] == pytest.approx(score)
    assert ours["correct"] == len(sections[-1]["correct"]) and ours["oov_questions"] == 1
    pearson, spearman, oov = _gensim_kv(wv).evaluate_word_pairs(str(tmp_path / "pairs.tsv"))
    sim = wv.evaluate_word_pairs(tmp_path / "pairs.tsv")
    assert sim["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert sim["pearson"] == pytest.approx(pearson.statistic, abs=1e-6)
    assert 100 * sim["oov_ratio"] == pytest.approx(oov)


def test_real_evaluation_files_parse(shared_datasets, sg_vectors):
    from lmforge.models.vectors.evaluate import evaluate, standard_suite

    for lang in ("en", "zh"):
        analogies, similarity = standard_suite(lang, shared_datasets)
        res = evaluate(sg_vectors, analogies, similarity)
        assert all(r.get("total", 0) == 0 for r in res.values() if r["kind"] == "analogy")  # nothing covered
        assert sum(r["oov_questions"] for r in res.values() if r["kind"] == "analogy") > 10_000


def test_embedding_from_vectors(sg_vectors, tmp_path):
    import torch

    write_vectors(tmp_path / "v.txt", sg_vectors.words, sg_vectors.vectors)
    emb = embedding_from_vectors(tmp_path / "v.txt", ["<pad>", "Cat", "dog", "zebra"], freeze=True, padding_idx=0)
    assert isinstance(emb, torch.nn.Embedding) and not emb.weight.requires_grad
    w = emb.weight.detach().numpy()
    np.testing.assert_allclose(w[1], sg_vectors.vector("cat"), atol=1e-5)  # falls back to lowercase
    np.testing.assert_allclose(w[2], sg_vectors.vector("dog"), atol=1e-5)
    assert not w[0].any() and w[3].any() and emb.coverage == 0.5
    assert embedding_from_vectors(tmp_path / "v.txt", ["cat"], freeze=False).weight.requires_grad


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_train_neighbors_eval(tmp_path):
    from gensim.models import KeyedVectors
    from typer.testing import CliRunner

    from lmforge.models.vectors_cli import app

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(s) for s in synthetic_sentences(2000)) + "\n", encoding="utf-8")
    out = tmp_path / "w2v"
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(corpus), "--output", str(out), "dim=24", "window=3", "epochs=3",
                            "threads=1", "min_count=2", "extra_formats=[word2vec_binary]"])
    assert r.exit_code == 0, r.output
    kv = KeyedVectors.load_word2vec_format(out / "vectors.txt")
    assert kv.vector_size == 24 and "horse" in kv.key_to_index
    assert KeyedVectors.load_word2vec_format(out / "vectors.bin", binary=True).vector_size == 24

    r = runner.invoke(app, ["neighbors", str(out), "cat", "dog-cat+red", "-n", "3"])
    assert r.exit_code == 0 and "dog-cat+red:" in r.output
    r = runner.invoke(app, ["neighbors", str(out), "zebra", "unicorn"])
    assert isinstance(r.exception, InputError)
    assert "'unicorn', 'zebra'" in str(r.exception) and str(out) in str(r.exception)

    ana = tmp_path / "ana.txt"
    ana.write_text(": animals\ncat dog horse cow\nzebra dog horse cow\n", encoding="utf-8")
    r = runner.invoke(app, ["eval", str(out / "vectors.txt"), "--analogies", str(ana), "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0 and "/1 covered, 1 skipped" in r.output
    r = runner.invoke(app, ["train", str(corpus), "--output", str(out), "windw=3"])
    assert isinstance(r.exception, ConfigError)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    r = runner.invoke(app, ["train", str(empty), "--output", str(tmp_path / "e")])
    assert isinstance(r.exception, InputError) and "empty corpus" in str(r.exception)
