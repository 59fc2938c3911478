"""finetune.peft through the stage and the CLI: adapter-only model directories that evaluate, predict and merge."""

import json

import pytest
import torch

from lmforge.cli import main
from lmforge.tasks.stage import FinetuneConfig, run

pytest.importorskip("peft")


def _tiny_body(tmp_path):
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.models.io import save_model
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("good great fine happy sad bad awful angry\n" * 20)
    tok = train_tokenizer(corpus.read_text().splitlines(), TokenizerConfig(kind="byte_bpe", vocab_size=300, family="gpt"))
    tok.save(tmp_path / "tokfiles")
    torch.manual_seed(0)
    body = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, d_model=32))
    save_model(body, tmp_path / "body", extra_files=sorted((tmp_path / "tokfiles").iterdir()))
    return tmp_path / "body"


def _data(tmp_path):
    rows = [("good great", "pos"), ("happy fine", "pos"), ("sad bad", "neg"), ("awful angry", "neg")] * 8
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return data, len(rows)


def test_lora_finetune_saves_only_the_adapter_and_evaluates_predicts_merges(tmp_path):
    body_dir = _tiny_body(tmp_path)
    data, n = _data(tmp_path)
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16},
        "data": {"train": str(data), "val": str(data), "test": str(data)},
        "compare_random_init": True,
        "peft": {"method": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target": "all-linear"},
        "train": {"max_steps": 40, "batch_size": 8, "lr": 2e-2, "warmup_steps": 2, "eval_every": 20,
                  "metric_for_best": "val_accuracy"}})
    result = run(cfg, body_dir, tmp_path / "ft", progress=False)
    info = result.metrics["pretrained"]["peft"]
    assert info["adapted_modules"] == 2 * 5 and info["trainable_share"] < 0.5
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    assert (model_dir / "adapter.safetensors").exists() and not (model_dir / "model.safetensors").exists()
    spec = json.loads((model_dir / "adapter_config.json").read_text())
    assert (model_dir / spec["base"]["spec"]).resolve() == body_dir.resolve()
    # the random-init variant has no base on disk: it is written once beside the adapter
    rnd = json.loads((tmp_path / "ft" / "random" / "model" / "adapter_config.json").read_text())
    assert rnd["base"]["spec"] == "../base" and (tmp_path / "ft" / "random" / "base" / "model.safetensors").exists()
    # the adapter learned the task on a frozen base
    assert result.metrics["pretrained"]["val_accuracy"] >= 0.9, result.metrics

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(out),
                 "--bootstrap", "100"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == n and m["accuracy"] >= 0.9
    assert main(["peft", "merge", str(model_dir), "--output", str(tmp_path / "merged")]) == 0
    merged = tmp_path / "merged"
    assert (merged / "model.safetensors").exists() and not (merged / "adapter_config.json").exists()
    assert (merged / "task.json").exists() and (merged / "tokenizer.json").exists()
    out2 = tmp_path / "eval-merged"
    assert main(["evaluate", "--model", str(merged), "--data", str(data), "--output", str(out2),
                 "--bootstrap", "100"]) == 0
    p1 = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    p2 = [json.loads(x) for x in (out2 / "predictions.jsonl").read_text().splitlines()]
    assert [p["label"] for p in p1] == [p["label"] for p in p2]
    for a, b in zip(p1, p2):
        for k in a["scores"]:
            assert abs(a["scores"][k] - b["scores"][k]) < 1e-4
    # not an adapted model: one clear message, exit code 2
    assert main(["peft", "merge", str(merged), "--output", str(tmp_path / "again")]) == 2
    # a classifier head has no transformers layout here: merged, then one clear message, exit code 2
    assert main(["peft", "merge", str(model_dir), "--output", str(tmp_path / "m2"), "--hf", str(tmp_path / "h")]) == 2


@pytest.mark.parametrize("peft,lr", [({"method": "adalora", "r": 2, "init_r": 4, "delta_t": 2}, 2e-2),
                                     ({"method": "bottleneck", "placement": "houlsby", "bottleneck_size": 8}, 1e-3),
                                     ({"method": "prefix_tuning", "num_virtual_tokens": 4}, 2e-2)],
                         ids=["adalora", "bottleneck", "prefix"])
