"""Augmentation: EDA with WordNet/Cilin synonyms, character noise, masked-LM substitution and
back-translation as one-in, many-out data steps; NER offsets, labels, accounting, splits and the CLI."""

from __future__ import annotations

import difflib
import functools
import json
import time
from pathlib import Path

import pytest

from lmforge.data.config import DataStageConfig, ReadConfig, SplitConfig
from lmforge.data.document import Document
from lmforge.data.inputs import expand_inputs
from lmforge.data.readers import read_file
from lmforge.data.split import assign_folds, assign_splits, split_files
from lmforge.data.steps.augment import (
    EDA,
    BackTranslate,
    CharNoise,
    Contextual,
    build_augmenter,
)
from lmforge.data.steps.augment.lexicons import WORDNET_DIR, cilin, wordnet
from lmforge.data.steps.augment.noise import KEYBOARD, pinyin_of
from lmforge.data.steps.base import Step
from lmforge.errors import ConfigError
from lmforge.text.segment import token_spans
from lmforge.text.stopwords import stopwords

needs_wordnet = pytest.mark.skipif(not (Path(WORDNET_DIR) / "data.noun").exists(),
                                   reason="WordNet not installed (apt-get install wordnet-base)")
EMOJI_NER = [  # (text, entities) with Chinese, emoji (one a ZWJ sequence) and an entity after them
    ("张三在北京的天安门广场拍了一张照片😀，然后去了上海。", [("张三", "PER"), ("北京", "LOC"), ("天安门广场", "LOC"), ("上海", "LOC")]),
    ("Yesterday 👨‍👩‍👧 John Smith flew from New York to the beautiful city of Paris with Apple staff.",
     [("John Smith", "PER"), ("New York", "LOC"), ("Paris", "LOC"), ("Apple", "ORG")]),
    ("我们的老师李明喜欢在杭州西湖旁边散步 🚶 和看书。", [("李明", "PER"), ("杭州", "LOC"), ("西湖", "LOC")]),
]


def run(step: Step, docs: list[Document]) -> list[Document]:
    dropped = []
    out = list(step(docs, lambda d, r: dropped.append((d, r))))
    assert not dropped  # augmentation never drops a document
    st = step.stats
    assert st.docs_in + st.created == st.docs_out == len(out)
    return out


def by_source(out: list[Document]) -> dict[str, list[Document]]:
    groups: dict[str, list[Document]] = {}
    for d in out:
        groups.setdefault(d.meta.get("augmented_from", d.id), []).append(d)
    return groups


def entity_docs() -> list[Document]:
    docs = []
    for k, (text, ents) in enumerate(EMOJI_NER):
        spans, pos = [], 0
        for e, label in ents:
            s = text.index(e, pos)
            spans.append({"start": s, "end": s + len(e), "label": label, "text": e})
            pos = s + len(e)
        docs.append(Document(f"ner-{k}", text, {"entities": spans, "lang": "zh" if k != 1 else "en"}))
    return docs


def sst2(shared_datasets, n: int = 40) -> list[Document]:
    lines = (shared_datasets / "classification" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:n + 1]
    return [Document(f"sst-{i}", s.strip(), {"label": int(y)}) for i, (s, y) in
            enumerate(line.rstrip("\r").split("\t") for line in lines)]


def hotel(shared_datasets, n: int = 30) -> list[Document]:
    path = shared_datasets / "classification" / "chnsenticorp" / "ChnSentiCorp_htl_all.csv"
    items = [d for d in read_file(expand_inputs([str(path)])[0], ReadConfig()) if isinstance(d, Document)]
    return [Document(f"htl-{i}", d.text, {"label": d.meta["label"]}) for i, d in enumerate(items[:n]) if len(d.text) < 120]


def cilin_path(shared_datasets) -> str:
    p = shared_datasets / "lexicons" / "cilin" / "cilin_ex.txt"
    if not p.exists():
        pytest.skip(f"{p} missing")
    return str(p)


