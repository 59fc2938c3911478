"""``lmforge serve`` of ``lmforge export --to onnx`` directories: the same endpoints answer the same
results from onnxruntime as from the PyTorch model beside it, and exports it cannot serve are clear
errors at load."""

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from lmforge.errors import InputError  # noqa: E402
from lmforge.export import export  # noqa: E402
from lmforge.serve.app import load_models  # noqa: E402
from lmforge.serve.onnx_backend import OnnxModel  # noqa: E402

from .conftest import TEXT, tiny_gpt  # noqa: E402
from .test_app import NER_BIO, QA_WORDS, _bert, _save, run, serve  # noqa: E402

TEXTS = ["good great fine", "sad", "Once upon a time a cat sat on a mat. " * 6, "你好"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, serve_tok):
    """PyTorch model directories and their ONNX exports: classification (+ multi-label), NER, QA, encoder."""
    from lmforge.tasks.classification import Classification, ClassificationConfig
    from lmforge.tasks.ner import NER, NERConfig
    from lmforge.tasks.qa import QA, QAConfig
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    root = tmp_path_factory.mktemp("onnx_serve")
    wp = train_tokenizer(TEXT + [NER_BIO.replace("\t", " "), " ".join(QA_WORDS)] * 4,
                         TokenizerConfig(kind="wordpiece", vocab_size=300, family="bert"))
    out = {}
    for name, multi in (("clf", False), ("multi", True)):
        task = Classification(ClassificationConfig(max_len=16, multi_label=multi, dropout=0.0))
        task.fit([{"label": ["neg"] if multi else "neg"}, {"label": ["pos"] if multi else "pos"},
                  {"label": ["mixed"] if multi else "mixed"}])
        out[name] = _save(task.build_model(tiny_gpt(serve_tok.vocab_size, seed=3 if multi else 4), serve_tok),
                          serve_tok, root / name, task)
    (root / "train.bio").write_text(NER_BIO, encoding="utf-8")
    task = NER(NERConfig(max_len=32, dropout=0.0))
    task.fit(task.read(root / "train.bio"))
    model = task.build_model(_bert(wp, seed=1), wp)
    with torch.no_grad():  # varied tags: spans to compare, not all O
        model.head.bias[task.labels.index("B-LOC")] = 1.0
        model.head.weight.mul_(40)
    out["ner"] = _save(model, wp, root / "ner", task)
    task = NER(NERConfig(max_len=32, dropout=0.0, crf=True))
    task.fit(task.read(root / "train.bio"))
    model = task.build_model(_bert(wp, seed=1), wp)
    with torch.no_grad():  # emissions that favour entities, and transitions that matter in the decode
        model.head.bias[task.labels.index("B-LOC")] = 1.0
        model.head.weight.mul_(40)
        g = torch.Generator().manual_seed(0)
        model.crf.transitions.copy_(torch.randn(model.crf.transitions.shape, generator=g) * 3)
    out["nercrf"] = _save(model, wp, root / "nercrf", task)
    task = QA(QAConfig(max_len=32, doc_stride=8, max_query_len=8))
    out["qa"] = _save(task.build_model(_bert(wp, seed=2), wp), wp, root / "qa", task)
    out["enc"] = _save(_bert(wp, seed=5), wp, root / "enc")
    for name in list(out):
        out[f"{name}-onnx"], _ = export(out[name], "onnx", root / f"{name}-onnx")
    return out


@pytest.fixture(scope="module")
def served(dirs):
    return load_models([f"{name}={path}" for name, path in dirs.items()])


