"""n-gram LMs: a hand-computed Kneser-Ney toy, KenLM's lmplz as the reference estimator, the kenlm
module as the reference ARPA reader, normalisation of every smoothing, streaming counts, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lmforge.errors import ConfigError, InputError
from lmforge.models.ngram import NgramConfig, NgramLM, bytesplit, config_from, evaluate_file, read_arpa, train
from lmforge.models.ngram import counts as ngram_counts
from lmforge.models.ngram.counts import count_files
from lmforge.models.ngram.config import make_tokenizer
from lmforge.models.ngram.estimate import structure
from lmforge.models.ngram_cli import app

DATA = Path(__file__).parent / "ngram_data"
TRAIN, TEST = DATA / "train.txt", DATA / "test.txt"
ZH = ["天下大势，分久必合，合久必分。", "周末七国分争，并入于秦。", "及秦灭之后，楚、汉分争，又并入于汉。",
      "汉朝自高祖斩白蛇而起义，一统天下。", "后来光武中兴，传至献帝，遂分为三国。"]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()]


@pytest.fixture(scope="module")
def kn3() -> NgramLM:
    return train([TRAIN], NgramConfig(order=3))


# ---- estimation ---------------------------------------------------------------------------------


def test_kneser_ney_toy_by_hand(tmp_path):
    """Too little data for discounts, so D = (0.5, 1, 1.5); every number below is worked out by hand."""
    lm = train([_write(tmp_path / "t.txt", ["a b", "a b", "b a"])], NgramConfig(order=2))
    assert lm.info["discounts_estimated"] == [False, False]
    # unigrams: continuation counts a=b=</s>=2, total 6, each discounted by D2=1 -> 1/6; gamma = 3/6
    # spread over 4 words (<unk>, </s>, a, b) -> p(a) = 1/6 + 1/8
    p_a = 1 / 6 + 0.5 / 4
    assert 10 ** lm.score("a") == pytest.approx((1 / 3 + 0.5 * p_a) * (1 / 6 + 0.5 * p_a), rel=1e-6)
    # p(a|<s>) = p(b|a) = p(</s>|b) = (2-1)/3 + gamma(=(0.5+1)/3) * p_unigram
    assert lm.score("a b") == pytest.approx(3 * math.log10(1 / 3 + 0.5 * p_a), abs=1e-6)
    # unseen bigram b b: backs off to gamma(b) * p(b)
    assert lm.full_scores("b b")[1][0] == pytest.approx(math.log10(0.5 * p_a), abs=1e-6)
    # OOV: gamma(<s>) * p(<unk>) where p(<unk>) = 1/8, then p(</s>) from unigrams (<unk> has no context)
    oov = lm.full_scores("z")
    assert oov[0][2] and oov[0][0] == pytest.approx(math.log10(0.5 / 8), abs=1e-6)
    assert oov[1][0] == pytest.approx(math.log10(p_a), abs=1e-6)


def test_tables_equal_lmplz(kn3):
    """Same n-grams, log10 p and back-offs as KenLM's lmplz on the same text (fixture made by lmplz)."""
    ref = read_arpa(DATA / "lmplz3.arpa.gz")
    assert sorted(ref["words"]) == sorted(kn3.words)
    ours = {w: i for i, w in enumerate(kn3.words)}
    perm = np.array([ours[w] for w in ref["words"]])
    np.testing.assert_allclose(kn3.logp[0][perm], ref["logp"][0], atol=2e-6)
    np.testing.assert_allclose(kn3.bow[0][perm], ref["bow"][0], atol=2e-6)
    for n in (1, 2):
        assert len(kn3.keys[n]) == len(ref["keys"][n])
    # same vocabulary order -> same keys; compare via sentence scores, which need every table
    lm_ref = NgramLM.from_arpa(DATA / "lmplz3.arpa.gz")
    for line in _lines(TEST):
        a, b = kn3.full_scores(line), lm_ref.full_scores(line)
        assert [x[1] for x in a] == [x[1] for x in b]
        np.testing.assert_allclose([x[0] for x in a], [x[0] for x in b], atol=1e-5)
    ppl, ppl_ref = kn3.perplexity(_lines(TEST)), lm_ref.perplexity(_lines(TEST))
    assert abs(ppl / ppl_ref - 1) < 1e-4


