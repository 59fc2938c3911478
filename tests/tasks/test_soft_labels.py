"""Training on probabilistic (weak) labels: rows as `lmforge label weak --labels probs` writes them."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import InputError
from lmforge.tasks.classification import Classification, ClassificationConfig

from tests.tasks.test_classification import _tiny_body


def _task(tmp_path, rows, **cfg):
    path = tmp_path / "weak.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = Classification(ClassificationConfig(soft_labels=True, **cfg))
    return task, task.read(path), path


def test_one_hot_probs_give_the_hard_loss_and_soft_ones_differ(tmp_path):
    from lmforge.tokenizer import Tok

    task, ex, _ = _task(tmp_path, [{"text": "good", "label": "pos", "probs": {"pos": 1.0, "neg": 0.0}},
                                   {"text": "bad", "label": "neg", "probs": {"pos": 0.0, "neg": 1.0}},
                                   {"text": "fine", "label": "pos"}])  # no probs: its hard label, one-hot
    task.fit(ex)
    body = _tiny_body(tmp_path)
    tok = Tok.load(body)
    feats = [task.encode(e, tok) for e in ex]
    batch = task.collate(feats, tok)
    assert batch["soft"].tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]  # labels sorted: neg, pos
    from lmforge.models.io import load_model

    model = task.build_model(load_model(body), tok)
    for m in model.modules():  # no dropout, so train-mode and eval-mode logits agree
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.eval()
    logits, _ = model(batch["input_ids"], batch["attention_mask"])
    ref = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
    model.train()
    soft_loss, n = task.loss(model, batch)
    assert n == 3 and torch.allclose(soft_loss, ref, atol=1e-5)
    batch["soft"] = torch.tensor([[0.3, 0.7], [0.8, 0.2], [0.5, 0.5]])
    assert not torch.allclose(task.loss(model, batch)[0], ref, atol=1e-3)
    model.eval()  # validation scores hard labels
    assert torch.allclose(task.loss(model, batch)[0], ref, atol=1e-5)


def test_finetune_learns_from_weak_probabilities(tmp_path):
    from lmforge.tasks.predict import predict_texts
    from lmforge.tasks.stage import FinetuneConfig, run

    pos, neg = ["good great", "happy fine"], ["sad bad", "awful angry"]
    rows = ([{"text": t, "label": "pos", "probs": {"pos": 0.8, "neg": 0.2}} for t in pos] +
            [{"text": t, "label": "neg", "probs": {"pos": 0.25, "neg": 0.75}} for t in neg]) * 8
    data = tmp_path / "weak.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16, "soft_labels": True},
        "data": {"train": str(data), "val": str(data)},
        "train": {"max_steps": 40, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "eval_every": 40}})
    run(cfg, _tiny_body(tmp_path), tmp_path / "ft", progress=False)
    out = predict_texts(tmp_path / "ft" / "pretrained" / "model", pos + neg)
    assert [p["label"] for p in out] == ["pos", "pos", "neg", "neg"]
    # trained towards 0.8/0.75, not towards certainty
    assert all(p["scores"][p["label"]] < 0.97 for p in out)


@pytest.mark.parametrize("probs, match", [
    ({"pos": 0.7, "neg": 0.7}, "not a distribution"),
    ({"pos": "high"}, "not a number"),
    ([0.5, 0.5], "must be an object"),
])
def test_bad_probabilities_name_the_line(tmp_path, probs, match):
    with pytest.raises(InputError, match=f"weak.jsonl:2: probs.*{match}"):
        _task(tmp_path, [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg", "probs": probs}])
