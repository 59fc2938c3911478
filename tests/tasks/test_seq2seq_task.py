"""Translation and summarization on the task interface: readers, bad input, teacher forcing and the
loss, decoding, metric parity with sacreBLEU / rouge-score, and a tiny run through ``lmforge evaluate``."""

import json

import numpy as np
import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig
from lmforge.tasks.seq2seq import (Summarization, SummarizationConfig, Translation, TranslationConfig,
                                   split_selector)

PAIRS = [("the cat sits on the mat", "die katze sitzt auf der matte"),
         ("the dog runs in the park", "der hund rennt im park"),
         ("a bird sings in the tree", "ein vogel singt im baum"),
         ("the man eats a red apple", "der mann isst einen roten apfel"),
         ("a woman reads a long book", "eine frau liest ein langes buch"),
         ("the child plays with a ball", "das kind spielt mit einem ball"),
         ("a horse jumps over the fence", "ein pferd springt über den zaun"),
         ("the sun shines on the lake", "die sonne scheint auf den see")]


def _tr(**kw) -> Translation:
    return Translation(TranslationConfig(**{"source_lang": "en", "target_lang": "de", **kw}))


def _write_aligned(tmp_path, name="d", pairs=PAIRS):
    (tmp_path / f"{name}.en").write_text("".join(a + "\n" for a, _ in pairs), encoding="utf-8")
    (tmp_path / f"{name}.de").write_text("".join(b + "\n" for _, b in pairs), encoding="utf-8")
    return tmp_path / name


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    tok = train_tokenizer(iter([t for p in PAIRS for t in p]),
                          TokenizerConfig(kind="byte_bpe", vocab_size=320, family="seq2seq", min_frequency=1))
    d = tmp_path_factory.mktemp("tok")
    tok.save(d)
    tok.dir = d
    return tok


def _body(tok, block=32) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(vocab_size=tok.vocab_size, block_size=block, n_encoder_layer=1, n_decoder_layer=1,
                                 n_head=2, d_model=32, pad_token_id=tok.pad_id, decoder_start_token_id=tok.bos_id,
                                 eos_token_id=tok.eos_id))


# -- reading ----------------------------------------------------------------------------------------


def test_line_aligned_prefix_and_either_file(tmp_path):
    prefix = _write_aligned(tmp_path)
    ex = _tr().read(prefix)
    assert len(ex) == 8 and ex[0] == {"id": "d:1", "source": PAIRS[0][0], "target": PAIRS[0][1], "line": 1}
    assert _tr().read(str(prefix) + ".de") == ex  # naming one of the pair works too
    assert _tr().cfg.data_files(str(prefix)) == [f"{prefix}.en", f"{prefix}.de"]  # what the cache should hash
    # reversed direction from the same files
    rev = Translation(TranslationConfig(source_lang="de", target_lang="en")).read(prefix)
    assert rev[1]["source"] == PAIRS[1][1] and rev[1]["target"] == PAIRS[1][0]


def test_line_aligned_count_mismatch_names_both_files(tmp_path):
    prefix = _write_aligned(tmp_path)
    (tmp_path / "d.de").write_text("eins\nzwei\n")
    with pytest.raises(InputError, match=r"d\.en has 8 lines, .*d\.de has 2"):
        _tr().read(prefix)
    (tmp_path / "d.de").unlink()
    with pytest.raises(InputError, match=r"file not found: .*d\.de"):
        _tr().read(prefix)


def test_records_by_name_and_column_and_empty_file(tmp_path):
    j = tmp_path / "x.jsonl"
    j.write_text('{"document": "long text here", "summary": "short", "id": "a"}\n\n'
                 '{"document": "", "summary": "none"}\n')
    task = Summarization(SummarizationConfig(source_field="document", target_field="summary"))
    ex = task.read(j)
    assert ex[0] == {"id": "a", "source": "long text here", "target": "short", "line": 1} and ex[1]["id"] == "x.jsonl:3"
    assert any("empty source" in w and "x.jsonl:3" in w for w in task.warnings.lines())
    t = tmp_path / "t.tsv"
    t.write_text("to title\t一段很长的摘要文本\t标题\n")
    assert Summarization(SummarizationConfig(source_field=1, target_field=2, header=False)).read(t)[0]["target"] == "标题"
    with pytest.raises(InputError, match=r"x.jsonl:1: no source field 'text'"):
        Summarization(SummarizationConfig(source_field="text")).read(j)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="empty.jsonl: no examples"):
        task.read(tmp_path / "empty.jsonl")
    (tmp_path / "e.en").write_text("")
    (tmp_path / "e.de").write_text("")
    with pytest.raises(InputError, match="no examples"):
        _tr().read(tmp_path / "e")
    with pytest.raises(InputError, match="set finetune.task.source_lang"):
        Translation(TranslationConfig()).read(tmp_path / "nope")