@pytest.mark.parametrize("smoothing", ["kneser_ney", "katz", "add_k"])
@pytest.mark.parametrize("order", [1, 2, 4])
def test_distributions_sum_to_one(smoothing, order):
    lm = train([TRAIN], NgramConfig(order=order, smoothing=smoothing))
    rng = np.random.default_rng(order)
    ids = [lm.vocab.index[t] for t in "Before we proceed any further, hear me".split()]
    for ctx in ([], ids[:1], ids[:3], list(rng.integers(3, len(lm.words), 3))):
        p = lm.next_probs(list(ctx))
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert (p[np.arange(len(p)) != 1] > 0).all()  # every word but <s> possible


def test_next_probs_agree_with_scoring(kn3):
    toks = "You are all resolved rather to die than to famish?".split()
    ids = [kn3.vocab.index.get(t, 0) for t in toks] + [2]
    lp = [math.log10(kn3.next_probs(ids[:i])[ids[i]]) for i in range(len(ids))]
    np.testing.assert_allclose(lp, [s for s, _, _ in kn3.full_scores(" ".join(toks))], atol=1e-5)


def test_add_k_unigram_formula(tmp_path):
    lm = train([_write(tmp_path / "t.txt", ["x y y", "y z"])], NgramConfig(order=1, smoothing="add_k", k=0.5))
    # counts: x1 y3 z1 </s>2 <unk>0 -> N=7, |V| without <s> = 5
    assert 10 ** lm.full_scores("y")[0][0] == pytest.approx((3 + 0.5) / (7 + 0.5 * 5), rel=1e-6)
    assert 10 ** lm.full_scores("q")[0][0] == pytest.approx(0.5 / (7 + 2.5), rel=1e-6)


def test_smoothing_ranking_on_held_out(kn3):
    ppl = {s: train([TRAIN], NgramConfig(order=3, smoothing=s)).perplexity(_lines(TEST))
           for s in ("katz", "add_k")}
    assert kn3.perplexity(_lines(TEST)) < ppl["katz"] < ppl["add_k"]


# ---- counting -----------------------------------------------------------------------------------


def test_streaming_counts_match_one_batch(tmp_path):
    cfg_small, cfg_big = NgramConfig(order=4, chunk_tokens=1000), NgramConfig(order=4)
    tok = make_tokenizer(cfg_big)
    v1, one = count_files([TRAIN, TEST], cfg_big, tok)
    v2, many = count_files([TRAIN, TEST], cfg_small, tok)
    assert v1.words == v2.words
    for n in range(4):
        np.testing.assert_array_equal(one.counts[n], many.counts[n])
        if n:
            np.testing.assert_array_equal(one.keys[n], many.keys[n])
    searched = structure(many.keys, len(many.counts[0])).suffix  # suffixes by search, not tracked while merging
    for n in range(1, 4):
        np.testing.assert_array_equal(many.suffix[n], searched[n])
    _, twice = count_files([TRAIN, TRAIN], cfg_small, tok)
    _, once = count_files([TRAIN], cfg_small, tok)
    for n in range(4):
        np.testing.assert_array_equal(twice.counts[n], 2 * once.counts[n])


def _split(line: str) -> list[str]:
    return line.split()  # str.split's result, but not str.split itself: count_files reads lines as Python strings