def replaced(a: str, b: str, lang: str) -> list[tuple[str, str]]:
    """(old, new) word runs that differ between two texts."""
    wa = [a[s:e] for s, e in token_spans(a, lang)]
    wb = [b[s:e] for s, e in token_spans(b, lang)]
    sep = "" if lang == "zh" else " "
    return [(sep.join(wa[i:j]), sep.join(wb[k:m])) for op, i, j, k, m in
            difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes() if op == "replace"]


def derivable(src: str, new: str, lex, lang: str) -> bool:
    """``new`` is ``src`` with some words replaced by one of their synonyms (and nothing else changed)."""

    sep = "" if lang == "zh" else " "
    norm = (lambda t: sep.join(t[a:b] for a, b in token_spans(t, lang)).lower())
    words, target = [t for t in (src[a:b] for a, b in token_spans(src, lang))], norm(new)

    @functools.cache
    def go(i: int, j: int) -> bool:
        if i == len(words):
            return j == len(target)
        for cand in {words[i].lower(), *(norm(x) for x in lex.synonyms(words[i]))}:
            end = j + len(cand)
            if target.startswith(cand, j) and (end == len(target) or target.startswith(sep, end)) and \
                    go(i + 1, end + (len(sep) if end < len(target) else 0)):
                return True
        return False

    return go(0, 0)


def check_entities(orig: Document, copy: Document) -> None:
    """Same entities, same order and labels, offsets pointing at the same words in the new text."""
    a, b = orig.meta["entities"], copy.meta["entities"]
    assert [(e["label"], e["text"]) for e in a] == [(e["label"], e["text"]) for e in b]
    for e in b:
        assert copy.text[e["start"]: e["end"]] == e["text"]


# -- lexicons -----------------------------------------------------------------------------------


@needs_wordnet
def test_wordnet_is_read_from_the_debian_files():
    wn = wordnet()
    assert {"film", "picture", "flick"} <= set(wn.synonyms("movie"))
    assert "glad" in wn.synonyms("Happy") and "happy" not in wn.synonyms("happy")
    assert wn.synonyms("dogs") == [] and wn.synonyms("qzxv") == []  # exact forms only
    assert all("_" not in s and "(" not in s for w in ("big", "good", "run") for s in wn.synonyms(w))


def test_cilin_uses_only_synonym_lines(shared_datasets):
    c = cilin(cilin_path(shared_datasets))
    assert {"酒家", "酒楼"} <= set(c.synonyms("酒店")) and "美丽" in c.synonyms("漂亮")
    # Aa01B03# 良民 顺民 is a "related words" line, not synonyms
    assert "顺民" not in c.synonyms("良民")
    # "独辫\u3000辫": the ideographic space separates words too
    assert "独辫\u3000辫" not in c


# -- EDA ----------------------------------------------------------------------------------------


@needs_wordnet
def test_english_synonyms_come_from_wordnet_labels_ids_and_seed(shared_datasets):
    docs = sst2(shared_datasets)
    step = EDA("synonym", n=2, seed=3, options={"alpha_sr": 0.2})
    out = run(step, docs)
    assert step.stats.created > len(docs)  # most sentences have a word with synonyms
    wn, checked = wordnet(), 0
    for src in docs:
        group = by_source(out)[src.id]
        assert group[0] is src
        for k, c in enumerate(group[1:], 1):
            assert c.id == f"{src.id}#aug{k}" and c.meta["augmented_from"] == src.id and c.meta["augment"] == "synonym"
            assert c.meta["label"] == src.meta["label"] and c.text != src.text
            assert derivable(src.text, c.text, wn, "en"), (src.text, c.text)
            checked += 1
    assert checked > 40
    again = run(EDA("synonym", n=2, seed=3, options={"alpha_sr": 0.2}), docs)
    assert [d.to_dict() for d in again] == [d.to_dict() for d in out]  # deterministic
    other = run(EDA("synonym", n=2, seed=4, options={"alpha_sr": 0.2}), docs)
    assert [d.text for d in other] != [d.text for d in out]
    # the copy of a document does not depend on the other documents (sharding, order)
    assert [d.text for d in run(EDA("synonym", n=2, seed=3, options={"alpha_sr": 0.2}), docs[5:6])] == \
        [d.text for d in by_source(out)[docs[5].id]]


