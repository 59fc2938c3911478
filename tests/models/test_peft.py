"""Adapters in our own modules: LoRA, DoRA, rsLoRA, AdaLoRA, IA3 (through peft), bottleneck adapters and
prefix tuning (ours): training, saving, merging, cached decoding."""

import json

import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.heads import SequenceClassifier
from lmforge.models.io import load_model, save_model

peft = pytest.importorskip("peft")
from lmforge.models.peft import (
    PeftSettings,
    adapter_ranks,
    after_step,
    base_reference,
    check_gradients,
    inject,
    merge,
    regulariser,
    resolve_targets,
    start_training,
)
from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig


def _bert_clf(tmp_path, pooling="mean"):
    torch.manual_seed(0)
    body = BERT(BertConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=32))
    save_model(body, tmp_path / "base")
    return SequenceClassifier(body, 3, pooling, 0.0, ["a", "b", "c"]), base_reference(tmp_path / "base")


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 50, (4, 10), generator=g)
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[1, 6:] = 0
    return ids, mask


def _randomise_adapters(model):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)  # B starts at zero; a trained adapter is not


def test_lora_trains_only_adapters_and_head(tmp_path):
    model, base = _bert_clf(tmp_path)
    info = inject(model, PeftSettings(r=4, target="all-linear"), base)
    assert info["adapted_modules"] == 2 * 5  # q, kv, o, up, down per block; pooler and MLM head excluded
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if "lora_" in n or n.startswith("head.")}
    assert {"head.weight", "head.bias"} <= trainable
    assert 0 < info["trainable_share"] < 0.2
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = _batch()
    logits, _ = model(ids, mask)
    logits.logsumexp(-1).mean().backward()
    check_gradients(model)  # every adapter got a gradient
    opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert all(not torch.equal(dict(model.named_parameters())[n], b) for n, b in before_b.items())


def test_unused_adapter_is_an_error_not_a_silent_no_op(tmp_path):
    model, base = _bert_clf(tmp_path, pooling="mean")  # mean pooling never calls the pooler
    inject(model, PeftSettings(target=["pooler", "q_proj"]), base)
    ids, mask = _batch()
    model(ids, mask)[0].sum().backward()
    with pytest.raises(ConfigError, match="pooler"):
        check_gradients(model)


def test_target_errors_list_what_exists(tmp_path):
    model, _ = _bert_clf(tmp_path)
    with pytest.raises(ConfigError, match="kv_proj"):
        resolve_targets(model.body, ["query"])
    assert resolve_targets(model.body, "attention") == [f"blocks.{i}.attn.{n}" for i in range(2)
                                                         for n in ("q_proj", "kv_proj", "o_proj")]
    gpt = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, d_model=16))
    with pytest.raises(ConfigError, match="prompt_tuning needs an encoder body.*prefix_tuning"):
        inject(gpt, PeftSettings(method="prompt_tuning"), {"spec": "x"})
    with pytest.raises(ValueError, match="qlora.*GPU only"):
        PeftSettings(method="qlora")
    with pytest.raises(ValueError, match="unknown peft method"):
        PeftSettings(method="loha2")


@pytest.mark.parametrize("settings", [PeftSettings(r=4), PeftSettings(r=4, use_dora=True),
                                      PeftSettings(r=4, use_rslora=True), PeftSettings(method="ia3")],
                         ids=["lora", "dora", "rslora", "ia3"])
def test_merge_matches_unmerged_and_save_load_round_trips(tmp_path, settings):
    model, base = _bert_clf(tmp_path)
    inject(model, settings, base)
    _randomise_adapters(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "ia3_" in n:
                p.uniform_(0.5, 1.5)
    model.eval()
    ids, mask = _batch()
    ref = model(ids, mask)[0]
    save_model(model, tmp_path / "adapted")
    files = {f.name for f in (tmp_path / "adapted").iterdir()}
    assert files == {"config.json", "adapter_config.json", "adapter.safetensors"}
    spec = json.loads((tmp_path / "adapted" / "adapter_config.json").read_text())
    assert spec["base"]["spec"] == "../base"  # relative: a run directory can move as a whole
    back = load_model(tmp_path / "adapted").eval()
    assert torch.equal(back(ids, mask)[0], ref)  # save -> load -> identical predictions
    merged = merge(back)
    assert not any("lora_" in n or "ia3_" in n for n, _ in merged.named_parameters())
    assert (merged(ids, mask)[0] - ref).abs().max() <= 1e-5
    save_model(merged, tmp_path / "merged")
    plain = load_model(tmp_path / "merged").eval()  # a plain model: loads with no peft involved
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert (plain(ids, mask)[0] - ref).abs().max() <= 1e-5


def test_gpt_merge_keeps_tied_embeddings(tmp_path):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, d_model=32))
    assert gpt.lm_head.weight is gpt.wte.weight
    save_model(gpt, tmp_path / "base")
    inject(gpt, PeftSettings(r=4, target="all-linear"), base_reference(tmp_path / "base"))
    assert not any(n.startswith("lm_head") and "lora" in n for n, _ in gpt.named_parameters())
    _randomise_adapters(gpt)
    gpt.eval()
    ids = torch.randint(0, 40, (2, 12))
    ref = gpt(ids)[0]
    merged = merge(gpt)
    assert merged.lm_head.weight is merged.wte.weight  # still one tensor after the merge
    assert (merged(ids)[0] - ref).abs().max() <= 1e-5
    save_model(merged, tmp_path / "merged")
    back = load_model(tmp_path / "merged")
    assert back.lm_head.weight is back.wte.weight


