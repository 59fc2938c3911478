"""Distillation: the teacher's logits reach the student's loss (KL at temperature T, T^2-scaled), a
student distilled from a teacher trains and evaluates, and mismatched teachers are one clear error;
NER rows aligned by word across tokenizers, top-k word-level KD for translation and (packed) chat."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import ConfigError
from lmforge.tasks.distill import distill_loss
from lmforge.tasks.stage import FinetuneConfig, run


def test_distill_loss_matches_the_formula():
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    ce = F.cross_entropy(s, torch.tensor([0, 1, 2, 0, 1]), reduction="sum")
    T, a = 2.0, 0.3
    p_t = F.softmax(t / T, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum()
    assert torch.allclose(distill_loss(s, t, ce, 5, T, a), (1 - a) * ce + a * T * T * kl, atol=1e-5)
    assert torch.allclose(distill_loss(s, s.clone(), ce, 5, T, 1.0), torch.tensor(0.0), atol=1e-5)


def _body(tmp_path):
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.models.io import save_model
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    tok = train_tokenizer(["good great fine happy sad bad awful angry"] * 20,
                          TokenizerConfig(kind="byte_bpe", vocab_size=300, family="gpt"))
    tok.save(tmp_path / "tokfiles")
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, d_model=32)),
               tmp_path / "body", extra_files=sorted((tmp_path / "tokfiles").iterdir()))
    return tmp_path / "body"


def _data(tmp_path, labels=("pos", "neg")):
    rows = [("good great", labels[0]), ("happy fine", labels[0]), ("sad bad", labels[1]), ("awful angry", labels[1])] * 8
    path = tmp_path / f"d-{labels[0]}.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return path


def _cfg(data, **kw):
    return FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16}, "data": {"train": str(data), "val": str(data)},
        "train": {"max_steps": 60, "batch_size": 8, "lr": 2e-2, "warmup_steps": 2, "eval_every": 30}, **kw})


def test_student_learns_from_the_teacher_and_bad_teachers_are_refused(tmp_path, monkeypatch):
    body = _body(tmp_path)
    data = _data(tmp_path)
    run(_cfg(data), body, tmp_path / "teacher", progress=False)
    teacher = tmp_path / "teacher" / "pretrained" / "model"
    seen = []
    import lmforge.tasks.distill as d

    real = d.distill_loss
    monkeypatch.setattr(d, "distill_loss", lambda *a: seen.append(a[1].shape) or real(*a))
    result = run(_cfg(data, distill={"teacher": str(teacher), "temperature": 2.0, "alpha": 0.7}), body,
                 tmp_path / "student", progress=False)
    info = result.metrics["distill"]
    assert info["teacher_train_accuracy"] >= 0.9 and info["alpha"] == 0.7
    assert seen and all(s[1] == 2 for s in seen)  # every training step saw the teacher's 2 logits
    assert result.metrics["pretrained"]["val_accuracy"] >= 0.9
    # a teacher with another label set, or of another task: one clear message each
    other = _data(tmp_path, labels=("yes", "no"))
    with pytest.raises(ConfigError, match="teacher's labels"):
        run(_cfg(other, distill={"teacher": str(teacher)}), body, tmp_path / "s2", progress=False)
    with pytest.raises(ConfigError, match="not a fine-tuned task model"):
        run(_cfg(data, distill={"teacher": str(body)}), body, tmp_path / "s3", progress=False)


# -- NER: per-word KD across tokenizers ----------------------------------------------------------

PEOPLE, PLACES, OTHER = ["anna", "bert", "carl"], ["paris", "rome", "oslo"], ["saw", "met", "in", "and", "today"]


def _bert_body(tmp_path, name: str, vocab_size: int):
    from lmforge.models.bert import BERT, BertConfig
    from lmforge.models.io import save_model
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    tok = train_tokenizer([" ".join(PEOPLE + PLACES + OTHER + ["new"])] * 20,
                          TokenizerConfig(kind="wordpiece", vocab_size=vocab_size, family="bert"))
    tok.save(tmp_path / f"{name}-tok")
    torch.manual_seed(0)
    body = BERT(BertConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, d_model=32, dropout=0.0))
    save_model(body, tmp_path / name, extra_files=sorted((tmp_path / f"{name}-tok").iterdir()))
    return tmp_path / name


def _ner_data(path, types=("PER", "LOC")):
    import random

    rng = random.Random(0)
    lines = []
    for _ in range(24):
        sent = [(rng.choice(PEOPLE), f"B-{types[0]}"), (rng.choice(OTHER), "O"), (rng.choice(PLACES), f"B-{types[1]}"),
                ("new", f"I-{types[1]}"), (rng.choice(OTHER), "O")]
        lines.append("\n".join(f"{w}\t{t}" for w, t in sent) + "\n")
    path.write_text("\n".join(lines))
    return path


def _ner_cfg(data, max_len=16, steps=30, **kw):
    return FinetuneConfig.model_validate({
        "task": {"kind": "ner", "max_len": max_len, "dropout": 0.0}, "data": {"train": str(data), "val": str(data)},
        "train": {"max_steps": steps, "batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "eval_every": steps}, **kw})


@pytest.fixture(scope="module")
def ner_teacher(tmp_path_factory):
    """A NER teacher with a smaller wordpiece vocabulary (words split into more pieces) and max_len 8,
    so it cuts the last words of every 5-word sentence; a student body with another vocabulary."""
    tmp = tmp_path_factory.mktemp("ner")
    data = _ner_data(tmp / "toy.bio")
    run(_ner_cfg(data, max_len=8), _bert_body(tmp, "tbody", 45), tmp / "teacher", progress=False)
    return tmp / "teacher" / "pretrained" / "model", data, _bert_body(tmp, "sbody", 200)


def test_ner_teacher_rows_follow_words_across_tokenizers(ner_teacher):
    from lmforge.tasks.distill import DistillSettings, attach_teacher_logits
    from lmforge.tasks.ner import NER, NERConfig
    from lmforge.tasks.stage import load_task_model
    from lmforge.tokenizer import Tok

    teacher, data, sbody = ner_teacher
    task, stok = NER(NERConfig(max_len=16)), Tok.load(sbody)
    ex = task.read(data)
    task.fit(ex)
    feats = [task.encode(e, stok) for e in ex]
    info = attach_teacher_logits(DistillSettings(teacher=str(teacher), batch_size=5), task, ex, feats,
                                 progress=False, tok=stok)
    tteacher, model, ttok = load_task_model(teacher)
    assert ttok.vocab_size != stok.vocab_size
    pieces_differ = False
    for e, f in zip(ex, feats):
        tf = tteacher.encode(e, ttok)  # the teacher alone, one sentence: its logits at each word's first piece
        with torch.no_grad():
            em = model(torch.tensor([tf["input_ids"]]), torch.ones(1, len(tf["input_ids"]), dtype=torch.long))[0]
        rows = {w: em[p] for w, p in zip(tf["words"], tf["first"])}
        pieces_differ |= tf["first"] != f["first"]
        assert len(f["words"]) == 5 and len(rows) < 5  # the student keeps every word, the teacher cut some
        for k, w in enumerate(f["words"]):
            assert f["teacher_mask"][k] == (w in rows)
            if w in rows:
                assert torch.allclose(torch.tensor(f["teacher"][k]), rows[w], atol=1e-4)
    assert pieces_differ  # the alignment is by word, not by sub-token position
    assert 0 < info["teacher_coverage"] < 1 and 0 <= info["teacher_train_token_accuracy"] <= 1


@pytest.mark.parametrize("crf", [False, True])
def test_ner_kd_term_is_zero_for_the_teachers_own_logits_and_matches_the_formula(ner_teacher, crf):
    from lmforge.models.bert import BERT, BertConfig
    from lmforge.tasks.ner import NER, NERConfig
    from lmforge.tokenizer import Tok

    _, data, sbody = ner_teacher
    task, tok = NER(NERConfig(max_len=16, dropout=0.0, crf=crf)), Tok.load(sbody)
    ex = task.read(data)[:4]
    task.fit(ex)
    feats = [task.encode(e, tok) for e in ex]
    torch.manual_seed(0)
    model = task.build_model(BERT(BertConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2,
                                             d_model=32, dropout=0.0)), tok).train()
    plain, count = task.loss(model, task.collate(feats, tok))
    with torch.no_grad():
        words = task._word_emissions(model, task.collate(feats, tok))[1]
    for b, f in enumerate(feats):
        f["teacher"], f["teacher_mask"] = words[b, : len(f["words"])].tolist(), [1] * len(f["words"])
    task.distill = (2.0, 1.0)
    kd_only, n = task.loss(model, task.collate(feats, tok))
    assert n == count and abs(float(kd_only.detach())) < 1e-4
    # another teacher, one word without a teacher row: 0.5 * task loss + 0.5 * T^2 * KL, rescaled to the count
    torch.manual_seed(1)
    for f in feats:
        f["teacher"] = torch.randn(len(f["words"]), len(task.labels)).tolist()
    feats[0]["teacher_mask"][2] = 0
    task.distill = (2.0, 0.5)
    mixed, _ = task.loss(model, task.collate(feats, tok))
    kl, rows = 0.0, 0
    for b, f in enumerate(feats):
        for k in range(len(f["words"])):
            if f["teacher_mask"][k] and f["word_labels"][k] != -100:
                p_t = F.softmax(torch.tensor(f["teacher"][k]) / 2, -1)
                kl += float((p_t * (p_t.log() - F.log_softmax(words[b, k] / 2, -1))).sum())
                rows += 1
    assert rows == count - 1
    assert abs(float(mixed.detach()) - (0.5 * float(plain.detach()) + 0.5 * 4 * kl * count / rows)) < 1e-3


def test_ner_student_trains_with_the_teacher_and_other_labels_are_refused(ner_teacher, tmp_path, monkeypatch):
    import lmforge.tasks.distill as d

    teacher, data, sbody = ner_teacher
    seen = []
    real = d.distill_loss
    monkeypatch.setattr(d, "distill_loss", lambda *a: seen.append((a[1].shape, torch.is_grad_enabled())) or real(*a))
    result = run(_ner_cfg(data, steps=20, distill={"teacher": str(teacher), "alpha": 0.5}), sbody,
                 tmp_path / "student", progress=False)
    info = result.metrics["distill"]
    assert info["teacher"] == str(teacher) and info["alpha"] == 0.5 and info["temperature"] == 2.0
    assert 0 < info["teacher_coverage"] < 1 and "teacher_train_token_accuracy" in info
    assert seen and all(shape[1] == 5 and grad for shape, grad in seen)  # 5 labels; training steps only
    assert "val_entity_f1" in result.metrics["pretrained"]
    other = _ner_data(tmp_path / "org.bio", types=("PER", "ORG"))
    with pytest.raises(ConfigError, match=r"teacher's labels \['O', 'B-LOC'.*student's \['O', 'B-ORG'"):
        run(_ner_cfg(other, distill={"teacher": str(teacher)}), sbody, tmp_path / "s2", progress=False)


def test_unsupported_tasks_name_the_supported_ones(tmp_path):
    from lmforge.tasks.base import task_from_config
    from lmforge.tasks.classification import ClassificationConfig
    from lmforge.tasks.distill import DistillSettings, attach_teacher_logits
    from lmforge.tasks.qa import QAConfig

    for cfg, what in ((QAConfig(), "qa"), (ClassificationConfig(multi_label=True), "multi-label classification")):
        with pytest.raises(ConfigError, match=f"not available for the {what} task.*supports single-label "
                                              "classification, ner, translation, summarization and chat"):
            attach_teacher_logits(DistillSettings(teacher=str(tmp_path)), task_from_config(cfg), [], [], False)


# -- sequence tasks: top-k word-level KD ---------------------------------------------------------


def test_topk_distill_loss_matches_a_hand_computation():
    from lmforge.tasks.distill import topk_distill_loss

    torch.manual_seed(0)
    N, V, k, T, a = 4, 10, 3, 2.0, 0.3
    student = torch.randn(N, V)
    ids = torch.stack([torch.randperm(V)[:k] for _ in range(N)])
    logp = torch.stack([F.log_softmax(torch.randn(V) / T, -1)[i] for i in ids])
    ce = torch.tensor(5.0)
    kd = 0.0
    for i in range(N):
        q = logp[i].exp() / logp[i].exp().sum()  # the teacher's top-k, renormalised
        s = F.log_softmax(student[i] / T, -1)
        kd += -sum(float(q[j]) * float(s[ids[i, j]]) for j in range(k))
    want = (1 - a) * 5.0 + a * T * T * kd * (6 / N)  # 6 target tokens, 4 of them with a teacher row
    assert abs(float(topk_distill_loss(student, ids, logp, ce, 6, T, a)) - want) < 1e-4


CHAT_TEXT = ("Hello there! How are you today? I am fine, thank you. What is the weather like? It is sunny. "
             "Tell me a story. Once upon a time a cat sat on a mat.") * 4
CONVS = [[{"role": "user", "content": q}, {"role": "assistant", "content": r}]
         for q, r in [("Hello there!", "How are you today?"), ("What is the weather like?", "It is sunny."),
                      ("Tell me a story.", "Once upon a time a cat sat on a mat.")]]


def _gpt_tok(vocab_size=320):
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    return train_tokenizer(CHAT_TEXT.split(". "), TokenizerConfig(kind="byte_bpe", vocab_size=vocab_size, family="gpt"))


def test_packed_chat_rows_carry_each_conversations_teacher_rows():
    """A packed row's KD term is that of its conversations one by one: the teacher rows follow their tokens."""
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.tasks.chat import Chat, ChatConfig

    tok = _gpt_tok()
    task = Chat(ChatConfig(template="chatml", max_len=160, packing=True))
    ctok = task.prepare_tokenizer(tok)
    torch.manual_seed(0)
    model = task.build_model(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=160, n_layer=1, n_head=2,
                                           d_model=32)), ctok).train()
    feats = [task.encode({"id": str(i), "messages": c}, ctok) for i, c in enumerate(CONVS)]
    g = torch.Generator().manual_seed(0)
    for j, f in enumerate(feats):
        m = sum(y != -100 for y in f["labels"]) - (2 if j == 1 else 0)  # the 2nd: no teacher for its last 2 tokens
        f["teacher_ids"] = torch.randint(0, ctok.vocab_size, (m, 4), generator=g).numpy()
        f["teacher_logp"] = torch.randn(m, 4, generator=g).log_softmax(-1).numpy()
    task.distill = (2.0, 1.0)
    packed = task.collate(feats, ctok)
    assert packed["input_ids"].shape[0] == 1 and packed["teacher_mask"].sum() == packed["teacher_mask"].numel() - 2
    loss_packed, count = task.loss(model, packed)
    # each conversation alone (unpacked), its teacher rows against its own first logits, summed
    from lmforge.tasks.distill import topk_distill_loss

    task.cfg.packing = False
    kd = 0.0
    for f in feats:
        b = task.collate([f], ctok)
        rows = model(b["input_ids"])[0][b["labels"] != -100][: len(f["teacher_ids"])]
        kd += float(topk_distill_loss(rows.detach(), torch.from_numpy(f["teacher_ids"]), torch.from_numpy(f["teacher_logp"]),
                                      torch.tensor(0.0), len(rows), 2.0, 1.0))
    n_rows = sum(len(f["teacher_ids"]) for f in feats)
    assert count == n_rows + 2 and abs(float(loss_packed.detach()) - kd * count / n_rows) < 1e-4 * kd


