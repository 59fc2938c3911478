"""Decoder-only GPT: configurations, shapes, causality, training, checkpointing."""

import pytest
import torch

from lmforge.models.gpt import GPT, GPTConfig

SMALL = dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, d_model=32)
VARIANTS = {
    "gpt2": {},
    "llama-gqa": dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, tie_embeddings=False, bias=False),
    "mqa": dict(n_kv_head=1, positions="rope"),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_loss_and_causality(name):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL, **VARIANTS[name])).eval()
    x = torch.randint(0, 64, (3, 20))
    logits, loss = model(x)
    assert logits.shape == (3, 20, 64) and loss is None
    assert model.hidden_states(x).shape == (3, 20, 32)
    targets = torch.randint(0, 64, (3, 20))
    targets[:, :5] = -100
    _, loss = model(x, targets)
    assert loss.ndim == 0 and 3.5 < loss.item() < 4.8  # ~ln(64) at init
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 64
    assert torch.allclose(model(x)[0][:, :10], model(y)[0][:, :10], atol=1e-5)


def test_configuration_is_reflected_in_modules():
    m = GPT(GPTConfig(**SMALL, **VARIANTS["llama-gqa"]))
    assert m.wpe is None and m.blocks[0].attn.rotary is not None
    assert m.blocks[0].attn.kv_proj.out_features == 2 * 2 * 8  # 2 kv heads of dim 8, k and v
    assert m.lm_head.weight is not m.wte.weight
    assert type(m.ln_f).__name__ == "RMSNorm" and hasattr(m.blocks[0].mlp, "gate")
    assert m.blocks[0].mlp.up.out_features == GPTConfig(d_model=32, mlp="swiglu").hidden() == 128
    g = GPT(GPTConfig(**SMALL))
    assert g.lm_head.weight is g.wte.weight and isinstance(g.ln_f, torch.nn.LayerNorm)
    cfg = GPTConfig.from_dict(GPTConfig(**SMALL, **VARIANTS["mqa"]).to_dict())
    assert cfg == GPTConfig(**SMALL, **VARIANTS["mqa"]) and cfg.to_dict()["model_type"] == "gpt"


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_a_few_steps_lower_the_loss(name):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL, **VARIANTS[name]))
    data = torch.arange(33).repeat(8, 1) % 64  # a fixed sequence to memorise
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        _, loss = model(data[:, :-1], data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL))
    x = torch.randint(0, 64, (2, 16))
    grads = []
    for ckpt in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = ckpt
        model(x, x)[1].backward()
        grads.append(model.blocks[0].attn.q_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_too_long_input_is_an_error():
    with pytest.raises(ValueError, match="block_size"):
        GPT(GPTConfig(**SMALL))(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_left_padded_rows_match_the_rows_alone(name):
    """attention_mask: padding keys are masked and positions count from each row's first real token."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL, **VARIANTS[name])).eval()
    rows = [torch.randint(1, 64, (n,)) for n in (9, 4, 1)]
    L = 9
    batch = torch.stack([torch.cat([torch.zeros(L - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([torch.arange(L) >= L - len(r) for r in rows]).long()
    logits = model(batch, attention_mask=mask)[0]
    hidden = model.hidden_states(batch, attention_mask=mask)
    assert torch.isfinite(logits).all() and torch.isfinite(hidden).all()  # padding rows too (no NaN)
    for i, r in enumerate(rows):
        alone = model(r[None])[0][0]
        assert torch.allclose(logits[i, L - len(r):], alone, atol=1e-5), (name, i)
        assert torch.allclose(hidden[i, L - len(r):], model.hidden_states(r[None])[0], atol=1e-5)
    # the mask matters: the same batch without it gives other logits for the padded rows
    assert not torch.allclose(model(batch)[0][1, L - 4:], logits[1, L - 4:], atol=1e-3)
    # a padding token's value does not leak into real tokens
    other = batch.masked_fill(mask == 0, 7)
    assert torch.allclose(model(other, attention_mask=mask)[0][mask.bool()], logits[mask.bool()], atol=1e-5)
    # and a cached, masked pass (prefill, then one token at a time) gives the same logits
    cache = model.new_cache(max_len=L)
    parts = [model(batch[:, :5], cache=cache, attention_mask=mask[:, :5])[0]]
    parts += [model(batch[:, t:t + 1], cache=cache, attention_mask=mask[:, :t + 1])[0] for t in range(5, L)]
    assert torch.allclose(torch.cat(parts, 1)[mask.bool()], logits[mask.bool()], atol=1e-5)


def test_right_padding_with_a_mask_changes_nothing_at_real_tokens():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL)).eval()
    x = torch.randint(1, 64, (2, 10))
    mask = torch.ones_like(x)
    mask[1, 6:] = 0
    assert torch.allclose(model(x, attention_mask=mask)[0][mask.bool()], model(x)[0][mask.bool()], atol=1e-5)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(x, attention_mask=mask[:, :5])
    with pytest.raises(TypeError, match="attention_mask="):
        model.hidden_states(x, mask)
