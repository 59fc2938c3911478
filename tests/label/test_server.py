"""The annotation API (FastAPI TestClient): every action is in the database on return; bad requests
get a 4xx with a message, never a 5xx."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from lmforge.label.project import Project  # noqa: E402
from lmforge.label.server import create_app  # noqa: E402


@pytest.fixture
def clf(tmp_path):
    p = Project.create(tmp_path / "c.db", "classification", ["pos", "neg"])
    p.add_examples([{"id": f"e{i}", "text": f"例子 {i} 😀", "meta": {"n": i}} for i in range(3)])
    p.set_predictions([{"id": "e0", "value": "neg", "score": 0.91}], model="tfidf")
    p.close()
    with TestClient(create_app(tmp_path / "c.db", annotator="alice")) as client:
        yield client, tmp_path / "c.db"


def test_page_and_static(clf):
    client, _ = clf
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"] and 'src="app.js"' in r.text
    js = client.get("/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "/api/annotate" in js.text


def test_flow_is_committed_at_once(clf):
    client, db = clf
    assert client.get("/api/schema").json() == {"kind": "classification", "labels": ["pos", "neg"],
                                                "project": "c.db", "annotator": "alice"}
    first = client.get("/api/next").json()
    assert first["example"]["id"] == "e0" and first["example"]["prediction"] == {"model": "tfidf", "value": "neg",
                                                                                 "score": 0.91}
    assert first["progress"] == {"total": 3, "done": 0, "skipped": 0, "remaining": 3}
    r = client.post("/api/annotate", json={"id": "e0", "value": "pos"}).json()
    assert r["saved"] == {"id": "e0", "value": "pos"} and r["example"]["id"] == "e1"
    with Project(db) as other:  # another connection sees it: committed
        assert other.value_of("e0", "alice") == "pos"
    r = client.post("/api/skip", json={"id": "e1"}).json()
    assert r["example"]["id"] == "e2" and r["progress"]["skipped"] == 1
    r = client.post("/api/undo", json={}).json()
    assert r["undone"] == "e1" and r["example"]["id"] == "e1" and r["progress"]["skipped"] == 0
    r = client.post("/api/undo").json()
    assert r["undone"] == "e0" and r["example"]["current"] is None
    client.post("/api/annotate", json={"id": "e0", "value": "neg", "annotator": "bob"})
    with Project(db) as other:
        assert other.current() == {"e0": {"bob": "neg"}}
        assert [a["event"] for a in other.audit_log()][-5:] == ["annotate", "skip", "undo", "undo", "annotate"]
    assert client.get("/api/progress", params={"annotator": "bob"}).json()["done"] == 1
    assert client.get("/api/example/e2").json()["meta"] == {"n": 2}


def test_ner_offsets(tmp_path):
    p = Project.create(tmp_path / "n.db", "ner", ["LOC"])
    p.add_examples([{"id": "1", "text": "🎉😀 北京见面吧"}])
    p.close()
    with TestClient(create_app(tmp_path / "n.db")) as client:
        r = client.post("/api/annotate", json={"id": "1", "value": [{"start": 3, "end": 5, "label": "LOC"}]})
        assert r.status_code == 200 and r.json()["saved"]["value"][0]["text"] == "北京"
        bad = client.post("/api/annotate", json={"id": "1", "value": [{"start": 5, "end": 7, "label": "LOC",
                                                                         "text": "北京"}]})
        assert bad.status_code == 400 and "code points" in bad.json()["hint"]


BAD = [
    ("post", "/api/annotate", {"id": "e0", "value": "maybe"}, 400, "not one of the labels"),
    ("post", "/api/annotate", {"id": "nope", "value": "pos"}, 404, "no example"),
    ("post", "/api/annotate", {"value": "pos"}, 422, "id"),
    ("post", "/api/annotate", {"id": "e0", "value": "pos", "extra": 1}, 422, "extra"),
    ("post", "/api/annotate", {"id": "e0", "value": {"a": [1]}}, 400, "not one of the labels"),
    ("post", "/api/annotate", {"id": "e0", "value": "pos", "annotator": ""}, 422, "annotator"),
    ("post", "/api/annotate", [1, 2], 422, "bad request"),
    ("post", "/api/skip", {"id": 5}, 422, "id"),
    ("post", "/api/skip", {"id": "zz"}, 404, "no example"),
    ("post", "/api/undo", {}, 400, "nothing to undo"),
    ("get", "/api/example/missing", None, 404, "no example"),
]


@pytest.mark.parametrize("method,path,body,status,words", BAD)
def test_bad_requests_are_4xx_with_a_message(clf, method, path, body, status, words):
    client, _ = clf
    r = client.post(path, json=body) if method == "post" else client.get(path)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_malformed_json_is_422(clf):
    client, _ = clf
    r = client.post("/api/annotate", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "bad request" in r.json()["error"]