def test_chinese_synonyms_come_from_cilin_over_jieba_words(shared_datasets):
    docs = hotel(shared_datasets)
    c = cilin(cilin_path(shared_datasets))
    out = run(EDA("synonym", n=2, seed=0, lang="zh", cilin=cilin_path(shared_datasets)), docs)
    checked = 0
    for src in docs:
        for cp in by_source(out)[src.id][1:]:
            assert cp.meta["label"] == src.meta["label"] and cp.text != src.text
            assert derivable(src.text, cp.text, c, "zh"), (src.text, cp.text)
            checked += 1
    assert checked >= len(docs)


@needs_wordnet
def test_each_operation_does_what_it_says(shared_datasets):
    docs = sst2(shared_datasets, 20)
    cil = cilin_path(shared_datasets)
    words = lambda t: [t[a:b] for a, b in token_spans(t, "en")]
    for src, cp in zip(docs, run(EDA("swap", n=1, seed=1), docs)[1::2]):
        if cp.meta.get("augmented_from"):
            assert sorted(words(cp.text)) == sorted(words(src.text))
    for d in run(EDA("delete", n=1, seed=1, options={"p_rd": 0.2}), docs):
        if d.meta.get("augmented_from"):
            src = next(s for s in docs if s.id == d.meta["augmented_from"])
            w, ws = words(d.text), words(src.text)
            assert 0 < len(w) < len(ws) and "insert" not in {op for op, *_ in difflib.SequenceMatcher(a=ws, b=w).get_opcodes()}
    for d in run(EDA("insert", n=1, seed=1), docs):
        if d.meta.get("augmented_from"):
            src = next(s for s in docs if s.id == d.meta["augmented_from"])
            assert len(words(d.text)) > len(words(src.text))
    out = run(EDA("eda", n=4, seed=0, cilin=cil), docs)
    ops = {d.meta["augment"] for d in out if "augment" in d.meta}
    assert ops == {"eda"} and EDA("eda").method == "eda"
    with pytest.raises(ConfigError, match="did you mean 'alpha_sr'"):
        EDA("synonym", options={"alpha_s": 0.1})
    with pytest.raises(ConfigError, match=r"outside \[0, 1\]"):
        EDA("delete", options={"p_rd": 3})


# -- NER ----------------------------------------------------------------------------------------


@needs_wordnet
@pytest.mark.parametrize("method", ["insert", "delete", "swap", "synonym", "eda", "noise"])
def test_entity_offsets_stay_correct_with_chinese_and_emoji(method, shared_datasets):
    docs = entity_docs()
    step = build_augmenter(method, n=3, seed=7, options={"p_rd": 0.3} if method == "delete" else None,
                           cilin=cilin_path(shared_datasets))
    out = run(step, docs)
    assert step.stats.created >= len(docs)
    for src in docs:
        for cp in by_source(out)[src.id][1:]:
            check_entities(src, cp)
            for emoji in ("😀", "👨‍👩‍👧", "🚶"):  # symbols are never split or dropped
                assert src.text.count(emoji) == cp.text.count(emoji)


def test_bad_entity_offsets_pass_through_counted():
    doc = Document("x", "Paris is nice.", {"entities": [{"start": 3, "end": 99, "label": "LOC"}]})
    step = CharNoise(n=2)
    assert run(step, [doc]) == [doc]
    assert step.stats.counters["skipped:entity_offsets_out_of_range"] == 1


def _conll_docs(path: Path, n: int) -> list[Document]:
    out = []
    for d in read_file(expand_inputs([str(path)])[0], ReadConfig(format="conll")):
        if isinstance(d, Document) and any(t != "O" for t in d.meta["tags"]):
            out.append(d)
        if len(out) >= n:
            break
    return out


