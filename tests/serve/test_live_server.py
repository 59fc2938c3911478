"""``lmforge serve`` as a real process on a free port, used through the official ``openai`` client:
completions, chat, streaming with usage, embeddings, the client's exception classes for 404/400/401, then
Ctrl-C: a drained shutdown that exits 0."""

import json
import signal

import httpx
import pytest

from .live import live_server

openai = pytest.importorskip("openai")
KEY = "test-key-123"


def _encoder_dir(root):
    """A 1-layer BERT with a WordPiece vocabulary: an encoder for /v1/embeddings."""
    import torch

    from lmforge.models.bert import BERT, BertConfig
    from lmforge.models.io import save_model
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    from .conftest import TEXT

    tok = train_tokenizer(TEXT, TokenizerConfig(kind="wordpiece", vocab_size=200, family="bert"))
    tok.save(root / "tok")
    torch.manual_seed(0)
    body = BERT(BertConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, d_model=32,
                           pad_token_id=tok.pad_id, dropout=0.0))
    return save_model(body, root / "enc", extra_files=sorted((root / "tok").iterdir()))


@pytest.fixture(scope="module")
def server(decoder_dir, chat_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    with live_server([f"tiny={decoder_dir}", f"chat={chat_dir}", str(_encoder_dir(root))], root,
                     "--api-key", KEY, "--drain-timeout", "5") as s:
        yield s.proc, s.url, s.log


def test_the_openai_client_against_a_live_server(server):
    proc, url, log = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=30)
    assert [m.id for m in client.models.list()] == ["tiny", "chat", "enc"]

    c = client.completions.create(model="tiny", prompt="Hello there", max_tokens=6, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert c.object == "text_completion" and c.choices[0].finish_reason == "length"
    assert c.usage.completion_tokens == 6 and c.usage.prompt_tokens > 0

    messages = [{"role": "user", "content": "Hello!"}]
    chat = client.chat.completions.create(model="chat", messages=messages, max_tokens=8, temperature=0)
    reply = chat.choices[0].message
    assert reply.role == "assistant" and isinstance(reply.content, str) and chat.usage.completion_tokens <= 8

    chunks = list(client.chat.completions.create(model="chat", messages=messages, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == reply.content  # greedy: the stream spells the same reply
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == chat.usage.total_tokens

    texts = ["Hello there!", "你好，今天天气很好。"]
    packed = client.embeddings.create(model="enc", input=texts)  # the client asks for base64 by default
    plain = client.embeddings.create(model="enc", input=texts, encoding_format="float")
    assert [len(d.embedding) for d in packed.data] == [32, 32] and packed.usage.prompt_tokens > 0
    for a, b in zip(packed.data, plain.data):
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) < 1e-6
        assert abs(sum(x * x for x in b.embedding) - 1) < 1e-5

    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nope", prompt="x", max_tokens=2)
    assert "tiny" in e.value.message  # the error names the served models
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", max_tokens=1000)
    assert "maximum context length" in e.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}  # probes need no key
    assert "lmforge_generated_tokens_total" in httpx.get(f"{url}/metrics").text

    # Ctrl-C while a stream is running: the stream finishes, then the process exits 0
    payload = {"model": "tiny", "prompt": "Hi", "max_tokens": 60, "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as h:
        with h.stream("POST", "/v1/completions", json=payload) as r:
            events = (line for line in r.iter_lines() if line.startswith("data: "))
            assert json.loads(next(events)[6:])["choices"]  # in flight now
            proc.send_signal(signal.SIGINT)
            rest = list(events)
    assert rest[-1] == "data: [DONE]" and json.loads(rest[-2][6:])["choices"][0]["finish_reason"] == "length"
    assert proc.wait(timeout=5 + 20) == 0, log.read_text()  # drained within --drain-timeout, exit 0
    out = log.read_text()
    assert f"{url}/" in out and "tiny: decoder" in out and "chat: chat" in out and "enc: encoder" in out