def _tricky_files(tmp_path: Path) -> list[Path]:
    """Lines that test what str.split and iter_lines do: every separator str.isspace knows, CR/LF/CRLF,
    blank and whitespace-only lines, multi-byte UTF-8, tokens around 8/16/32 bytes, a line longer than a
    4000-byte block, NUL inside a token (after the first 4096 bytes), a file without a final newline."""
    rng = np.random.default_rng(0)
    words = ["a", "the", "é", "—", "Ünïcode", "日本語", "<unk>", "exactly8", "ninechar", "sixteen-bytes-xx",
             "seventeen-bytes-x", "12345678901234567890123456789012", "123456789012345678901234567890123",
             "a-token-that-is-much-longer-than-thirty-two-bytes", "x", "y", "z", "First", "Citizen"]
    seps = [" ", "  ", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", " \u200a ", *bytesplit.UNICODE_SPACES]
    ends = ["\n", "\r\n", "\r", "\n\n", "\n \n", "\n\t\u3000\n", "\r\r\n"]
    parts = []
    for _ in range(600):
        n = int(rng.integers(0, 9))
        parts.append("".join(str(rng.choice(words)) + str(rng.choice(seps)) for _ in range(n)) + str(rng.choice(ends)))
    parts.insert(300, " ".join(["long"] * 1200) + "\n")
    a = tmp_path / "a.txt"
    a.write_bytes(("".join(parts) + "x\0y tail z\0 \x00x").encode("utf-8"))
    b = tmp_path / "b.txt"
    b.write_bytes("\ufefffirst line of b\n\n a b c\n".encode("utf-8"))
    return [a, b, a]


@pytest.mark.parametrize("chunk", [1000, 1_000_000])
def test_byte_tokenizer_equals_str_split(tmp_path, chunk):
    """The fast path (tokens and ids from raw bytes) gives exactly the counts of the Python-string path."""
    files = _tricky_files(tmp_path)
    cfg = NgramConfig(order=3, chunk_tokens=chunk)
    v_fast, fast = count_files(files, cfg, str.split)
    v_slow, slow = count_files(files, cfg, _split)
    assert v_fast.words == v_slow.words and "\u3000" not in "".join(v_fast.words)
    assert (fast.sentences, fast.tokens) == (slow.sentences, slow.tokens)
    for n in range(3):
        np.testing.assert_array_equal(fast.counts[n], slow.counts[n])
        if n:
            np.testing.assert_array_equal(fast.keys[n], slow.keys[n])
            np.testing.assert_array_equal(fast.suffix[n], slow.suffix[n])


def test_byte_tokenizer_hash_collisions_and_wide_keys(tmp_path, monkeypatch):
    """With a hash that sends every token to one group, the byte check catches it and a dict does the
    block; with too few key bits for the position trick, argsort sorts: the counts stay the same."""
    files = _tricky_files(tmp_path)
    cfg = NgramConfig(order=3)
    v_ref, ref = count_files(files, cfg, str.split)
    monkeypatch.setattr(bytesplit, "_K1", np.uint64(0))
    monkeypatch.setattr(bytesplit, "_K2", np.uint64(0))
    monkeypatch.setattr(ngram_counts, "SORT_BITS", 0)
    v, got = count_files(files, cfg, str.split)
    assert v.words == v_ref.words
    for n in range(3):
        np.testing.assert_array_equal(got.counts[n], ref.counts[n])
        if n:
            np.testing.assert_array_equal(got.keys[n], ref.keys[n])
            np.testing.assert_array_equal(got.suffix[n], ref.suffix[n])


def test_byte_tokenizer_needs_no_dict_for_real_text(monkeypatch):
    """No false hash collision on ordinary text: punctuation next to many tokens over 32 bytes (their
    dict labels are small numbers, like the key of a 1-byte token) and many distinct words."""
    def no_dict(*args):
        raise AssertionError("fell back to the dict")
    monkeypatch.setattr(bytesplit, "_group_by_dict", no_dict)
    huge = " ".join(f"{'w' * 40}{i}" for i in range(300))
    text = "\n".join([huge, " ".join(map(chr, range(33, 127))), " ".join(str(i) for i in range(20000))]) + "\n"
    index = {"<unk>": 0, "<s>": 1, "</s>": 2}
    ids, sent = bytesplit.encode_block(text.encode(), index)
    assert len(index) == 3 + 300 + 94 + 20000 - 10 and len(sent) == 3  # digits 0-9 are among the 94 characters


def test_unicode_spaces_are_all_of_them():
    assert bytesplit.UNICODE_SPACES == "".join(c for c in map(chr, range(128, 0x110000)) if c.isspace())


def test_invalid_utf8_names_file_and_line(tmp_path):
    ok = _write(tmp_path / "ok.txt", ["fine line"])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"one\ntwo\nthree \xff four\n")
    with pytest.raises(InputError, match=r"bad\.txt:3: not valid UTF-8"):
        train([ok, bad], NgramConfig())