@needs_wordnet
@pytest.mark.parametrize("corpus", ["conll2003/eng.train", "msra/train.bio"])
def test_conll_tokens_and_tags_stay_aligned(corpus, shared_datasets):
    from lmforge.eval.ner_metrics import spans_from_tags

    path = shared_datasets / "ner" / corpus
    if not path.exists():
        pytest.skip(f"{path} missing")
    docs = _conll_docs(path, 25)
    scheme = "IOB1" if "conll" in corpus else "IOB2"

    def ents(d):
        toks = d.meta["tokens"]
        return [(t, " ".join(toks[a:b])) for t, a, b in spans_from_tags(d.meta["tags"], scheme, "conlleval")]

    for method in ("insert", "delete", "swap", "synonym", "noise"):
        step = build_augmenter(method, n=2, seed=1, options={"p_rd": 0.3} if method == "delete" else None,
                               cilin=cilin_path(shared_datasets))
        out = run(step, docs)
        assert step.stats.created >= len(docs) // 2, method
        for src in docs:
            for cp in by_source(out)[src.id][1:]:
                toks, tags = cp.meta["tokens"], cp.meta["tags"]
                sep = "" if src.text == "".join(src.meta["tokens"]) else " "
                assert len(toks) == len(tags) and cp.text == sep.join(toks)
                assert ents(cp) == ents(src), (method, src.text, cp.text)
                if "msra" in corpus:
                    assert all(len(t) == 1 for t in toks)  # still one character per token


# -- noise --------------------------------------------------------------------------------------


def test_character_noise_english_typos_and_chinese_same_pinyin(shared_datasets):
    en = [Document("e", "The hotel room was clean and the breakfast was excellent.", {"label": 1})]
    out = run(CharNoise(n=5, seed=2), en)
    assert len(out) == 6
    for cp in out[1:]:
        pairs = replaced(en[0].text, cp.text, "en")
        assert pairs and all(difflib.SequenceMatcher(a=a, b=b).ratio() >= 0.6 for a, b in pairs)
        for a, b in pairs:  # a keyboard neighbour, a dropped, doubled or transposed letter
            if len(a) == len(b) and sorted(a) != sorted(b):
                (x, y), = [(p, q) for p, q in zip(a, b) if p != q]
                assert y.lower() in KEYBOARD[x.lower()]
    zh = hotel(shared_datasets, 10)
    out = run(CharNoise(n=2, seed=0, lang="zh", options={"p": 0.05}), zh)
    n = 0
    for src in zh:
        for cp in by_source(out)[src.id][1:]:
            assert len(cp.text) == len(src.text) and cp.meta["label"] == src.meta["label"]
            for a, b in zip(src.text, cp.text):
                if a != b:
                    assert pinyin_of(a) == pinyin_of(b), (a, b)
                    n += 1
    assert n >= len(zh)


# -- accounting and splits ------------------------------------------------------------------------


@needs_wordnet
def test_pipeline_accounting_with_created_copies(tmp_path, shared_datasets):
    from data_helpers import read_dir

    from lmforge.data.pipeline import process

    docs = sst2(shared_datasets, 60)
    lines = [json.dumps({"id": d.id, "text": d.text + " It is a movie about people and their lives.",
                         "label": d.meta["label"]}) for d in docs]
    (tmp_path / "in.jsonl").write_text("\n".join(lines + lines[:3] + ['{"id": "bad", "text": ']) + "\n")
    cfg = DataStageConfig.model_validate({
        "inputs": [str(tmp_path / "in.jsonl")], "langid": {"enabled": False}, "output": {"format": "jsonl"},
        "augment": {"enabled": True, "method": "eda", "n": 2, "seed": 1}, "workers": 1})
    stats = process(cfg, tmp_path / "out")
    kept = read_dir(tmp_path / "out" / "kept")
    assert stats["created"] > 60 and stats["steps"]["augment"]["created"] == stats["created"]
    assert stats["records_in"] + stats["created"] == stats["kept"] + stats["dropped"] + stats["errors"]
    assert len(kept) == stats["kept"] and stats["errors"] == 1 and stats["dropped"] >= 3  # exact dups dropped
    copies = [r for r in kept if "augmented_from" in r["meta"]]
    assert len(copies) == stats["created"]  # copies were made after dedup, none deduplicated away
    assert all(r["meta"]["label"] == next(o for o in kept if o["id"] == r["meta"]["augmented_from"])["meta"]["label"]
               for r in copies)
    with pytest.raises(Exception, match="method"):
        DataStageConfig.model_validate({"augment": {"method": "contextual"}})