PAIRS = [("the cat sits on the mat", "die katze sitzt auf der matte"),
         ("the dog runs in the park", "der hund rennt im park"),
         ("a bird sings in the tree", "ein vogel singt im baum"),
         ("the man eats a red apple", "der mann isst einen roten apfel"),
         ("a woman reads a long book", "eine frau liest ein langes buch"),
         ("the child plays with a ball", "das kind spielt mit einem ball")]


def _seq_tok(tmp_path, name: str, vocab_size: int):
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    tok = train_tokenizer(iter([t for p in PAIRS for t in p]),
                          TokenizerConfig(kind="byte_bpe", vocab_size=vocab_size, family="seq2seq", min_frequency=1))
    tok.save(tmp_path / name)
    return tmp_path / name


def _tr_cfg(data, steps, d_model=32, **kw):
    return FinetuneConfig.model_validate({
        "task": {"kind": "translation", "source_lang": "en", "target_lang": "de", "max_source_len": 16,
                 "max_target_len": 16, "num_beams": 1, "label_smoothing": 0.0},
        "data": {"train": str(data), "val": str(data)},
        "model": {"family": "seq2seq", "block_size": 16, "n_encoder_layer": 1, "n_decoder_layer": 1, "n_head": 2,
                  "d_model": d_model},
        "train": {"max_steps": steps, "batch_size": 6, "lr": 1e-2, "warmup_steps": 5, "eval_every": steps}, **kw})