def test_lcsts_blocks_and_selectors(tmp_path):
    f = tmp_path / "PART_III.txt"
    f.write_text("".join(f"<doc id={i}>\n    <human_label>{lab}</human_label>\n    <summary>\n        摘要{i}\n"
                         f"    </summary>\n    <short_text>\n        正文{i}内容\n    </short_text>\n</doc>\n"
                         for i, lab in enumerate([5, 1, 3, 2])), encoding="utf-8")
    task = Summarization(SummarizationConfig())
    assert [(e["id"], e["source"], e["target"]) for e in task.read(f)][0] == ("0", "正文0内容", "摘要0")
    assert [e["id"] for e in task.read(f"{f}#human_label>=3")] == ["0", "2"]
    assert [e["id"] for e in task.read(f"{f}#human_label<3")] == ["1", "3"]
    assert [e["id"] for e in task.read(f"{f}#line>18")] == ["2", "3"]  # docs start on lines 1, 10, 19, 28
    with pytest.raises(InputError, match="keeps no records"):
        task.read(f"{f}#human_label>9")
    assert TranslationConfig(source_lang="en", target_lang="de").data_files(f"{f}#line>3") == [str(f)]
    assert split_selector("a/b.jsonl") == ("a/b.jsonl", None)
    assert split_selector("a/b.jsonl#line<=900") == ("a/b.jsonl", ("line", "<=", "900"))


def test_shared_multi30k_and_lcsts(shared_datasets):
    m30k = shared_datasets / "translation" / "multi30k" / "test_2016_flickr"
    if not m30k.with_suffix(".en").exists():
        pytest.skip("multi30k missing")
    ex = _tr().read(m30k)
    assert len(ex) == 1000 and ex[0]["source"].startswith("A man in an orange hat")
    lcsts = shared_datasets / "summarization" / "lcsts_part3" / "PART_III.txt"
    if lcsts.exists():
        task = Summarization(SummarizationConfig())
        assert len(task.read(f"{lcsts}#human_label>=3")) == 725 and len(task.read(lcsts)) == 1106


# -- encoding, loss, decoding -----------------------------------------------------------------------


def test_labels_end_with_eos_decoder_input_is_shifted_and_loss_counts_targets(tok):
    task = _tr(label_smoothing=0.0, max_source_len=32, max_target_len=32)
    feats = [task.encode({"id": str(i), "source": a, "target": b}, tok) for i, (a, b) in enumerate(PAIRS[:3])]
    assert feats[0]["labels"][-1] == tok.eos_id and feats[0]["labels"][:-1] == tok.encode(PAIRS[0][1])
    assert tok.eos_id not in feats[0]["input_ids"]
    batch = task.collate(feats, tok)
    lab, dec = batch["labels"], batch["decoder_input_ids"]
    assert (dec[:, 0] == tok.bos_id).all() and torch.equal(dec[0, 1:len(feats[0]["labels"])],
                                                           torch.tensor(feats[0]["labels"][:-1]))
    assert (lab == -100).sum() == lab.numel() - sum(len(f["labels"]) for f in feats)
    model = task.build_model(_body(tok), tok)
    loss_sum, n = task.loss(model, batch)
    assert n == task.count(batch) == sum(len(f["labels"]) for f in feats)
    _, mean = model(batch["input_ids"], batch["decoder_input_ids"], lab, attention_mask=batch["attention_mask"])
    assert torch.allclose(loss_sum / n, mean, atol=1e-5)  # summed CE over target tokens = the model's mean
    smoothed, _ = _tr(label_smoothing=0.1, max_source_len=32, max_target_len=32).loss(model, batch)
    assert float(smoothed.detach()) != pytest.approx(float(loss_sum.detach()))