def test_vocabulary_cut_maps_rare_words_to_unk():
    lm = train([TRAIN], NgramConfig(order=2, min_count=3))
    counts = count_files([TRAIN], NgramConfig(order=1), make_tokenizer(NgramConfig()))[1].counts[0]
    assert len(lm.words) == 3 + int((counts[3:] >= 3).sum())
    assert lm.counts[0][0] == counts[3:][counts[3:] < 3].sum()  # every rare word now counts as <unk>
    lm = train([TRAIN], NgramConfig(order=2, max_vocab=50))
    assert len(lm.words) == 50


# ---- files: ARPA, kenlm, model directory --------------------------------------------------------


@pytest.mark.parametrize("smoothing", ["kneser_ney", "katz", "add_k"])
def test_arpa_loads_in_kenlm_with_same_scores(tmp_path, smoothing):
    kenlm = pytest.importorskip("kenlm")
    lm = train([TRAIN], NgramConfig(order=3, smoothing=smoothing), output=tmp_path / "lm")
    ref = kenlm.Model(str(tmp_path / "lm" / "model.arpa"))
    assert ref.order == 3
    for line in _lines(TEST) + ["zzz unknown words only", ""]:
        ours, theirs = lm.full_scores(line), list(ref.full_scores(line))
        assert len(ours) == len(theirs)
        np.testing.assert_allclose([s for s, _, _ in ours], [s for s, _, _ in theirs], atol=1e-4)
        assert [o for _, _, o in ours] == [o for _, _, o in theirs]


def test_arpa_round_trip_is_exact(tmp_path, kn3):
    a = kn3.to_arpa(tmp_path / "a.arpa")
    back = NgramLM.from_arpa(a)
    assert back.words == kn3.words
    for n in range(3):
        np.testing.assert_array_equal(back.logp[n], kn3.logp[n])
        if n:
            np.testing.assert_array_equal(back.keys[n], kn3.keys[n])
        if n < 2:
            np.testing.assert_array_equal(back.bow[n], kn3.bow[n])
    assert back.to_arpa(tmp_path / "b.arpa").read_bytes() == a.read_bytes()


def test_model_directory_and_evaluate_file(tmp_path):
    lm = train([TRAIN], NgramConfig(order=3), output=tmp_path / "lm")
    meta = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert meta["model_type"] == "ngram" and meta["config"]["order"] == 3
    with np.load(tmp_path / "lm" / "model.npz", allow_pickle=False) as z:
        assert "keys_3" in z.files and "counts_1" in z.files
    loaded = NgramLM.load(tmp_path / "lm")
    assert loaded.score("First Citizen :") == lm.score("First Citizen :")
    r = evaluate_file(tmp_path / "lm", TEST, per_token_out=tmp_path / "tok.jsonl")
    lines = _lines(TEST)
    assert r["tokens"] == sum(len(ln.split()) + 1 for ln in lines)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
    assert r["perplexity"] == pytest.approx(lm.perplexity(lines), rel=1e-9)
    nbytes = sum(len(ln.encode()) + 1 for ln in lines)
    assert r["bits_per_byte"] == pytest.approx(r["loss"] * r["tokens"] / math.log(2) / nbytes)
    assert 0 < r["oov_rate"] < 0.5
    rows = [json.loads(x) for x in (tmp_path / "tok.jsonl").read_text().splitlines()]
    assert len(rows) == len(lines) and sum(map(sum, rows)) == pytest.approx(r["log10_prob"], abs=1e-3)


def test_chinese_characters_and_jieba_words(tmp_path):
    f = _write(tmp_path / "zh.txt", ZH)
    chars = train([f], NgramConfig(order=3, unit="char"))
    words = train([f], NgramConfig(order=3, segmenter="jieba"))
    assert "秦" in chars.vocab.index and "天下" not in chars.vocab.index
    assert "天下" in words.vocab.index
    assert chars.tokenize("天下 大势") == ["天", "下", "\u2581", "大", "势"]
    for lm in (chars, words):
        assert math.isfinite(lm.score("天下大势，合久必分。"))
        assert lm.score("天下大势，分久必合") > lm.score("合必久分，势大下天")
    kenlm = pytest.importorskip("kenlm")
    chars.to_arpa(tmp_path / "c.arpa")
    ref = kenlm.Model(str(tmp_path / "c.arpa"))
    line = " ".join(chars.tokenize("汉朝一统天下。"))
    assert ref.score(line) == pytest.approx(chars.score("汉朝一统天下。"), abs=1e-4)