def test_translation_student_distils_top_k_and_needs_the_teachers_tokenizer(tmp_path, monkeypatch):
    import lmforge.tasks.distill as d

    (tmp_path / "d.en").write_text("".join(a + "\n" for a, _ in PAIRS))
    (tmp_path / "d.de").write_text("".join(b + "\n" for _, b in PAIRS))
    data, tok = tmp_path / "d", _seq_tok(tmp_path, "tok", 320)
    run(_tr_cfg(data, 60), None, tmp_path / "teacher", progress=False, tokenizer_dir=tok)
    teacher = tmp_path / "teacher" / "pretrained" / "model"
    seen = []
    real = d.topk_distill_loss
    monkeypatch.setattr(d, "topk_distill_loss",
                        lambda *a: seen.append((a[1].shape, torch.is_grad_enabled())) or real(*a))
    distill = {"teacher": str(teacher), "temperature": 2.0, "alpha": 0.7, "top_k": 8}
    result = run(_tr_cfg(data, 60, d_model=16, distill=distill), None, tmp_path / "student", progress=False,
                 tokenizer_dir=tok)
    info = result.metrics["distill"]
    assert {k: info[k] for k in ("teacher", "temperature", "alpha", "top_k")} == distill
    assert info["teacher_coverage"] == 1.0 and info["teacher_train_token_accuracy"] > 0.9  # it memorised the pairs
    assert seen and all(shape[1] == 8 and grad for shape, grad in seen)  # top-8 rows, in training steps only
    assert "val_bleu" in result.metrics["pretrained"] and result.metrics["pretrained"]["val_loss"] < 2.0
    # a student on another tokenizer: token ids would mean other tokens
    other = _seq_tok(tmp_path, "tok2", 280)
    with pytest.raises(ConfigError, match="same tokenizer.*train the student with the teacher's tokenizer"):
        run(_tr_cfg(data, 5, distill={"teacher": str(teacher)}), None, tmp_path / "s2", progress=False,
            tokenizer_dir=other)