def _close(got: list[dict], want: list[dict], tol: float = 1e-4) -> None:
    """The same predictions: labels, tags and spans equal; scores and probabilities within ``tol``."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in g:
            if isinstance(g[k], float):
                assert abs(g[k] - w[k]) <= tol, k
            elif isinstance(g[k], dict) and k == "scores":
                assert g[k].keys() == w[k].keys() and all(abs(g[k][y] - w[k][y]) <= tol for y in g[k])
            elif isinstance(g[k], list) and g[k] and isinstance(g[k][0], dict):  # entities, n-best answers
                _close(g[k], w[k], tol)
            else:
                assert g[k] == w[k], k


def test_onnx_exports_load_as_the_same_kinds_on_onnxruntime(served):
    for name in ("clf", "multi", "ner", "nercrf", "qa", "enc"):
        torch_m, onnx_m = served[name], served[f"{name}-onnx"]
        assert onnx_m.kind == torch_m.kind and isinstance(onnx_m.model, OnnxModel)
        assert onnx_m.info["format"] == "onnx" and onnx_m.info.get("labels") == torch_m.info.get("labels")
        assert onnx_m.model.session.get_providers() == ["CPUExecutionProvider"]
    assert served["enc-onnx"].context == served["enc"].context == 32
    assert served["enc-onnx"].model.config.d_model == 32


def test_models_lists_both_and_classify_matches_pytorch(served):
    app = serve(served, max_batch=3)  # several batches, padded differently

    async def go(c):
        return [await c.get("/v1/models")] + [
            await c.post("/v1/classify", json={"model": m, "input": TEXTS})
            for m in ("clf", "clf-onnx", "multi", "multi-onnx")]

    models, clf, clf_onnx, multi, multi_onnx = run(app, go)
    ids = [m["id"] for m in models.json()["data"]]
    assert {"clf", "clf-onnx", "ner", "ner-onnx", "enc-onnx"} <= set(ids)
    for r in (clf, clf_onnx, multi, multi_onnx):
        assert r.status_code == 200, r.text
    assert clf_onnx.json()["model"] == "clf-onnx"
    want, got = clf.json()["results"], clf_onnx.json()["results"]
    _close(got, want)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    _close(multi_onnx.json()["results"], multi.json()["results"])
    assert set(multi_onnx.json()["results"][0]) == {"labels", "scores"}


def test_ner_and_qa_match_pytorch(served):
    texts = ["他 去上海", "王小明在北京", "我在北京"]
    qs = [{"question": "what is the key ?", "context": "a red cat sat on a mat and the key is blue . the dog ran " * 3},
          {"question": "what is the key ?", "context": "the key is blue ."}]
    app = serve(served)

    async def go(c):
        return [await c.post("/v1/ner", json={"model": m, "input": texts})
                for m in ("ner", "ner-onnx", "nercrf", "nercrf-onnx")] + \
               [await c.post("/v1/qa", json={"model": m, "input": qs}) for m in ("qa", "qa-onnx")]

    ner, ner_onnx, crf, crf_onnx, qa, qa_onnx = run(app, go)
    for r in (ner, ner_onnx, crf, crf_onnx, qa, qa_onnx):
        assert r.status_code == 200, r.text
    for a, b in ((ner, ner_onnx), (crf, crf_onnx)):  # the CRF's Viterbi decode runs on the manifest's scores
        want, got = a.json()["results"], b.json()["results"]
        assert any(w["entities"] for w in want)  # something to compare
        assert [[(e["type"], e["start"], e["end"]) for e in g["entities"]] for g in got] == \
               [[(e["type"], e["start"], e["end"]) for e in w["entities"]] for w in want]
        _close(got, want)
    assert crf.json()["results"] != ner.json()["results"]  # the transitions changed the decode
    _close(qa_onnx.json()["results"], qa.json()["results"])


def test_embeddings_match_pytorch(served):
    app = serve(served)
    texts = ["the cat sat on the mat", "a", "你好，今天天气很好"]

    async def go(c):
        return [await c.post("/v1/embeddings", json={"model": m, "input": texts}) for m in ("enc", "enc-onnx")]

    pt, ox = run(app, go)
    assert pt.status_code == ox.status_code == 200, ox.text
    a = np.array([d["embedding"] for d in pt.json()["data"]])
    b = np.array([d["embedding"] for d in ox.json()["data"]])
    assert a.shape == b.shape == (3, 32) and np.abs(a - b).max() < 1e-4


def test_exports_it_cannot_serve_are_clear_errors_at_load(tmp_path, dirs, decoder_dir):
    bad = shutil.copytree(dirs["clf-onnx"], tmp_path / "bad")
    (bad / "model.onnx").unlink()
    with pytest.raises(InputError, match=r"'bad=.*export.json names model.onnx, which is not there"):
        load_models([f"bad={bad}"])

    (bad / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(InputError, match="onnxruntime cannot load"):
        load_models([f"bad={bad}"])

    manifest = json.loads((bad / "export.json").read_text())
    (bad / "export.json").write_text(json.dumps({**manifest, "format": "torchscript"}))
    with pytest.raises(InputError, match="'torchscript' export") as e:
        load_models([f"bad={bad}"])
    assert "PyTorch model directory" in e.value.hint

    headless = shutil.copytree(dirs["clf-onnx"], tmp_path / "headless")
    (headless / "task.json").unlink()
    (headless / "export.json").write_text(json.dumps({**manifest, "task": None}))
    with pytest.raises(InputError, match="without its task.*task.json is missing"):
        load_models([f"headless={headless}"])

    crf = shutil.copytree(dirs["ner-onnx"], tmp_path / "crf")  # a CRF model exported without its scores
    blob = json.loads((crf / "task.json").read_text())
    blob["config"]["crf"] = True
    (crf / "task.json").write_text(json.dumps(blob))
    with pytest.raises(InputError, match="CRF"):
        load_models([f"crf={crf}"])

    gpt, _ = export(decoder_dir, "onnx", tmp_path / "gpt-onnx", verify=False)
    with pytest.raises(InputError, match="decoder ONNX exports") as e:
        load_models([f"gpt={gpt}"])
    assert "lmforge serve NAME=MODEL_DIR" in e.value.hint
