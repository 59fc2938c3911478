"""KVCache.join: rows prefilled apart, left-padded and joined, decode as they would alone."""

import pytest
import torch

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.layers import KVCache


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=4, d_model=32, **kw)).eval()


@pytest.mark.parametrize("kw", [{}, dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2)],
                         ids=["learned", "rope-gqa"])
@pytest.mark.parametrize("max_len", [None, 32], ids=["growing", "preallocated"])
@torch.no_grad()
def test_joined_rows_decode_as_alone(kw, max_len):
    model = _model(**kw)
    a, b = [3, 14, 15, 9, 2, 6, 5, 3], [7, 1, 8]
    running = model.new_cache(max_len=max_len)
    model(torch.tensor([a[:6]]), cache=running)
    model(torch.tensor([a[6:7]]), cache=running)  # a has decoded a token: 7 cached
    fresh = model.new_cache()
    model(torch.tensor([b]), cache=fresh)  # 3 cached
    running.join(fresh)
    assert running.length == 7 and running.k[0].shape[0] == 2 and running.layer_length(1) == 7
    # b's row is padding in its first 4 columns; one step for both rows with the mask
    keep = torch.ones(2, 8, dtype=torch.bool)
    keep[1, :4] = False
    logits = model(torch.tensor([[a[7]], [4]]), cache=running, attention_mask=keep)[0][:, -1]
    alone = [model(torch.tensor([a]))[0][0, -1], model(torch.tensor([b + [4]]))[0][0, -1]]
    assert torch.allclose(logits, torch.stack(alone), atol=1e-5)
    # the shorter side may be either one: a longer newcomer pads the running rows instead
    longer = model.new_cache()
    c = list(range(1, 12))
    model(torch.tensor([c]), cache=longer)
    running.select(torch.tensor([1]))  # keep b (4 real tokens in 8 columns)
    running.trim_front(4)
    running.join(longer)
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[0, :7] = False
    logits = model(torch.tensor([[9], [2]]), cache=running, attention_mask=keep)[0][:, -1]
    alone = [model(torch.tensor([b + [4, 9]]))[0][0, -1], model(torch.tensor([c + [2]]))[0][0, -1]]
    assert torch.allclose(logits, torch.stack(alone), atol=1e-5)


@torch.no_grad()
def test_join_into_an_empty_cache_and_the_preallocated_bound():
    model = _model()
    empty = KVCache(2, max_len=10)
    fresh = model.new_cache()
    model(torch.tensor([[1, 2, 3]]), cache=fresh)
    empty.join(fresh)
    assert empty.length == 3 and torch.equal(empty.k[1], fresh.k[1])
    model(torch.tensor([[4]]), cache=empty)  # decodes on in place
    assert empty.length == 4
    empty.join(model.new_cache())  # nothing to add
    assert empty.length == 4 and empty.k[0].shape[0] == 1
    long = model.new_cache()
    model(torch.tensor([list(range(12))]), cache=long)
    with pytest.raises(ValueError, match="holds 10 tokens; joining needs 12"):
        empty.join(long)