def test_other_methods_learn_the_task_through_the_stage(tmp_path, peft, lr):
    """The trainer drives each method as it needs (AdaLoRA: rank schedule, penalty, pruning) and the
    adapter-only directory evaluates to what training saw."""
    body_dir = _tiny_body(tmp_path)
    data, _ = _data(tmp_path)
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16}, "data": {"train": str(data), "val": str(data)},
        "peft": {**peft, "dropout": 0.0},  # bottlenecks add biases to the residual stream: a large lr shakes it
        "train": {"max_steps": 40, "batch_size": 8, "lr": lr, "warmup_steps": 2, "eval_every": 40}})
    result = run(cfg, body_dir, tmp_path / "ft", progress=False)
    assert result.metrics["pretrained"]["val_accuracy"] >= 0.9, result.metrics
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    spec = json.loads((model_dir / "adapter_config.json").read_text())
    if peft["method"] == "adalora":  # 10 modules started at rank 4 and were pruned to an average of 2
        assert len(spec["ranks"]) == 2 * 5 and sum(spec["ranks"].values()) == 2 * 10
        assert set(spec["ranks"].values()) != {4}
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(out),
                 "--bootstrap", "100"]) == 0
    assert json.loads((out / "metrics.json").read_text())["accuracy"] >= 0.9
    if peft["method"] != "adalora":  # no weight delta to fold in: one clear message, exit code 2
        assert main(["peft", "merge", str(model_dir), "--output", str(tmp_path / "merged")]) == 2


def test_peft_settings_errors_name_the_key(tmp_path):
    from lmforge.errors import ConfigError
    from lmforge.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nfinetune:\n  data: {train: a.jsonl}\n  init_from: somewhere\n"
                      "  peft: {method: qlora}\n")
    with pytest.raises(ConfigError, match="peft.*qlora.*GPU only"):
        load_recipe(recipe)
    body_dir = _tiny_body(tmp_path)
    data, _ = _data(tmp_path)
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16}, "data": {"train": str(data), "val": str(data)},
        "peft": {"target": ["query"]}, "train": {"max_steps": 2, "batch_size": 8}})
    with pytest.raises(ConfigError, match="'query' matches no linear layer"):
        run(cfg, body_dir, tmp_path / "ft", progress=False)


def test_chat_lora_trains_the_grown_embedding_and_keeps_it_tied(tmp_path):
    """New ChatML rows start equal (the mean embedding): frozen, the model could never tell the markers
    apart, so the embedding is trained in full and the tied head follows it through save and merge."""
    from lmforge.models.peft import load_adapted, merge
    from lmforge.tasks.stage import load_task_model

    body_dir = _tiny_body(tmp_path)
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in [("good great", "happy fine"), ("sad bad", "awful angry")]] * 8
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "chat", "max_len": 32, "packing": True, "max_new_tokens": 4},
        "data": {"train": str(data), "val": str(data)},
        "peft": {"r": 4, "target": "attention"},
        "train": {"max_steps": 6, "batch_size": 4, "lr": 1e-2, "warmup_steps": 1, "group_by_length": False}})
    result = run(cfg, body_dir, tmp_path / "ft", progress=False)
    info = result.metrics["pretrained"]["peft"]
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    spec = json.loads((model_dir / "adapter_config.json").read_text())
    assert spec["settings"]["modules_to_save"] == ["wte"] and spec["base"]["spec"] == "../base"
    _, model, tok = load_task_model(model_dir)
    base = load_adapted(model_dir).wte.weight.detach()  # loaded again: same weights
    assert torch.equal(model.wte.weight, base)
    start, end = tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>")
    assert not torch.equal(base[start], base[end])  # the markers were trained apart
    assert model.lm_head.weight is model.wte.weight
    assert info["trainable_params"] > model.wte.weight.numel()
    ids = torch.tensor([[start, 5, 6, 7]])
    with torch.no_grad():
        before = model(ids)[0]
        merged = merge(model)
        after = merged(ids)[0]
    assert merged.lm_head.weight is merged.wte.weight  # still tied after merge
    assert torch.allclose(before, after, atol=1e-5)
    transformers = pytest.importorskip("transformers")
    hf_dir = tmp_path / "hf"
    assert main(["peft", "merge", str(model_dir), "--output", str(tmp_path / "merged"), "--hf", str(hf_dir)]) == 0
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        assert torch.allclose(hf_model(ids).logits, before, atol=1e-4)  # the adapter's behaviour, in transformers
