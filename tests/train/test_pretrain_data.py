"""Pretraining reads its files through the one record reader (data.readers.read_records)."""

import json

import pytest

from lmforge.errors import InputError
from lmforge.tokenizer import Tok, TokenizerConfig, train_tokenizer
from lmforge.train.pretrain import _read_pairs


@pytest.fixture(scope="module")
def tok() -> Tok:
    return train_tokenizer(["a man rides a horse", "ein Mann reitet ein Pferd"] * 50,
                           TokenizerConfig(kind="byte_bpe", vocab_size=300))


def test_seq2seq_pairs_from_tsv_and_json_array(tok, tmp_path):
    tsv = tmp_path / "p.tsv"
    tsv.write_text("en\tde\na man rides a horse\tein Mann reitet ein Pferd\n", encoding="utf-8")
    arr = tmp_path / "p.json"
    arr.write_text(json.dumps([{"en": "a horse", "de": "ein Pferd"}]), encoding="utf-8")
    pairs = _read_pairs([str(tsv), str(arr)], tok, "en", "de", max_len=64)
    assert len(pairs) == 2
    src, tgt = pairs[0]
    assert tok.decode(src) == "a man rides a horse"
    assert tgt[-1] == tok.eos_id and tok.decode(tgt[:-1]) == "ein Mann reitet ein Pferd"


def test_seq2seq_pairs_missing_field_names_file_and_line(tok, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"en": "a", "de": "b"}\n\n{"en": "only source"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"p\.jsonl:3: no 'en'/'de' fields"):
        _read_pairs([str(f)], tok, "en", "de", max_len=64)
