"""Training every kind on real English, Chinese and mixed text; round trips; special tokens; save/load."""

from __future__ import annotations

import json
import re

import pytest

from lmforge.errors import ConfigError, InputError
from lmforge.tokenizer import Tok, TokenizerConfig, train_tokenizer

KINDS = ["byte_bpe", "bpe", "wordpiece", "unigram", "char"]


def _no_space(s: str) -> str:
    return re.sub(r"\s+", "", s)


def test_byte_bpe_round_trips_unseen_english_and_chinese_exactly(trained, held_out):
    tok = trained("byte_bpe")
    assert tok.vocab_size == 6000
    tricky = "naïve café — 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🙂\ttabs\r\n  double  spaces\n\n\n中文English混合，全角！"
    for text in (held_out["en"], held_out["zh"], tricky):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert max(ids) < tok.vocab_size


def test_byte_bpe_compresses_both_languages(trained, held_out):
    tok = trained("byte_bpe")
    for lang, low, high in (("en", 2.0, 6.0), ("zh", 1.5, 6.0)):
        text = held_out[lang]
        bpt = len(text.encode("utf-8")) / len(tok.encode(text))
        assert low < bpt < high, (lang, bpt)


def test_char_round_trips_all_of_tiny_shakespeare(shakespeare_text):
    tok = train_tokenizer([shakespeare_text], TokenizerConfig(kind="char"))
    assert tok.decode(tok.encode(shakespeare_text)) == shakespeare_text
    # 65 distinct characters + <|endoftext|> + <unk>
    assert tok.vocab_size == len(set(shakespeare_text)) + 2 == 67
    assert len(tok.encode("First Citizen:\n")) == len("First Citizen:\n")
    assert tok.decode(tok.encode("Zebra§")) == "Zebra<unk>"  # § was never seen


def test_char_keeps_the_most_frequent_characters_within_vocab_size(zh_docs):
    tok = train_tokenizer(zh_docs, TokenizerConfig(kind="char", vocab_size=500))
    assert tok.vocab_size == 500
    ids = tok.encode("的了")  # among the most common characters: never unknown
    assert tok.unk_id not in ids


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_metaspace_kinds_round_trip_unseen_text_via_byte_fallback(trained, held_out, kind):
    tok = trained(kind)
    assert tok.vocab_size == (3000 if kind == "unigram" else 6000)
    # Metaspace cannot tell a leading space from its own word marker; everything else is exact
    for text in (held_out["en"].lstrip(), held_out["zh"].lstrip(), "naïve 🙂 𝔘𝔫𝔦 — 龘"):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.unk_id not in ids
    pieces = [tok.id_to_token(i) for i in tok.encode("🙂")]
    assert pieces[-4:] == ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]


def test_wordpiece_splits_cjk_into_characters_and_round_trips_modulo_spaces(trained, held_out):
    tok = trained("wordpiece", family="bert")
    pieces = [tok.id_to_token(i) for i in tok.encode("孙悟空大闹天宫")]
    assert pieces == list("孙悟空大闹天宫")
    assert tok.decode(tok.encode("孙悟空大闹天宫。")) == "孙悟空大闹天宫。"
    en = held_out["en"][:3000]
    ids = tok.encode(en)
    assert ids.count(tok.unk_id) / len(ids) < 0.01
    # WordPiece drops whitespace layout; everything else survives
    assert _no_space(tok.decode(ids)) == _no_space(en)
    assert any(tok.id_to_token(i).startswith("##") for i in ids)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_handles_mixed_text(trained, kind):
    tok = trained(kind)
    text = "KING RICHARD: 孙悟空 said hello to 天地之数."
    ids = tok.encode(text)
    assert ids and all(0 <= i < tok.vocab_size for i in ids)
    assert _no_space(tok.decode(ids)) == _no_space(text)
    assert tok.encode_batch([text, "hello"]) == [ids, tok.encode("hello")]