@pytest.mark.parametrize("mode", ["random", "stratified", "grouped"])
def test_split_keeps_copies_with_their_source(mode, tmp_path, shared_datasets):
    docs = hotel(shared_datasets, 30) + [Document(d.id.replace("htl", "h2"), d.text[::-1], d.meta)
                                         for d in hotel(shared_datasets, 30)]
    out = run(CharNoise(n=3, seed=0, lang="zh"), docs)
    recs = [d.to_dict() for d in out]
    cfg = SplitConfig(mode=mode, val_fraction=0.2, test_fraction=0.2, seed=5)
    assign = assign_splits(recs, cfg)
    side = {}
    for r, a in zip(recs, assign):
        side.setdefault(r["meta"].get("augmented_from", r["id"]), set()).add(int(a))
    assert all(len(s) == 1 for s in side.values()) and {0, 1, 2} <= {next(iter(s)) for s in side.values()}
    # whole files too
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    counts = split_files([tmp_path / "in.jsonl"], tmp_path / "splits", cfg)
    assert sum(counts.values()) == len(recs)
    seen = {}
    for name in counts:
        for line in (tmp_path / "splits" / f"{name}.jsonl").read_text().splitlines():
            r = json.loads(line)
            seen.setdefault(r["meta"].get("augmented_from", r["id"]), set()).add(name)
    assert all(len(s) == 1 for s in seen.values())
    folds = assign_folds([{**r, "meta": {**r["meta"], "label": str(r["meta"]["label"])}} for r in recs], 3,
                         mode=mode, seed=0)
    by = {}
    for r, f in zip(recs, folds):
        by.setdefault(r["meta"].get("augmented_from", r["id"]), set()).add(int(f))
    assert all(len(s) == 1 for s in by.values())


@needs_wordnet
def test_leakage_report_finds_augmented_copies_across_splits(tmp_path, shared_datasets):
    """A copy in test whose source is in train is a leak even when EDA rewrote too much for MinHash."""
    from lmforge.data.split import leakage

    src = sst2(shared_datasets, 40)
    out = run(EDA(n=1, seed=3, lang="en", options={"alpha_sr": 0.3, "alpha_rs": 0.3, "alpha_ri": 0.3, "p_rd": 0.3}), src)
    copies = [d for d in out if "augmented_from" in d.meta]
    sources = [d for d in out if "augmented_from" not in d.meta]
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in sources[:30] + copies[30:]))
    test.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in copies[:30] + sources[30:]))
    rep = leakage([train], [test], threshold=0.7)
    # 30 copies of train sources, and 10 sources whose copies sit in train
    assert rep["augmented"] == 40 and rep["b_docs"] == 40
    assert rep["near"] + rep["exact"] < 40  # text similarity alone misses some of them
    assert set(rep["augmented_examples"][0]) <= {d.id for d in out}
    split_dir = tmp_path / "s"
    (tmp_path / "all.jsonl").write_text("".join(json.dumps(d.to_dict()) + "\n" for d in out))
    split_files([tmp_path / "all.jsonl"], split_dir, SplitConfig(val_fraction=0.2, test_fraction=0.2))
    assert leakage([split_dir / "train.jsonl"], [split_dir / "test.jsonl"])["augmented"] == 0


# -- contextual ---------------------------------------------------------------------------------


def _mlm_dir(tmp_path: Path, texts: list[str]) -> Path:
    import torch
    from tokenizers import (
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    from lmforge.models.bert import BERT, BertConfig
    from lmforge.models.io import save_model
    from lmforge.tokenizer import Tok

    hf = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    hf.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=800, special_tokens=specials))
    hf.post_processor = processors.BertProcessing(("[SEP]", hf.token_to_id("[SEP]")), ("[CLS]", hf.token_to_id("[CLS]")))
    tok = Tok(hf)
    torch.manual_seed(0)
    model = BERT(BertConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, d_model=32, dropout=0.0))
    d = tmp_path / "mlm"
    save_model(model, d)
    tok.save(d)
    return d


