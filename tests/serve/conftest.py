"""Tiny real models for the serving tests: a byte-level BPE tokenizer trained here, a 2-layer GPT with
enlarged weights (so greedy paths are varied, as in tests/models/test_generation.py), saved as a
decoder model directory and as a ChatML chat model directory (task.json kind chat). Built in a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TEXT = ["Hello there! How are you today?", "I am fine, thank you. What is the weather like?",
        "It is sunny and warm. Tell me a story about a cat.", "Once upon a time a cat sat on a mat.",
        "你好，今天天气很好。我们去公园吧！", "Ünïcödé — “quotes” ✓ done"] * 8


def tiny_gpt(vocab_size: int, block_size: int = 64, seed: int = 0, **kw):
    from lmforge.models.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=4, d_model=32, **kw))
    with torch.no_grad():  # larger weights so greedy decoding does not loop on one token at once
        for p in model.parameters():
            p.mul_(8) if p.dim() > 1 else None
    return model.eval()


@pytest.fixture(scope="session")
def serve_tok():
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    return train_tokenizer(TEXT, TokenizerConfig(kind="byte_bpe", vocab_size=320, family="gpt"))


@pytest.fixture(scope="session")
def decoder_dir(tmp_path_factory, serve_tok) -> Path:
    """A pretrained-style decoder directory: model.safetensors, config.json, tokenizer files."""
    from lmforge.models.io import save_model

    root = tmp_path_factory.mktemp("serve_models")
    serve_tok.save(root / "tokfiles")
    return save_model(tiny_gpt(serve_tok.vocab_size), root / "decoder",
                      extra_files=sorted((root / "tokfiles").iterdir()))


@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory, serve_tok) -> Path:
    """A ChatML chat model directory as `lmforge finetune` writes it (chat_template.json, task.json)."""
    from lmforge.models.io import save_model
    from lmforge.tasks.chat import Chat, ChatConfig

    root = tmp_path_factory.mktemp("serve_chat")
    task = Chat(ChatConfig(template="chatml", max_len=64))
    ctok = task.prepare_tokenizer(serve_tok)
    model = task.build_model(tiny_gpt(serve_tok.vocab_size, seed=1), ctok)
    ctok.save(root / "tokfiles")
    out = save_model(model, root / "chat", extra_files=sorted((root / "tokfiles").iterdir()))
    task.save(out)
    return out


@pytest.fixture(scope="session")
def decoder(decoder_dir):
    """(model, tok) loaded back from the decoder directory."""
    from lmforge.models.io import load_model
    from lmforge.tokenizer import Tok

    return load_model(decoder_dir).eval(), Tok.load(decoder_dir)


@pytest.fixture(scope="session")
def chat(chat_dir):
    from lmforge.models.io import load_model
    from lmforge.tokenizer import Tok

    return load_model(chat_dir).eval(), Tok.load(chat_dir)