def test_changed_base_is_refused(tmp_path):
    model, base = _bert_clf(tmp_path)
    inject(model, PeftSettings(r=4), base)
    save_model(model, tmp_path / "adapted")
    other = BERT(BertConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=32))
    save_model(other, tmp_path / "base")  # same architecture, different weights
    with pytest.raises(InputError, match="changed since"):
        load_model(tmp_path / "adapted")


def test_modules_to_save_are_trained_in_full(tmp_path):
    model, base = _bert_clf(tmp_path)
    inject(model, PeftSettings(r=4, target="attention", modules_to_save=["wte"]), base)
    assert model.body.wte.weight.requires_grad
    with pytest.raises(ConfigError, match="not a module"):
        m2, b2 = _bert_clf(tmp_path / "x")
        inject(m2, PeftSettings(modules_to_save=["embeddings"]), b2)


@pytest.mark.parametrize("settings,adapted", [
    (PeftSettings(method="bottleneck", bottleneck_size=4), ["blocks.0.mlp.down", "blocks.1.mlp.down"]),
    (PeftSettings(method="bottleneck", placement="houlsby"), [f"blocks.{i}.{m}" for i in range(2)
                                                              for m in ("attn.o_proj", "mlp.down")]),
    (PeftSettings(method="prefix_tuning", num_virtual_tokens=3), ["blocks.0.attn", "blocks.1.attn"]),
    (PeftSettings(method="prompt_tuning", num_virtual_tokens=3), ["prompt"])],
    ids=["pfeiffer", "houlsby", "prefix", "prompt"])
def test_bottleneck_prefix_prompt_train_save_load_and_refuse_merge(tmp_path, settings, adapted):
    model, base = _bert_clf(tmp_path)
    model.eval()
    ids, mask = _batch()
    plain = model(ids, mask)[0]
    info = inject(model, settings, base)
    assert json.loads(json.dumps(model.lmforge_peft))["targets"] == adapted
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if any(k in n for k in ("adapter_", "prefix_", "prompt_"))
                         or n.startswith("head.")}
    assert info["adapter_params"] > 0 and info["trainable_share"] < 0.2
    if settings.method == "bottleneck":  # the up projection starts at zero: exactly the base model
        assert torch.equal(model(ids, mask)[0], plain)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for _ in range(2):  # a bottleneck's down projection gets gradient once up is non-zero
        model(ids, mask)[0].logsumexp(-1).mean().backward()
        check_gradients(model)
        opt.step()
        opt.zero_grad()
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], b) for n, b in before.items())
    model.eval()
    ref = model(ids, mask)[0]
    save_model(model, tmp_path / "adapted")
    back = load_model(tmp_path / "adapted").eval()
    assert torch.equal(back(ids, mask)[0], ref)
    with pytest.raises(ConfigError, match="cannot be merged"):
        merge(back)