def test_contextual_substitution_with_a_bert_mlm(tmp_path, shared_datasets):
    from lmforge.data.augment_cli import mask_filler

    docs = sst2(shared_datasets, 30)
    d = _mlm_dir(tmp_path, [x.text for x in sst2(shared_datasets, 800)])
    fill = mask_filler(d)
    answers = fill([("the movie is", "and funny ."), ("", "film")])
    assert len(answers) == 2 and all(a and all(not w.startswith("##") and "[" not in w for w in a) for a in answers)
    ner = [e for e in entity_docs() if e.meta["lang"] == "en"]
    step = Contextual(fill, n=2, seed=0, options={"p": 0.3}, batch_size=8)
    out = run(step, docs + ner)
    assert step.stats.created > len(docs)
    for src in docs + ner:
        for cp in by_source(out)[src.id][1:]:
            a = [src.text[x:y] for x, y in token_spans(src.text, "en")]
            b = [cp.text[x:y] for x, y in token_spans(cp.text, "en")]
            assert len(a) == len(b)  # one word for one word
            changed = [(u, v) for u, v in zip(a, b) if u != v]
            assert changed and all(u.isalpha() and v.isalpha() and u.lower() not in stopwords("en") for u, v in changed)
            if "entities" in src.meta:
                check_entities(src, cp)
                inside = {w for e in src.meta["entities"] for w in e["text"].split()}
                assert not {u for u, _ in changed} & inside
    again = run(Contextual(mask_filler(d), n=2, seed=0, options={"p": 0.3}, batch_size=3), docs + ner)
    assert [x.text for x in again] == [x.text for x in out]  # batching does not change the copies


# -- back-translation ---------------------------------------------------------------------------


def test_backtranslation_with_callables_and_cli_errors(tmp_path):
    def forward(xs):  # a word-reversing "translation": its round trip lower-cases
        return [" ".join(reversed(x.split())) for x in xs]

    def backward(xs):
        return [" ".join(reversed(x.lower().split())) for x in xs]

    docs = [Document("a", "The Cat sat.\n\nOn the Mat.", {"label": 1}), Document("b", "already lower", {}),
            *entity_docs()[1:2]]
    step = BackTranslate(forward, backward)
    out = run(step, docs)
    assert [d.id for d in out] == ["a", "a#aug1", "b", "ner-1"]
    assert out[1].text == "the cat sat.\n\non the mat." and out[1].meta["label"] == 1
    assert step.stats.counters["skipped:has_entities"] == 1 and step.stats.counters["no_copy"] == 1
    silent = BackTranslate(forward, lambda xs: ["" if "b" in x else x for x in backward(xs)])
    out = run(silent, [Document("b", "A bb", {}), Document("c", "C Dd", {})])
    assert [d.id for d in out] == ["b", "c", "c#aug1"]  # an empty copy is never emitted, and counted
    assert silent.stats.counters["empty_copies"] == 1
    with pytest.raises(ConfigError, match="one copy"):
        BackTranslate(forward, backward, n=2)
    with pytest.raises(ConfigError, match="--forward"):
        build_augmenter("backtranslate")


PAIRS = [("the cat sits on the mat", "die katze sitzt auf der matte"),
         ("the dog runs in the park", "der hund rennt im park"),
         ("a bird sings in the tree", "ein vogel singt im baum"),
         ("the man eats a red apple", "der mann isst einen roten apfel"),
         ("a woman reads a long book", "eine frau liest ein langes buch"),
         ("the child plays with a ball", "das kind spielt mit einem ball")]


