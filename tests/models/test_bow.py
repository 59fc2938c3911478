"""The bow body: shapes, what mean pooling computes, vectors loading (rows, coverage, freezing),
save/load, errors, and a from-zero fine-tune through the generic stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.models.bow import Bow, BowConfig, build_from_recipe, vocabulary
from lmforge.models.heads import SequenceClassifier

WORDS = "good great fine happy sad bad awful angry movie plot the a".split()


@pytest.fixture
def tok():
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    return train_tokenizer([" ".join(WORDS)] * 20, TokenizerConfig(kind="wordpiece", vocab_size=200, family="bert",
                                                          min_frequency=1))


def _vectors_file(tmp_path, words, dim=6):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(words), dim)).astype(np.float32)
    path = tmp_path / "vec.txt"
    path.write_text(f"{len(words)} {dim}\n" + "".join(w + " " + " ".join(f"{x:.6f}" for x in v) + "\n"
                                                       for w, v in zip(words, vecs)))
    return path, dict(zip(words, vecs))


def test_shapes_width_and_padding_row():
    body = Bow(BowConfig(vocab_size=50, d_model=8, n_layer=2, mlp_hidden=12, pad_token_id=0)).eval()
    h = body.hidden_states(torch.randint(1, 50, (3, 7)))
    assert h.shape == (3, 7, 12) and body.output_dim == 12 and (h >= 0).all()  # ReLU outputs
    assert torch.all(body.embed.weight[0] == 0)
    assert Bow(BowConfig(vocab_size=50, d_model=8, n_layer=0)).output_dim == 8
    assert Bow(BowConfig(vocab_size=50, d_model=8, n_layer=1)).output_dim == 16  # default 2 x d_model


def test_no_dense_layers_is_average_embedding_then_linear():
    torch.manual_seed(0)
    body = Bow(BowConfig(vocab_size=30, d_model=5, n_layer=0, pad_token_id=0))
    model = SequenceClassifier(body, 3, "mean", 0.0).eval()
    ids = torch.tensor([[4, 7, 9, 0, 0], [3, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    logits, _ = model(ids, mask)
    E = body.embed.weight
    expect = torch.stack([E[[4, 7, 9]].mean(0), E[[3, 3]].mean(0)]) @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(logits, expect)
    # padding never changes a prediction
    longer = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(model(longer, (longer != 0).long())[0], logits)


def test_build_from_recipe_loads_vectors_reports_coverage_and_freezes(tmp_path, tok, capsys):
    path, table = _vectors_file(tmp_path, ["good", "bad", "movie", "zebra"])
    fields = {"vocab_size": tok.vocab_size, "block_size": 32, "n_layer": 1, "d_model": 384, "mlp_hidden": 16,
              "dropout": 0.0, "vectors": str(path), "freeze_embeddings": True}
    body = build_from_recipe(fields, tok)
    assert body.config.d_model == 6  # the vectors decide the width
    vocab = vocabulary(tok)
    for w in ("good", "bad", "movie"):
        np.testing.assert_allclose(body.embed.weight[vocab.index(w)].detach().numpy(), table[w], atol=1e-6)
    assert torch.all(body.embed.weight[tok.pad_id] == 0)
    assert body.vectors_coverage == pytest.approx(3 / len(vocab))
    assert "covers" in capsys.readouterr().err
    assert not body.embed.weight.requires_grad and body.dense[0].weight.requires_grad
    tuned = build_from_recipe({**fields, "freeze_embeddings": False}, tok)
    assert tuned.embed.weight.requires_grad


def test_errors_name_the_key(tmp_path, tok):
    base = {"vocab_size": tok.vocab_size, "d_model": 8}
    with pytest.raises(ConfigError, match="freeze_embeddings"):
        build_from_recipe({**base, "freeze_embeddings": True}, tok)
    with pytest.raises(InputError, match="model.vectors.*not found"):
        build_from_recipe({**base, "vectors": str(tmp_path / "missing")}, tok)


def test_save_and_load_round_trip(tmp_path):
    from lmforge.models.io import load_model, save_model

    torch.manual_seed(0)
    body = Bow(BowConfig(vocab_size=40, d_model=6, n_layer=1, mlp_hidden=10, pad_token_id=0,
                         vectors="some/file.txt", freeze_embeddings=True))
    model = SequenceClassifier(body, 2, "mean", 0.1, ["neg", "pos"]).eval()
    save_model(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["body"]["model_type"] == "bow"
    back = load_model(tmp_path / "m").eval()  # weights from safetensors; the vectors file is never read
    ids = torch.tensor([[5, 6, 7, 0]])
    torch.testing.assert_close(back(ids, (ids != 0).long())[0], model(ids, (ids != 0).long())[0])


def test_finetune_from_zero_with_vectors_learns_keywords(tmp_path, tok):
    from lmforge.tasks.stage import FinetuneConfig, run

    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        y = i % 2
        filler = list(rng.choice(["the", "a", "movie", "plot"], size=4))
        filler.insert(int(rng.integers(0, 5)), str(rng.choice(["good", "great", "happy"] if y else ["bad", "awful", "sad"])))
        rows.append({"text": " ".join(filler), "label": "pos" if y else "neg"})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok_dir = tmp_path / "tok"
    tok.save(tok_dir)
    path, _ = _vectors_file(tmp_path, WORDS, dim=16)
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16, "pooling": "mean", "dropout": 0.0},
        "model": {"family": "bow", "n_layer": 1, "mlp_hidden": 32, "dropout": 0.0, "vectors": str(path)},
        "data": {"train": str(data), "val": str(data)},
        "train": {"max_steps": 60, "batch_size": 16, "lr": 1e-2, "warmup_steps": 2, "eval_every": 30,
                  "metric_for_best": "val_accuracy"}})
    result = run(cfg, None, tmp_path / "ft", progress=False, tokenizer_dir=tok_dir)
    assert result.metrics["labels"] == ["neg", "pos"]
    from lmforge.tasks.stage import encode_all, load_task_model, predict_features

    task, model, tok2 = load_task_model(tmp_path / "ft" / "pretrained" / "model")
    feats = encode_all(task, [{"id": str(i), **r} for i, r in enumerate(rows)], tok2)
    preds = predict_features(task, model, tok2, feats)
    acc = np.mean([p["label"] == r["label"] for p, r in zip(preds, rows)])
    assert acc > 0.95, acc
