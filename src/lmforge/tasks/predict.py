"""``lmforge predict``: a fine-tuned model over a file (or stdin), one JSON line per example."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import InputError
from ..runs import atomic_write_text


def predict_texts(model_dir: str | Path, inputs: list, overrides: dict | None = None, batch_size: int = 64) -> list[dict]:
    """Predictions for raw inputs (texts, or dicts with the task's fields), in order."""
    from .stage import encode_all, load_task_model, predict_features

    task, model, tok = load_task_model(model_dir, overrides)
    examples = [task.example(x, i) for i, x in enumerate(inputs)]
    return predict_features(task, model, tok, encode_all(task, examples, tok), batch_size)


def predict_file(model_dir: Path, data: Path | None, output: Path | None, overrides: dict | None = None,
                 batch_size: int = 64) -> int:
    from .stage import encode_all, load_task_model, predict_features

    task, model, tok = load_task_model(model_dir, overrides)
    if data is None:
        lines = [line.rstrip("\n") for line in sys.stdin]
        inputs = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                try:
                    inputs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"stdin:{n}: invalid JSON ({e.msg})", "send one text or JSON object per line") from None
            else:
                inputs.append(line)
        examples = [task.example(x, i) for i, x in enumerate(inputs)]
    else:
        examples = task.read(data)
    preds = predict_features(task, model, tok, encode_all(task, examples, tok), batch_size,
                             progress=output is not None)
    text = "".join(json.dumps({"id": e["id"], **p}, ensure_ascii=False) + "\n" for e, p in zip(examples, preds))
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(output, text)
    return len(preds)
