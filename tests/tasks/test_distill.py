"""Distillation: the teacher's logits reach the student's loss (KL at temperature T, T^2-scaled), a
student distilled from a teacher trains and evaluates, and mismatched teachers are one clear error."""

import json

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