def test_long_source_is_cut_with_a_counted_warning(tok):
    task = _tr(max_source_len=8, max_target_len=6)
    long = " ".join(PAIRS[0][0] for _ in range(10))
    f = task.encode({"id": "x", "source": long, "target": long}, tok)
    task.encode({"id": "y", "source": long, "target": "kurz"}, tok)
    assert len(f["input_ids"]) == 8 and len(f["labels"]) == 6 and f["labels"][-1] == tok.eos_id
    lines = task.warnings.lines()
    assert any(line.startswith("2 × source longer than 8 tokens") and "first at x" in line for line in lines)
    assert any(line.startswith("1 × target longer") for line in lines)


def test_build_model_rejects_other_bodies_and_too_long_limits(tok):
    from lmforge.models.gpt import GPT, GPTConfig

    with pytest.raises(ConfigError, match="needs an encoder-decoder"):
        _tr().build_model(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, d_model=16)), tok)
    with pytest.raises(ConfigError, match="max_source_len=256 exceeds the model's block_size=32"):
        _tr().build_model(_body(tok), tok)


def test_predict_greedy_matches_generate_and_beam_runs(tok):
    task = _tr(max_source_len=32, max_target_len=12, num_beams=1)
    model = task.build_model(_body(tok), tok).eval()
    feats = [task.encode({"id": str(i), "source": a, "target": b}, tok) for i, (a, b) in enumerate(PAIRS[:4])]
    batch = task.collate(feats, tok)
    preds = task.predict(model, batch, tok, feats)
    for i, f in enumerate(feats):  # batched, padded decoding = each source alone
        from lmforge.models.generate import SamplingConfig

        ids = model.generate(torch.tensor([f["input_ids"]]), SamplingConfig(max_new_tokens=12, temperature=0,
                                                                            top_k=None))[0]
        assert preds[i]["prediction"] == tok.decode(ids, skip_special_tokens=True).strip()
    beam = _tr(max_source_len=32, max_target_len=12, num_beams=3).predict(model, batch, tok, feats)
    assert len(beam) == 4 and all(isinstance(p["prediction"], str) for p in beam)


# -- metrics --------------------------------------------------------------------------------------


def _examples(refs):
    return [{"id": str(i), "source": "s", "target": r} for i, r in enumerate(refs)]


def test_translation_metrics_match_sacrebleu_and_fast_bootstrap():
    import sacrebleu

    refs = [b for _, b in PAIRS]
    hyps = ["die katze sitzt auf der matte", "der hund läuft im park", "ein vogel singt", "der mann isst einen apfel",
            "eine frau liest ein buch", "das kind spielt ball", "ein pferd springt über den zaun", "die sonne"]
    task = _tr()
    preds = [{"prediction": h} for h in hyps]
    m = task.metrics(preds, _examples(refs))
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "tok:13a" in m["bleu_signature"] and m["lengths"]["n"] == 8
    rng = np.random.default_rng(0)
    idx = [np.arange(8), rng.integers(0, 8, 8), rng.integers(0, 8, 8)]
    fast = task.subset_scores(preds, _examples(refs), idx)
    slow = Translation.__mro__[1].subset_scores(task, preds, _examples(refs), idx)  # the base: recompute each
    assert fast["bleu"] == pytest.approx(slow["bleu"]) and fast["chrf"] == pytest.approx(slow["chrf"])
    assert fast["bleu"][0] == pytest.approx(m["bleu"])


def test_fast_bleu_bootstrap_equals_sacrebleu_on_the_multi30k_test_set(shared_datasets):
    import sacrebleu

    prefix = shared_datasets / "translation" / "multi30k" / "test_2016_flickr"
    if not prefix.with_suffix(".de").exists():
        pytest.skip("multi30k missing")
    ex = _tr().read(prefix)
    refs = [e["target"] for e in ex]
    hyps = [" ".join(r.split()[::2]) if i % 3 else r.lower() for i, r in enumerate(refs)]  # varied quality
    preds = [{"prediction": h} for h in hyps]
    idx = [np.arange(len(ex)), np.random.default_rng(1).integers(0, len(ex), len(ex))]
    fast = _tr().subset_scores(preds, ex, idx)
    for k, sel in enumerate(idx):
        h, r = [hyps[i] for i in sel], [refs[i] for i in sel]
        assert fast["bleu"][k] == pytest.approx(sacrebleu.corpus_bleu(h, [r]).score, abs=1e-9)
        assert fast["chrf"][k] == pytest.approx(sacrebleu.corpus_chrf(h, [r]).score, abs=1e-9)