@pytest.mark.parametrize("kind", KINDS)
def test_family_special_tokens_have_fixed_ids(trained, kind):
    gpt = trained(kind, family="gpt", small=True)
    assert gpt.id_to_token(0) == "<|endoftext|>"
    assert gpt.eos_id == gpt.pad_id == gpt.bos_id == 0
    assert gpt.cls_id is None and gpt.mask_id is None

    bert = trained(kind, family="bert", small=True)
    assert [bert.id_to_token(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (0, 1, 2, 3, 4)
    assert bert.eos_id is None
    with_specials = bert.encode("to be", add_special_tokens=True)
    assert with_specials[0] == bert.cls_id and with_specials[-1] == bert.sep_id
    assert with_specials[1:-1] == bert.encode("to be")

    s2s = trained(kind, family="seq2seq", small=True)
    assert [s2s.id_to_token(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert (s2s.pad_id, s2s.bos_id, s2s.eos_id, s2s.unk_id) == (0, 1, 2, 3)
    assert s2s.encode("to be", add_special_tokens=True) == s2s.encode("to be") + [2]


def test_special_tokens_are_never_split(trained):
    tok = trained("byte_bpe", family="bert")
    ids = tok.encode("[CLS] hi [MASK] there")
    assert tok.cls_id in ids and tok.mask_id in ids


def test_special_tokens_override(mixed_docs):
    cfg = TokenizerConfig(kind="byte_bpe", vocab_size=1000, special_tokens=["<|endoftext|>", "<|user|>", "<|assistant|>"])
    tok = train_tokenizer(mixed_docs[:300], cfg)
    user = tok.token_to_id("<|user|>")
    assert user == 1 and tok.encode("<|user|>hi") [0] == user
    assert tok.eos_id == 0 and tok.special_tokens == cfg.special_tokens


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_gives_identical_encodings(trained, held_out, tmp_path, kind):
    tok = trained(kind, family="seq2seq", small=True)
    tok.save(tmp_path)
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "tokenizer_meta.json").exists()
    for loaded in (Tok.load(tmp_path), Tok.load(tmp_path / "tokenizer.json")):
        assert loaded.kind == kind and loaded.family == "seq2seq"
        assert loaded.special_ids == tok.special_ids
        for text in (held_out["en"][:2000], held_out["zh"][:1000]):
            assert loaded.encode(text) == tok.encode(text)
            assert loaded.decode(tok.encode(text)) == tok.decode(tok.encode(text))


def test_load_without_meta_infers_family_and_roles(trained, tmp_path):
    tok = trained("wordpiece", family="bert")
    tok.save(tmp_path)
    (tmp_path / "tokenizer_meta.json").unlink()
    loaded = Tok.load(tmp_path)
    assert (loaded.family, loaded.kind) == ("bert", "wordpiece")
    assert loaded.special_ids == tok.special_ids


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="no tokenizer.json"):
        Tok.load(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=str(bad)):
        Tok.load(bad)


def test_hf_transformers_loads_our_tokenizer_json(trained, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = trained("byte_bpe")
    file = tok.save(tmp_path)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(file), eos_token="<|endoftext|>")
    text = "To be, or not to be: 生存还是毁灭"
    assert fast(text)["input_ids"] == tok.encode(text)
    assert fast.eos_token_id == tok.eos_id


def test_vocab_size_and_min_frequency_are_honoured(en_docs):
    small = train_tokenizer(en_docs, TokenizerConfig(kind="byte_bpe", vocab_size=300))
    assert small.vocab_size == 300
    strict = train_tokenizer(en_docs, TokenizerConfig(kind="byte_bpe", vocab_size=50_000, min_frequency=50))
    loose = train_tokenizer(en_docs, TokenizerConfig(kind="byte_bpe", vocab_size=50_000, min_frequency=2))
    assert strict.vocab_size < loose.vocab_size < 50_000


def test_lowercase_and_max_train_docs(en_docs):
    tok = train_tokenizer(iter(en_docs), TokenizerConfig(kind="char", lowercase=True, max_train_docs=10))
    assert tok.meta["trained_docs"] == 10
    assert tok.encode("ABC") == tok.encode("abc")
    assert tok.token_to_id("A") is None


def test_empty_corpus_and_too_small_unigram_vocab_are_user_errors(zh_docs):
    with pytest.raises(InputError, match="no training text"):
        train_tokenizer([], TokenizerConfig())
    with pytest.raises(ConfigError, match="distinct characters"):
        train_tokenizer(zh_docs[:50], TokenizerConfig(kind="unigram", vocab_size=100))


def test_config_rejects_bad_values():
    from lmforge.config import validate

    with pytest.raises(ConfigError, match="kind"):
        validate(TokenizerConfig, {"kind": "sentencepiece"}, "recipe")
    with pytest.raises(ConfigError, match="did you mean 'vocab_size'"):
        validate(TokenizerConfig, {"vocab_sise": 10}, "recipe")
    assert TokenizerConfig(files=["a.txt"]).input_paths() == ["a.txt"]
    assert TokenizerConfig().input_paths() == []
    assert json.loads(TokenizerConfig().model_dump_json())["family"] == "gpt"


def test_bert_template_works_in_transformers(trained, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = trained("wordpiece", family="bert")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tok.save(tmp_path)), cls_token="[CLS]",
                                                sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]")
    ids = fast("孙悟空 said hi", "second")["input_ids"]
    assert ids == tok.hf.encode("孙悟空 said hi", "second").ids
    assert ids[0] == tok.cls_id and ids.count(tok.sep_id) == 2


def test_bad_training_file_is_an_input_error(tmp_path):
    from lmforge.tokenizer import iter_corpus

    bad = tmp_path / "train.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 5}\n')
    for kind in ("byte_bpe", "char"):
        with pytest.raises(InputError, match=r"train\.jsonl:2"):
            train_tokenizer(iter_corpus([bad]), TokenizerConfig(kind=kind))
