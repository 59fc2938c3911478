"""The generic fine-tuning loop features: epochs, best checkpoint, checkpointing flag, head rebuilds."""

import json

import torch

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.heads import SequenceClassifier, TokenClassifier
from lmforge.models.io import load_model, rebuild, save_model
from lmforge.tasks.base import TaskObjective
from lmforge.tasks.classification import Classification, ClassificationConfig
from lmforge.train.loop import Trainer
from lmforge.tasks.stage import FinetuneTrainConfig


class _Tok:
    pad_id, family = 0, "gpt"


def _setup(n=24):
    task = Classification(ClassificationConfig())
    task.fit([{"label": "a"}, {"label": "b"}])
    feats = [{"input_ids": [1 + i % 7, 2 + i % 5, 3], "label": i % 2} for i in range(n)]
    val_ex = [{"id": str(i), "text": "", "label": "ab"[i % 2]} for i in range(n)]
    torch.manual_seed(0)
    body = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=16))
    return task, feats, val_ex, SequenceClassifier(body, 2, "mean", 0.0, ["a", "b"])


def test_max_epochs_sets_steps_and_best_checkpoint_is_restored(tmp_path):
    task, feats, val_ex, model = _setup()
    obj = TaskObjective(task, _Tok(), feats, feats, val_ex, batch_size=8, seed=0)
    cfg = FinetuneTrainConfig(max_epochs=4, max_steps=999, batch_size=8, lr=5e-2, warmup_steps=0, eval_every=1,
                              metric_for_best="val_accuracy", gradient_checkpointing=True)
    trainer = Trainer(model, obj, cfg, tmp_path / "run", progress=False)
    assert trainer.cfg.max_steps == 12  # 24 examples / 8 per step * 4 epochs
    assert model.body.gradient_checkpointing  # set on the body, where it acts, not only on the head wrapper
    result = trainer.train()
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    best = max(h["val_accuracy"] for h in history)
    assert result.best_metric == best and summary["best_metric"] == best
    first_best = next(h["step"] for h in history if h["val_accuracy"] == best)
    assert summary["best_step"] == first_best
    # the final model is the best evaluation's weights, not the last step's
    final = load_model(tmp_path / "run" / "model")
    best_saved = load_model(tmp_path / "run" / "best")
    for (k, a), (_, b) in zip(final.state_dict().items(), best_saved.state_dict().items()):
        assert torch.equal(a, b), k
    # val loss and task metric come from one pass over the same examples
    assert {"val_loss", "val_accuracy", "val_macro_f1"} <= set(history[-1])


def test_head_models_rebuild_and_round_trip(tmp_path):
    _, _, _, clf = _setup()
    fresh = rebuild(clf)
    assert type(fresh) is SequenceClassifier and fresh.labels == clf.labels
    tagger = TokenClassifier(clf.body, ["O", "B-PER", "I-PER"], dropout=0.0)
    save_model(tagger, tmp_path / "tagger")
    back = load_model(tmp_path / "tagger")
    assert type(back) is TokenClassifier and back.labels == ["O", "B-PER", "I-PER"]
    x = torch.tensor([[1, 2, 3]])
    m = torch.ones_like(x)
    assert torch.allclose(back.eval()(x, m), tagger.eval()(x, m))
