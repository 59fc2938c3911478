"""encode_corpus: shards equal direct encoding, document boundaries, parallel mode, readers, stats."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from lmforge.errors import InputError
from lmforge.tokenizer import encode_corpus, iter_documents, read_shard, tokenizer_stats
from lmforge.tokenizer.corpus import expand_inputs
from lmforge.tokenizer import corpus as corpus_mod


def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"id": str(i), "text": t, "meta": {}}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    return path


@pytest.fixture
def corpus_files(tmp_path, held_out, en_docs, zh_docs):
    """A Document JSONL (English + Chinese) and a txt file of paragraphs."""
    docs = en_docs[:150] + zh_docs[:80]
    jl = _jsonl(tmp_path / "docs.jsonl", docs)
    txt = tmp_path / "book.txt"
    txt.write_text(held_out["en"], encoding="utf-8")
    return jl, txt, docs


def _expected(tok, texts):
    return [tok.encode(t) + [tok.eos_id] for t in texts]


def test_shard_equals_direct_encoding_with_eos_between_documents(trained, corpus_files, tmp_path):
    tok = trained("byte_bpe")
    jl, txt, docs = corpus_files
    txt_docs = list(iter_documents(txt))
    stats = encode_corpus([jl, txt], tok, tmp_path / "out.bin", progress=False)

    shard = read_shard(tmp_path / "out.bin")
    expected = _expected(tok, docs + txt_docs)
    assert shard.n_docs == len(expected) == stats["docs"]
    np.testing.assert_array_equal(shard.tokens, np.concatenate(expected))
    for i in (0, 149, 150, len(expected) - 1):
        assert shard.doc(i).tolist() == expected[i]
        assert shard.doc(i)[-1] == tok.eos_id
    assert stats["tokens"] == len(shard) and stats["eos_tokens"] == shard.n_docs
    assert stats["bytes"] == sum(len(t.encode()) for t in docs + txt_docs)
    assert shard.dtype == np.uint16 and shard.vocab_size == tok.vocab_size


def test_small_batches_give_the_same_shard(trained, corpus_files, tmp_path, monkeypatch):
    tok = trained("byte_bpe")
    jl, txt, _ = corpus_files
    encode_corpus([jl, txt], tok, tmp_path / "big.bin", progress=False)
    monkeypatch.setattr(corpus_mod, "BATCH_CHARS", 500)  # many tiny batches: bounded memory path
    encode_corpus([jl, txt], tok, tmp_path / "small.bin", progress=False)
    assert (tmp_path / "big.bin").read_bytes() == (tmp_path / "small.bin").read_bytes()


def test_worker_processes_give_the_same_shard(trained, corpus_files, tmp_path):
    tok = trained("byte_bpe")
    jl, txt, _ = corpus_files
    serial = encode_corpus([jl, txt], tok, tmp_path / "serial.bin", progress=False)
    parallel = encode_corpus([jl, txt], tok, tmp_path / "parallel.bin", workers=2, progress=False)
    assert serial == parallel
    assert (tmp_path / "serial.bin").read_bytes() == (tmp_path / "parallel.bin").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # part files cleaned up


def test_bert_family_relies_on_the_index_not_eos(trained, corpus_files, tmp_path):
    tok = trained("wordpiece", family="bert")
    jl, _, docs = corpus_files
    stats = encode_corpus([jl], tok, tmp_path / "b.bin", progress=False)
    shard = read_shard(tmp_path / "b.bin")
    assert stats["eos_tokens"] == 0
    assert shard.doc(1).tolist() == tok.encode(docs[1])


def test_no_eos_when_asked(trained, corpus_files, tmp_path):
    tok = trained("byte_bpe")
    jl, _, docs = corpus_files
    encode_corpus([jl], tok, tmp_path / "n.bin", append_eos=False, progress=False)
    assert read_shard(tmp_path / "n.bin").doc(0).tolist() == tok.encode(docs[0])


def test_uint32_shard_for_large_vocab(corpus_files, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lmforge.tokenizer import Tok

    vocab = {f"w{i}": i for i in range(70_000)} | {"<|endoftext|>": 70_000, "hello": 69_999}
    hf = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = Tok(hf, {"kind": "char", "family": "gpt", "special_tokens": ["<|endoftext|>"],
                   "roles": {"eos": "<|endoftext|>"}})
    path = _jsonl(tmp_path / "h.jsonl", ["hello w5", "w69998"])
    encode_corpus([path], tok, tmp_path / "big.bin", progress=False)
    shard = read_shard(tmp_path / "big.bin")
    assert shard.dtype == np.uint32
    assert shard.tokens.tolist() == [69_999, 5, 70_000, 69_998, 70_000]


def test_txt_split_modes(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("one\ntwo\n\n\nthree\r\n   \nfour\n", encoding="utf-8")
    assert list(iter_documents(f)) == ["one\ntwo", "three", "four"]
    assert list(iter_documents(f, "line")) == ["one", "two", "three", "four"]
    assert list(iter_documents(f, "file")) == ["one\ntwo\n\n\nthree\r\n   \nfour\n"]


def test_csv_tsv_json_array_and_line_aligned_files(tmp_path):
    """One record reader for tasks and corpora (data.readers.read_records): csv/tsv with a 'text'
    column, JSON arrays; any other suffix given explicitly is plain text (Multi30k's train.en)."""
    (tmp_path / "t.csv").write_text('id,text\n1,"hello, world"\n2,second\n', encoding="utf-8")
    (tmp_path / "t.tsv").write_text("text\tlabel\nein Satz\t1\n", encoding="utf-8")
    (tmp_path / "a.json").write_text(json.dumps([{"text": "x"}, {"text": "y"}]), encoding="utf-8")
    (tmp_path / "train.en").write_text("a man rides a horse\n\ntwo dogs\n", encoding="utf-8")
    assert list(iter_documents(tmp_path / "t.csv")) == ["hello, world", "second"]
    assert list(iter_documents(tmp_path / "t.tsv")) == ["ein Satz"]
    assert list(iter_documents(tmp_path / "a.json")) == ["x", "y"]
    assert list(iter_documents(tmp_path / "train.en", "line")) == ["a man rides a horse", "two dogs"]
    # a directory still picks only the known suffixes
    assert sorted(p.name for p in expand_inputs([tmp_path])) == ["a.json", "t.csv", "t.tsv"]


def test_compressed_jsonl(tmp_path):
    with gzip.open(tmp_path / "d.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"id": "a", "text": "你好"}) + "\n")
    assert list(iter_documents(tmp_path / "d.jsonl.gz")) == ["你好"]


@pytest.mark.parametrize("name,content,message", [
    ("bad.jsonl", b'{"text": "ok"}\n{broken\n', r"bad\.jsonl:2: invalid JSON"),
    ("notext.jsonl", b'{"id": "1", "body": "x"}\n', r"notext\.jsonl:1: no string 'text'"),
    ("latin.txt", "caf\u00e9\n".encode("latin-1"), r"latin\.txt:1: not valid UTF-8"),
    ("blob.txt", b"\x00\x01\x02binary", r"blob\.txt: looks like a binary"),
    ("table.csv", b"a,b\nx,y\n", r"table\.csv:2: no string 'text' field"),
])
def test_bad_inputs_raise_input_error_naming_the_file(trained, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        encode_corpus([path], trained("byte_bpe"), tmp_path / "out.bin", progress=False)
    assert not (tmp_path / "out.bin").exists()


def test_missing_input(trained, tmp_path):
    with pytest.raises(InputError, match="nope.jsonl"):
        encode_corpus([tmp_path / "nope.jsonl"], trained("byte_bpe"), tmp_path / "o.bin", progress=False)


def test_stats_on_held_out_english_are_sane(trained, tmp_path, held_out):
    f = tmp_path / "val.txt"
    f.write_text(held_out["en"], encoding="utf-8")
    s = tokenizer_stats(trained("byte_bpe"), f)
    assert 2 < s["bytes_per_token"] < 6
    assert s["unk_rate"] == 0.0
    assert 1.0 < s["tokens_per_word"] < 2.5
    assert 0.05 < s["vocab_coverage"] <= 1.0
    assert s["tokens"] == sum(len(trained("byte_bpe").encode(t)) for t in iter_documents(f))

    char = tokenizer_stats(trained("char"), f)
    assert char["bytes_per_token"] == pytest.approx(1.0, abs=0.01)
    assert char["tokens_per_char"] == 1.0


def test_stats_unknown_rate_reflects_unseen_script(shakespeare_text, tmp_path, held_out):
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    en_only = train_tokenizer([shakespeare_text[:100_000]], TokenizerConfig(kind="char"))
    f = tmp_path / "zh.txt"
    f.write_text(held_out["zh"], encoding="utf-8")
    s = tokenizer_stats(en_only, f, max_docs=20)
    assert s["docs"] == 20
    assert s["unk_rate"] > 0.8  # almost every Chinese character is unknown to an English char vocab
    assert s["vocab_coverage"] < 0.2


def test_directories_expand_to_their_text_files(tmp_path):
    from lmforge.tokenizer import expand_inputs

    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "sub" / "a.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "notes.pdf").write_text("skip me")
    assert expand_inputs([tmp_path]) == [tmp_path / "b.txt", tmp_path / "sub" / "a.jsonl"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty holds no"):
        expand_inputs([tmp_path / "empty"])


def test_parquet_documents(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["1", "2", "3"], "text": ["first", "", "第三"]}), tmp_path / "d.parquet")
    assert list(iter_documents(tmp_path / "d.parquet")) == ["first", "第三"]
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nobody.parquet")
    with pytest.raises(InputError, match="no 'text' column"):
        list(iter_documents(tmp_path / "nobody.parquet"))


def test_huge_paragraph_is_cut_at_a_line_end(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "MAX_DOC_CHARS", 20)
    f = tmp_path / "wall.txt"
    f.write_text("".join(f"line {i:02d} of text\n" for i in range(5)))  # 16 chars a line, no blank lines
    docs = list(iter_documents(f))
    assert docs == ["line 00 of text\nline 01 of text", "line 02 of text\nline 03 of text", "line 04 of text"]


def test_worker_errors_reach_the_caller_as_input_errors(trained, corpus_files, tmp_path):
    jl, _, _ = corpus_files
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"text": "a"}\nnot json\n')
    with pytest.raises(InputError, match=r"broken\.jsonl:2") as info:
        encode_corpus([jl, bad], trained("byte_bpe"), tmp_path / "p.bin", workers=2, progress=False)
    assert info.value.hint
    assert not (tmp_path / "p.bin").exists()
