"""The evaluate stage: score each fine-tuned variant on the held-out test split."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from ..config import StrictModel
from ..runs import StageResult, atomic_write_json, atomic_write_text
from .metrics import classification_metrics


class EvaluateConfig(StrictModel):
    batch_size: int = Field(64, ge=1)


def run(cfg: EvaluateConfig, finetune_cfg, finetune_dir: Path, out_dir: Path, progress: bool = True) -> StageResult:
    from ..tasks.classification import load_classifier, predict, read_labeled
    from ..tokenizer import Tok

    rows = read_labeled(finetune_cfg.data.test, finetune_cfg.data.text_field, finetune_cfg.data.label_field)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for variant_dir in sorted(p for p in Path(finetune_dir).iterdir() if (p / "model" / "config.json").exists()):
        model_dir = variant_dir / "model"
        model = load_classifier(model_dir)
        tok = Tok.load(model_dir)
        label_id = {y: i for i, y in enumerate(model.labels)}
        unknown = sorted({y for _, y in rows} - set(label_id))
        if unknown:
            from ..errors import InputError

            raise InputError(f"{finetune_cfg.data.test}: labels {unknown} never occur in the training data",
                             "the test set must use the training set's labels")
        probs = predict(model, tok, [t for t, _ in rows], finetune_cfg.max_len, cfg.batch_size, progress=progress)
        y = [label_id[lab] for _, lab in rows]
        m = classification_metrics(y, probs, model.labels)
        results[variant_dir.name] = m
        lines = [json.dumps({"text": t, "label": lab, "pred": model.labels[int(p.argmax())],
                             "probs": [round(float(x), 4) for x in p]}, ensure_ascii=False)
                 for (t, lab), p in zip(rows, probs)]
        atomic_write_text(out_dir / f"predictions_{variant_dir.name}.jsonl", "\n".join(lines) + "\n")
    atomic_write_json(out_dir / "metrics.json", results)
    headline = {v: {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                    **({"roc_auc": round(m["roc_auc"], 4)} if "roc_auc" in m else {})} for v, m in results.items()}
    return StageResult(metrics=headline, outputs=[str(out_dir / "metrics.json")])
