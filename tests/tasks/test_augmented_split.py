"""Augmented copies never straddle fine-tuning's train/validation split or its folds."""

from __future__ import annotations

import json

from lmforge.tasks.classification import Classification, ClassificationConfig
from lmforge.tasks.stage import TaskData, split_train_val


def test_copies_stay_with_their_source(tmp_path):
    rows = []
    for i in range(60):
        rows.append({"id": f"r{i}", "text": f"text number {i}", "label": "pos" if i % 2 else "neg"})
        for k in range(2):
            rows.append({"id": f"r{i}#aug{k}", "text": f"copy {k} of {i}", "label": rows[-1 - k]["label"],
                         "meta": {"augmented_from": f"r{i}"}})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task, data = Classification(ClassificationConfig()), TaskData(train=str(path), val_fraction=0.2)
    examples = task.read(str(path))
    assert sum(1 for e in examples if "augmented_from" in e) == 120
    train, val = split_train_val(task, examples, data)
    side = {}
    for name, part in (("train", train), ("val", val)):
        for e in part:
            side.setdefault(e.get("augmented_from", e["id"]), set()).add(name)
    assert val and all(len(s) == 1 for s in side.values())