def test_packed_chat_student_distils_from_an_unpacked_teacher(tmp_path, monkeypatch):
    import lmforge.tasks.distill as d
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.models.io import save_model

    tok = _gpt_tok()
    tok.save(tmp_path / "tokfiles")
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, d_model=32)),
               tmp_path / "body", extra_files=sorted((tmp_path / "tokfiles").iterdir()))
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CONVS * 4))

    def cfg(packing, **kw):
        return FinetuneConfig.model_validate({
            "task": {"kind": "chat", "max_len": 64, "packing": packing, "generate": False},
            "data": {"train": str(data), "val": str(data)},
            "train": {"max_steps": 20, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "eval_every": 20}, **kw})

    run(cfg(False), tmp_path / "body", tmp_path / "teacher", progress=False)
    teacher = tmp_path / "teacher" / "pretrained" / "model"
    seen = []
    real = d.topk_distill_loss
    monkeypatch.setattr(d, "topk_distill_loss", lambda *a: seen.append(a[1].shape) or real(*a))
    result = run(cfg(True, distill={"teacher": str(teacher), "alpha": 0.5, "top_k": 4}), tmp_path / "body",
                 tmp_path / "student", progress=False)
    info = result.metrics["distill"]
    assert info["top_k"] == 4 and info["teacher_coverage"] == 1.0 and info["teacher_train_token_accuracy"] > 0.3
    assert len(seen) == 20 and all(s[0] > 0 and s[1] == 4 for s in seen)  # every step: top-4 rows of its tokens
    assert result.metrics["pretrained"]["val_loss"] < math.log(tok.vocab_size)