def test_prefix_keeps_cached_and_left_padded_decoding_exact(tmp_path):
    """The prefix sits in front of the keys at every step and never in the cache: incremental decoding,
    grouped-query heads and left-padded batches give what one full forward pass gives."""
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=4, n_kv_head=2, d_model=32, positions="rope"))
    save_model(gpt, tmp_path / "base")
    inject(gpt, PeftSettings(method="prefix_tuning", num_virtual_tokens=3), base_reference(tmp_path / "base"))
    gpt.eval()
    ids = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        full = gpt(ids)[0]
        cache = gpt.new_cache(max_len=16)
        steps = [gpt(ids[:, :8], cache=cache)[0]] + [gpt(ids[:, t:t + 1], cache=cache)[0] for t in range(8, 12)]
        assert (torch.cat(steps, 1) - full).abs().max() < 1e-5
        padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids[1:, :9]], 1)
        keep = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 9, dtype=torch.long)], 1)
        assert (gpt(padded, attention_mask=keep)[0][:, 3:] - full[1:, :9]).abs().max() < 1e-5
    s2s = Seq2Seq(Seq2SeqConfig(vocab_size=40, block_size=16, n_encoder_layer=1, n_decoder_layer=1, n_head=2,
                                d_model=16))
    save_model(s2s, tmp_path / "s2s")
    info = inject(s2s, PeftSettings(method="prefix_tuning", num_virtual_tokens=2), base_reference(tmp_path / "s2s"))
    assert info["adapted_modules"] == 2  # encoder and decoder self-attention; cross-attention keeps its memory
    src = torch.randint(3, 40, (2, 6))
    beams = s2s.beam_search(src, num_beams=2, max_new_tokens=4)
    greedy = s2s.generate(src, use_cache=False)
    assert len(beams) == 2 and len(greedy) == 2


def test_adalora_prunes_ranks_to_the_budget_and_merges(tmp_path):
    model, base = _bert_clf(tmp_path)
    settings = PeftSettings(method="adalora", r=2, init_r=4, tinit=0.1, tfinal=0.3, delta_t=1)
    inject(model, settings, base)
    assert set(adapter_ranks(model).values()) == {0}  # lora_E starts at zero, as in the paper
    start_training(model, 20)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = _batch()
    model.train()
    for step in range(20):
        loss = model(ids, mask)[0].logsumexp(-1).mean() + regulariser(model)
        loss.backward()
        opt.step()
        after_step(model, step)
        opt.zero_grad()
    ranks = adapter_ranks(model)
    assert len(ranks) == 10 and sum(ranks.values()) == 2 * 10  # the budget: r on average
    assert max(ranks.values()) <= 4 and len(set(ranks.values())) > 1  # spread by importance, not uniform
    model.eval()
    ref = model(ids, mask)[0]
    save_model(model, tmp_path / "adapted")
    assert json.loads((tmp_path / "adapted" / "adapter_config.json").read_text())["ranks"] == ranks
    back = load_model(tmp_path / "adapted").eval()
    assert torch.equal(back(ids, mask)[0], ref)
    assert (merge(back)(ids, mask)[0] - ref).abs().max() <= 1e-5
    other, base = _bert_clf(tmp_path / "other")
    inject(other, PeftSettings(method="adalora", tinit=0.5, tfinal=0.5), base)
    with pytest.raises(ConfigError, match="no steps"):
        start_training(other, 100)


def test_prompt_tuning_leaves_outputs_one_per_real_token(tmp_path):
    """The prompt vectors are read by every token, then dropped: hidden states keep the input's length,
    padding stays padding, and a seq2seq decoder's memory is the real source positions only."""
    torch.manual_seed(0)
    bert = BERT(BertConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=32))
    save_model(bert, tmp_path / "b")
    ids, mask = _batch()
    plain = bert.eval().hidden_states(ids, attention_mask=mask)
    inject(bert, PeftSettings(method="prompt_tuning", num_virtual_tokens=4), base_reference(tmp_path / "b"))
    h = bert.hidden_states(ids, attention_mask=mask)
    assert h.shape == plain.shape and not torch.allclose(h, plain)
    short = bert.hidden_states(ids[1:2, :6], attention_mask=mask[1:2, :6])  # row 1 without its padding
    assert (short - h[1:2, :6]).abs().max() < 1e-5
    s2s = Seq2Seq(Seq2SeqConfig(vocab_size=40, block_size=16, n_encoder_layer=1, n_decoder_layer=1, n_head=2,
                                d_model=16))
    save_model(s2s, tmp_path / "s")
    inject(s2s, PeftSettings(method="prompt_tuning", num_virtual_tokens=2), base_reference(tmp_path / "s"))
    src = torch.randint(3, 40, (2, 6))
    assert s2s.hidden_states(src).shape == (2, 6, 16)
    logits, loss = s2s(src, src, targets=src)
    loss.backward()
    assert s2s.prompt.prompt_embeddings.grad.abs().sum() > 0
    assert len(s2s.beam_search(src, num_beams=2, max_new_tokens=3)) == 2