def test_chinese_novel_slice(shared_datasets, tmp_path):
    path = shared_datasets / "pretrain" / "zh_novels" / "三国演义.txt"
    if not path.exists():
        pytest.skip(f"{path} missing")
    lines = [ln for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()][:400]
    f = _write(tmp_path / "train.txt", lines[:350])
    held = _write(tmp_path / "held.txt", lines[350:])
    train([f], NgramConfig(order=3, unit="char"), output=tmp_path / "lm")
    r = evaluate_file(tmp_path / "lm", held)
    uni = evaluate_file(train([f], NgramConfig(order=1, unit="char")), held)
    assert r["perplexity"] < uni["perplexity"]


def test_sampling_is_seeded_and_stops_at_eos(kn3):
    runs = [kn3.sample("Before we", max_tokens=20, seed=s) for s in range(6)]
    assert runs[3] == kn3.sample("Before we", max_tokens=20, seed=3)
    assert len({tuple(r) for r in runs}) > 1 and any(runs)
    assert all(len(r) <= 20 and "<s>" not in r and "<unk>" not in r and "</s>" not in r for r in runs)
    assert len(kn3.sample("Before we", max_tokens=200, seed=0)) < 200  # ends at </s>
    greedy = kn3.sample("", max_tokens=30, temperature=0)
    assert greedy == kn3.sample("", max_tokens=30, temperature=0)


# ---- CLI and bad input --------------------------------------------------------------------------