def test_backtranslation_through_two_tiny_translation_models(tmp_path):
    from lmforge.data.augment_cli import translator
    from lmforge.tasks.predict import predict_texts
    from lmforge.tasks.stage import FinetuneConfig
    from lmforge.tasks.stage import run as finetune
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    t0 = time.perf_counter()
    tok = train_tokenizer(iter([t for p in PAIRS for t in p]),
                          TokenizerConfig(kind="byte_bpe", vocab_size=320, family="seq2seq", min_frequency=1))
    tok.save(tmp_path / "tok")
    (tmp_path / "d.en").write_text("".join(a + "\n" for a, _ in PAIRS))
    (tmp_path / "d.de").write_text("".join(b + "\n" for _, b in PAIRS))
    dirs = {}
    for src, tgt in (("en", "de"), ("de", "en")):
        cfg = FinetuneConfig.model_validate({
            "task": {"kind": "translation", "source_lang": src, "target_lang": tgt, "max_source_len": 16,
                     "max_target_len": 16, "num_beams": 1, "label_smoothing": 0.0},
            "data": {"train": str(tmp_path / "d"), "val": str(tmp_path / "d")},
            "model": {"family": "seq2seq", "block_size": 16, "n_encoder_layer": 1, "n_decoder_layer": 1, "n_head": 2,
                      "d_model": 32},
            "train": {"max_steps": 40, "batch_size": 6, "lr": 1e-2, "warmup_steps": 5, "eval_every": 40}})
        finetune(cfg, None, tmp_path / f"ft-{src}{tgt}", progress=False, tokenizer_dir=tmp_path / "tok")
        dirs[src + tgt] = tmp_path / f"ft-{src}{tgt}" / "pretrained" / "model"
    docs = [Document(f"p{i}", a, {"label": i % 2}) for i, (a, _) in enumerate(PAIRS)]
    step = BackTranslate(translator(dirs["ende"]), translator(dirs["deen"]), batch_size=4)
    out = run(step, docs)
    de = [p["prediction"] for p in predict_texts(dirs["ende"], [d.text for d in docs])]
    back = [p["prediction"] for p in predict_texts(dirs["deen"], de)]
    expect = [t for d, t in zip(docs, back) if t.strip() and t != d.text]
    assert [d.text for d in out if "augmented_from" in d.meta] == expect
    assert expect  # the toy models do not round-trip every sentence exactly
    assert step.stats.created == len(expect) and time.perf_counter() - t0 < 60


# -- CLI ----------------------------------------------------------------------------------------


def _cli(args: list[str]) -> int:
    import typer
    from typer.testing import CliRunner

    from lmforge.data.augment_cli import augment

    app = typer.Typer()
    app.command("augment")(augment)
    app.command("other")(lambda: None)
    res = CliRunner().invoke(app, ["augment", *args])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code


@needs_wordnet
def test_cli_reads_counts_bad_records_and_writes_stats(tmp_path, shared_datasets):
    docs = sst2(shared_datasets, 10)
    rows = [json.dumps({"id": d.id, "text": d.text, "label": d.meta["label"]}) for d in docs]
    rows.insert(3, '{"id": "broken", "text": ')
    rows.insert(6, '{"id": "notext", "sentence_x": "x"}')
    (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "aug.jsonl"
    assert _cli([str(tmp_path / "in.jsonl"), "--output", str(out), "--method", "eda", "--n", "2", "alpha_sr=0.2"]) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    stats = json.loads((tmp_path / "aug.stats.json").read_text())
    errors = [json.loads(x) for x in (tmp_path / "aug.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [4, 7] and all(e["path"].endswith("in.jsonl") for e in errors)
    assert stats["records_in"] == 12 and stats["errors"] == 2
    assert stats["records_in"] + stats["created"] == stats["written"] + stats["errors"] == len(recs) + 2
    assert {r["meta"]["augmented_from"] for r in recs if "augmented_from" in r["meta"]} <= {d.id for d in docs}
    tsv = tmp_path / "zh.tsv"
    tsv.write_text("label\ttext\n1\t房间很大，床很舒服，早餐也不错。\n0\t服务员态度很差，不会再来了。\n", encoding="utf-8")
    assert _cli([str(tsv), "-o", str(tmp_path / "zh.jsonl"), "--method", "noise", "--lang", "zh", "--n", "2"]) == 0
    zh = [json.loads(x) for x in (tmp_path / "zh.jsonl").read_text().splitlines()]
    assert len(zh) == 6 and [r["meta"]["label"] for r in zh] == ["1", "1", "1", "0", "0", "0"]
    with pytest.raises(ConfigError, match="unknown method"):
        _cli([str(tsv), "-o", str(tmp_path / "x.jsonl"), "--method", "mixup"])
    with pytest.raises(ConfigError, match="--model"):
        _cli([str(tsv), "-o", str(tmp_path / "x.jsonl"), "--method", "contextual"])
    with pytest.raises(ConfigError, match="key=value"):
        _cli([str(tsv), "-o", str(tmp_path / "x.jsonl"), "alpha"])
