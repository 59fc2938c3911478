"""A Label Studio ML backend over any lmforge model: ``/health``, ``/setup``, ``/predict``.

An existing Label Studio (Settings -> Model -> Connect model, URL of this server) then pre-labels
its tasks with the model: choices for a classifier, labels (spans, code-point offsets as Label
Studio stores them) for an NER model. Where the result goes (``from_name``/``to_name``) and which
task field holds the text come from the project's labeling config that Label Studio sends; the
predictor is built outside (the CLI), so this module never imports tasks/.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .labelstudio import ls_result

Predictor = Callable[[list[str]], list[dict]]
CONTROLS = {"Choices": "classification", "Labels": "ner"}


def parse_config(label_config: str | None) -> dict:
    """``from_name``, ``to_name``, the task data key and the kind, from a labeling config XML."""
    out = {"from_name": "label", "to_name": "text", "data_key": "text", "kind": None}
    if not label_config:
        return out
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as e:
        raise ValueError(f"label_config is not valid XML: {e}") from None
    objects = {el.get("name"): (el.get("value") or "").lstrip("$") for el in root.iter() if el.tag in ("Text", "HyperText")}
    for el in root.iter():
        if el.tag in CONTROLS and el.get("name"):
            out.update(from_name=el.get("name"), to_name=el.get("toName") or out["to_name"], kind=CONTROLS[el.tag])
            if el.tag == "Choices" and el.get("choice") == "multiple":
                out["kind"] = "multilabel"
            break
    if out["to_name"] in objects and objects[out["to_name"]]:
        out["data_key"] = objects[out["to_name"]]
    return out


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"status": "error", "message": message})


def create_app(predict: Predictor, model_version: str, model_kind: str) -> FastAPI:
    """``model_kind``: classification or ner (what ``predict`` returns)."""
    app = FastAPI(title="lmforge ML backend for Label Studio")
    state: dict[str, Any] = {"config": parse_config(None)}

    @app.get("/health")
    def health() -> dict:
        return {"status": "UP", "model_class": f"lmforge:{model_kind}", "model_version": model_version}

    @app.post("/setup")
    async def setup(request: Request):
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if body.get("schema") or body.get("label_config"):
                state["config"] = parse_config(body.get("schema") or body.get("label_config"))
        except ValueError as e:
            return _error(400, str(e))
        return {"model_version": model_version}

    @app.post("/predict")
    async def predict_route(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
            return _error(400, "expected {\"tasks\": [{\"data\": {\"text\": ...}}, ...]}")
        try:
            cfg = parse_config(body["label_config"]) if body.get("label_config") else state["config"]
        except ValueError as e:
            return _error(400, str(e))
        texts = []
        for k, task in enumerate(body["tasks"]):
            data = task.get("data") if isinstance(task, dict) else None
            text = data.get(cfg["data_key"]) if isinstance(data, dict) else None
            if not isinstance(text, str):
                return _error(400, f"tasks[{k}].data has no text under '{cfg['data_key']}'")
            texts.append(text)
        preds = predict(texts) if texts else []
        names = (cfg["from_name"], cfg["to_name"])
        results = []
        for task, text, p in zip(body["tasks"], texts, preds):
            if model_kind == "ner":
                spans = [{"start": e["start"], "end": e["end"], "text": text[e["start"]:e["end"]], "label": e["type"]}
                         for e in p.get("entities", [])]
                res = ls_result("ner", text, spans, names, task.get("id", 0))
                scores = [e.get("score", 1.0) for e in p.get("entities", [])]
                score = sum(scores) / len(scores) if scores else 1.0
            else:
                value = p.get("labels", p.get("label"))
                res = ls_result("classification", text, value, names, task.get("id", 0))
                score = float(p.get("score", 1.0))
            for r in res:
                r.pop("origin", None)
            results.append({"result": res, "score": score, "model_version": model_version})
        return {"results": results}

    return app