def test_cli_train_score_generate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "lm"
    r = runner.invoke(app, ["train", str(TRAIN), "--order", "2", "--output", str(out), "smoothing=katz"])
    assert r.exit_code == 0, r.output
    assert (out / "model.arpa").exists() and json.loads((out / "config.json").read_text())["config"]["smoothing"] == "katz"
    r = runner.invoke(app, ["score", "--model", str(out), "--data", str(TEST)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["perplexity"] == pytest.approx(evaluate_file(out, TEST)["perplexity"])
    r = runner.invoke(app, ["generate", "--model", str(out), "--num", "2", "--max-tokens", "8"])
    assert r.exit_code == 0 and len(r.stdout.strip().split("\n")) == 2
    r = runner.invoke(app, ["import-arpa", str(out / "model.arpa"), "--output", str(tmp_path / "imp")])
    assert r.exit_code == 0, r.output
    assert evaluate_file(tmp_path / "imp", TEST)["perplexity"] == pytest.approx(evaluate_file(out, TEST)["perplexity"])


def test_cli_bad_setting_is_config_error(tmp_path):
    r = CliRunner().invoke(app, ["train", str(TRAIN), "--output", str(tmp_path / "x"), "smoothin=katz"])
    assert isinstance(r.exception, ConfigError) and "did you mean 'smoothing'" in str(r.exception)
    with pytest.raises(ConfigError, match="order"):
        config_from(9, [])


def test_empty_corpus(tmp_path):
    f = _write(tmp_path / "empty.txt", ["", "   "])
    with pytest.raises(InputError, match="no text to train on"):
        train([f], NgramConfig())
    r = CliRunner().invoke(app, ["train", str(f), "--output", str(tmp_path / "x")])
    assert isinstance(r.exception, InputError) and str(f) in str(r.exception)


def test_reserved_token_names_file_and_line(tmp_path):
    f = _write(tmp_path / "t.txt", ["fine line", "a <s> here"])
    with pytest.raises(InputError, match=r"t\.txt:2: .*reserved token '<s>'"):
        train([f], NgramConfig())
    ok = _write(tmp_path / "ok.txt", ["fine", "lines"])
    g = _write(tmp_path / "u.txt", ["x", "y", "z </s>"])
    with pytest.raises(InputError, match=r"u\.txt:3: .*reserved token '</s>'"):
        train([ok, g], NgramConfig())  # one block holds both files
    with pytest.raises(InputError, match=r"u\.txt:3: .*reserved token '</s>'"):
        train([ok, g], NgramConfig(lowercase=True))  # the Python-string path


def test_oov_only_data(tmp_path, kn3):
    f = _write(tmp_path / "oov.txt", ["qqq zzz", "xxxx"])
    with pytest.raises(InputError, match="all 3 words are out of the model's vocabulary"):
        evaluate_file(kn3, f)
    with pytest.raises(InputError, match="no text to score"):
        evaluate_file(kn3, _write(tmp_path / "e.txt", [""]))


def _arpa_lines(tmp_path, kn3) -> list[str]:
    return kn3.to_arpa(tmp_path / "ok.arpa").read_text(encoding="utf-8").split("\n")


def test_arpa_with_wrong_count(tmp_path, kn3):
    lines = _arpa_lines(tmp_path, kn3)
    i = next(j for j, ln in enumerate(lines) if ln.startswith("ngram 2="))
    lines[i] = f"ngram 2={len(kn3.logp[1]) + 1}"
    bad = _write(tmp_path / "bad.arpa", lines)
    with pytest.raises(InputError, match=r"bad\.arpa:\d+: section '\\2-grams:' has \d+ entries but the header says"):
        NgramLM.from_arpa(bad)


def test_arpa_with_missing_section(tmp_path, kn3):
    lines = _arpa_lines(tmp_path, kn3)
    start = lines.index("\\3-grams:")
    bad = _write(tmp_path / "bad.arpa", lines[:start] + ["\\end\\"])
    with pytest.raises(InputError, match=r"bad\.arpa:\d+: expected the section '\\3-grams:'"):
        NgramLM.from_arpa(bad)
    with pytest.raises(InputError, match="expected '\\\\end\\\\'"):
        NgramLM.from_arpa(_write(tmp_path / "trunc.arpa", lines[:-3]))
    with pytest.raises(InputError, match="no \\\\data\\\\ header"):
        NgramLM.from_arpa(_write(tmp_path / "text.arpa", ["just text"]))


def test_arpa_with_bad_lines(tmp_path, kn3):
    lines = _arpa_lines(tmp_path, kn3)
    i = lines.index("\\2-grams:") + 1
    for broken, pattern in ((lines[i].replace("\t", "\tfoo ", 1).split("\t")[0] + "\tx", "needs log10p"),
                            ("abc\t" + lines[i].split("\t", 1)[1], "'abc' is not a number"),
                            (lines[i].split("\t")[0] + "\tnotaword First\t0", "'notaword' is not among the 1-grams")):
        bad = list(lines)
        bad[i] = broken
        with pytest.raises(InputError, match=rf"bad\.arpa:{i + 1}: .*{pattern}"):
            NgramLM.from_arpa(_write(tmp_path / "bad.arpa", bad))



def test_compiled_query_path_equals_numpy(tmp_path):
    """The numba scorer and byte tokenizer give exactly the numpy path's ids and log10 probabilities."""
    from lmforge.models.ngram import query

    if query.numba is None:
        pytest.skip("numba not installed")
    lines = ["the cat sat on the mat", "the dog sat", "a cat\u3000and\xa0a dog on\tthe mat", "猫 坐 在 垫子 上"] * 5
    lm = train([_write(tmp_path / "t.txt", lines)], NgramConfig(order=4))
    test = ["the cat sat", "", "   ", "an unseen word\x1cthe mat", "猫 坐 在 沙发 上 🙂", "the\u2028dog sat on"]
    ids, pos, _ = lm.encode(test)
    ids2, pos2 = lm.encode_ids(test)
    assert np.array_equal(ids, ids2) and np.array_equal(pos, pos2)
    a = lm.log10_probs(ids, pos)
    b = lm.log10_probs_numpy(ids, pos)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    lower = train([_write(tmp_path / "l.txt", lines)], NgramConfig(order=3, lowercase=True))
    ids, pos, _ = lower.encode(["The CAT sat"])
    assert np.array_equal(lower.encode_ids(["The CAT sat"])[0], ids)
