"""Model-assisted labeling through the CLI: a real (tiny) fine-tuned classifier pre-labels a project
and picks what to label next."""

from __future__ import annotations

import json

import numpy as np

from lmforge.cli import main
from lmforge.label.project import Project


def _model(tmp_path):
    from lmforge.tasks.stage import FinetuneConfig, run
    from tests.tasks.test_classification import _tiny_body

    rows = [("good great", "pos"), ("happy fine", "pos"), ("sad bad", "neg"), ("awful angry", "neg")] * 8
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "classification", "max_len": 16},
        "data": {"train": str(data), "val": str(data)},
        "train": {"max_steps": 40, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "eval_every": 40}})
    run(cfg, _tiny_body(tmp_path), tmp_path / "ft", progress=False)
    return tmp_path / "ft" / "pretrained" / "model"


def test_suggest_and_next(tmp_path, capsys):
    model = _model(tmp_path)
    texts = ["good great", "sad bad", "happy fine", "awful angry", "good bad", "fine sad", "great", "angry"]
    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps({"id": f"x{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    db = tmp_path / "labels.db"
    assert main(["label", "import", str(src), "--project", str(db), "--kind", "classification",
                 "--labels", "neg,pos"]) == 0
    with Project(db) as p:
        p.annotate("x0", "pos", annotator="alice")
    capsys.readouterr()
    assert main(["label", "suggest", "--project", str(db), "--model", str(model)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["examples"] == 7 and out["predictions"] == 7  # x0 is labeled already
    with Project(db) as p:
        pred = p.predictions("x1")[0]
        assert pred["value"] == "neg" and 0.5 < pred["score"] <= 1.0  # the words decide: the model learned them
        assert p.next_unlabeled("alice")["prediction"]["value"] in {"neg", "pos"}
    for strategy in ("margin", "entropy", "random", "diversity"):
        assert main(["label", "next", "--project", str(db), "--model", str(model), "--k", "3",
                     "--strategy", strategy]) == 0
        picks = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        assert len(picks) == 3 and "x0" not in {p["id"] for p in picks}
        if strategy == "margin":  # the most uncertain first: its top two scores are the closest
            gaps = [abs(np.subtract(*sorted(p["prediction"]["scores"].values(), reverse=True)[:2])) for p in picks]
            assert gaps[0] == min(gaps)
    assert main(["label", "next", "--project", str(db), "--model", str(model), "--strategy", "nosuch"]) == 2


def test_label_studio_ml_backend(tmp_path):
    from fastapi.testclient import TestClient

    from lmforge.label.cli_extra import model_predictor_factory
    from lmforge.label.ml_backend import create_app

    model = _model(tmp_path)
    client = TestClient(create_app(model_predictor_factory()(str(model)), "tiny", "classification"))
    assert client.get("/health").json()["status"] == "UP"
    config = ('<View><Text name="review" value="$body"/>'
              '<Choices name="sentiment" toName="review"><Choice value="pos"/><Choice value="neg"/></Choices></View>')
    assert client.post("/setup", json={"schema": config, "project": "1"}).json() == {"model_version": "tiny"}
    r = client.post("/predict", json={"tasks": [{"id": 7, "data": {"body": "sad bad"}},
                                                 {"id": 8, "data": {"body": "good great"}}]})
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["result"][0]["value"]["choices"] for x in res] == [["neg"], ["pos"]]
    assert res[0]["result"][0]["from_name"] == "sentiment" and res[0]["result"][0]["to_name"] == "review"
    assert 0.5 < res[0]["score"] <= 1.0
    # bad requests are 4xx with a message, never a crash
    assert client.post("/predict", content=b"not json").status_code == 400
    assert client.post("/predict", json={"tasks": [{"data": {"other": "x"}}]}).status_code == 400
    assert client.post("/predict", json={"tasks": [], "label_config": "<View"}).status_code == 400