def test_chinese_targets_use_the_zh_tokenizer():
    import sacrebleu

    refs, hyps = ["今天天气很好", "我们去公园散步"], ["今天天气不错", "我们去公园"]
    m = Translation(TranslationConfig(target_lang="zh")).metrics([{"prediction": h} for h in hyps], _examples(refs))
    assert m["tokenize"] == "zh" and m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score)
    assert m["bleu"] > 0


def test_summarization_rouge_matches_rouge_score_on_english_and_scores_chinese():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    refs = ["the cat sat on the mat today", "police arrested two men after the robbery"]
    hyps = ["a cat was sitting on the mat", "two men were arrested by police"]
    task = Summarization(SummarizationConfig(target_lang="en"))
    preds = [{"prediction": h} for h in hyps]
    m = task.metrics(preds, _examples(refs))
    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    ref_scores = [sc.score(r, h) for r, h in zip(refs, hyps)]
    for k in ("rouge1", "rouge2", "rougeL"):
        assert m[k] == pytest.approx(100 * np.mean([s[k].fmeasure for s in ref_scores]))
    full = task.subset_scores(preds, _examples(refs), [np.arange(2)])
    assert full["rouge1"][0] == pytest.approx(m["rouge1"])
    zh = Summarization(SummarizationConfig())
    zm = zh.metrics([{"prediction": "雅虎宣布剥离阿里股份"}], _examples(["雅虎宣布剥离阿里巴巴股份"]))
    assert zm["rouge1"] > 80 and zm["lengths"]["ref_mean"] == 12  # characters, not one "word"
    assert sc.score("雅虎宣布剥离阿里巴巴股份", "雅虎宣布剥离阿里股份")["rouge1"].fmeasure == 0  # why we have our own


# -- end to end -------------------------------------------------------------------------------------


def test_from_zero_end_to_end_and_evaluate_cli(tmp_path, tok):
    from lmforge.cli import main
    from lmforge.tasks.stage import FinetuneConfig, run

    prefix = _write_aligned(tmp_path)
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "translation", "source_lang": "en", "target_lang": "de", "max_source_len": 16,
                 "max_target_len": 16, "num_beams": 2, "label_smoothing": 0.0},
        "data": {"train": str(prefix), "val": str(prefix)},
        "model": {"family": "seq2seq", "block_size": 16, "n_encoder_layer": 1, "n_decoder_layer": 1, "n_head": 2,
                  "d_model": 32},
        "train": {"max_steps": 60, "batch_size": 8, "lr": 1e-2, "warmup_steps": 5, "eval_every": 60,
                  "metric_for_best": "val_bleu"}})
    result = run(cfg, None, tmp_path / "ft", progress=False, tokenizer_dir=tok.dir)
    assert "val_bleu" in result.metrics["pretrained"]
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    task_json = json.loads((model_dir / "task.json").read_text())
    assert task_json["kind"] == "translation" and task_json["state"]["block_size"] == 16
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(prefix), "--output", str(out),
                 "--bootstrap", "200"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 8 and m["task"] == "translation" and {"bleu", "chrf"} <= set(m)
    assert m["bleu"] > 50, m  # eight pairs memorised by a 1-layer model in 60 steps
    assert m["ci"]["bleu"][0] <= m["bleu"] <= m["ci"]["bleu"][1]
    assert m["details"]["bleu_signature"].startswith("nrefs:1") and m["details"]["lengths"]["ref_mean"] > 4
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]) == {"id", "reference", "prediction"}
    # bad input through the CLI is one clear line, not a traceback
    (tmp_path / "bad.de").write_text("nur eine zeile\n")
    (tmp_path / "bad.en").write_text("one\ntwo\n")
    assert main(["evaluate", "--model", str(model_dir), "--data", str(tmp_path / "bad")]) != 0
