"""The SQLite labeling project: schema, validation, undo/skip, predictions, durability under kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from lmforge.errors import InputError
from lmforge.label.project import SCHEMA_VERSION, Project
from lmforge.label.values import LabelError, NotFoundError


def _clf(tmp_path, n=3):
    p = Project.create(tmp_path / "p.db", "classification", ["pos", "neg"])
    p.add_examples([{"id": f"e{i}", "text": f"text {i}", "meta": {"k": i}} for i in range(n)])
    return p


def test_schema_wal_and_info(tmp_path):
    p = _clf(tmp_path)
    assert p.schema_version == SCHEMA_VERSION
    assert p._q("PRAGMA journal_mode")[0][0] == "wal"
    assert (p.kind, p.labels, len(p)) == ("classification", ["pos", "neg"], 3)
    tables = {r[0] for r in p._q("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"examples", "annotations", "predictions", "audit", "info"} <= tables
    p.close()
    again = Project(tmp_path / "p.db")
    assert again.example("e1") == {"id": "e1", "text": "text 1", "meta": {"k": 1}, "kind": "classification",
                                   "labels": ["pos", "neg"], "seq": 2}


def test_open_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Project(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(InputError, match="not a labeling project"):
        Project(junk)
    newer = tmp_path / "newer.db"
    Project.create(newer, "ner", ["PER"]).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="newer"):
        Project(newer)
    with pytest.raises(LabelError, match="unknown task kind"):
        Project.create(tmp_path / "x.db", "regression", [])


def test_empty_and_locked_databases(tmp_path, monkeypatch):
    import lmforge.label.project as project

    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(InputError, match="not a labeling project"):
        Project(empty)
    p = _clf(tmp_path)
    p.close()
    monkeypatch.setattr(project, "LOCK_TIMEOUT", 0.2)
    other = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process mid-transaction
    try:
        with pytest.raises(InputError, match="locked by another process.*waited 0.2 s"):
            q = Project(tmp_path / "p.db")
            q.annotate("e0", "pos", "ann")
    finally:
        other.execute("ROLLBACK")
        other.close()
    q = Project(tmp_path / "p.db")
    assert q.history("e0") == []  # nothing half-written
    q.annotate("e0", "pos", "ann")
    assert q.value_of("e0", "ann") == "pos"


def test_add_examples_idempotent_and_conflicts(tmp_path):
    p = _clf(tmp_path)
    assert p.add_examples([{"id": "e0", "text": "text 0"}, {"id": "new", "text": "t"}]) == {"added": 1, "existing": 1}
    with pytest.raises(LabelError, match="another text"):
        p.add_examples([{"id": "e0", "text": "changed"}])
    assert len(p) == 4


def test_validation(tmp_path):
    p = _clf(tmp_path)
    with pytest.raises(LabelError, match="not one of the labels"):
        p.annotate("e0", "maybe")
    with pytest.raises(NotFoundError):
        p.annotate("nope", "pos")
    with pytest.raises(LabelError, match="annotator"):
        p.annotate("e0", "pos", annotator="  ")
    m = Project.create(tmp_path / "m.db", "multilabel", ["a", "b", "c"])
    m.add_examples([{"id": "1", "text": "x"}])
    assert m.annotate("1", ["c", "a", "a"]) == ["a", "c"]  # project label order, no duplicates
    assert m.annotate("1", []) == []
    n = Project.create(tmp_path / "n.db", "ner", ["LOC"])
    n.add_examples([{"id": "1", "text": "😀 我爱北京 ok"}])
    assert n.annotate("1", [{"start": 4, "end": 6, "label": "LOC"}]) == [
        {"start": 4, "end": 6, "label": "LOC", "text": "北京"}]
    with pytest.raises(LabelError, match="inside the text"):
        n.annotate("1", [{"start": 4, "end": 10, "label": "LOC"}])
    with pytest.raises(LabelError, match="UTF-16"):  # JavaScript offsets of 北京 are 5..7
        n.annotate("1", [{"start": 5, "end": 7, "label": "LOC", "text": "北京"}])
    with pytest.raises(LabelError, match="unknown span label"):
        n.annotate("1", [{"start": 4, "end": 6, "label": "PER"}])


def test_annotate_skip_undo_next_progress(tmp_path):
    p = _clf(tmp_path)
    assert p.next_unlabeled("ann")["id"] == "e0"
    p.annotate("e0", "pos", "ann")
    p.skip("e1", "ann")
    assert p.next_unlabeled("ann")["id"] == "e2"
    assert p.next_unlabeled("other")["id"] == "e0"  # per annotator
    assert p.progress("ann") == {"total": 3, "done": 1, "skipped": 1, "remaining": 1}
    assert p.undo("ann") == "e1"  # the skip
    assert p.next_unlabeled("ann")["id"] == "e1"
    p.annotate("e0", "neg", "ann")  # a correction
    assert p.value_of("e0", "ann") == "neg"
    assert p.undo("ann") == "e0"
    assert p.value_of("e0", "ann") == "pos"  # the earlier value is current again
    assert p.undo("ann") == "e0"
    assert p.value_of("e0", "ann") is None
    assert p.undo("ann") is None
    hist = p.history("e0")
    assert [h["value"] for h in hist] == ["pos", "neg"] and all(h["undone_at"] for h in hist)
    events = [a["event"] for a in p.audit_log()]
    assert events[:2] == ["create", "add_examples"] and events.count("undo") == 3


def test_predictions_and_rows(tmp_path):
    p = _clf(tmp_path)
    p.set_predictions([{"id": "e0", "value": "neg", "score": 0.6}], model="m1")
    p.set_predictions([{"id": "e0", "value": "pos", "score": 0.9}, {"id": "e1", "value": "pos", "score": 0.5}], "m2")
    p.set_predictions([{"id": "e0", "value": "neg", "score": 0.7}], model="m1")  # replaces m1's
    preds = p.predictions("e0")
    assert [(x["model"], x["value"], x["score"]) for x in preds] == [("m2", "pos", 0.9), ("m1", "neg", 0.7)]
    ex = p.next_unlabeled("a")
    assert ex["prediction"]["model"] == "m2" and ex["prediction"]["value"] == "pos"
    with pytest.raises(LabelError):
        p.set_predictions([{"id": "e0", "value": "bogus", "score": 1}], "m3")
    p.annotate("e0", "pos", "a")
    p.annotate("e0", "neg", "b")
    p.annotate("e0", "neg", "c")
    p.annotate("e1", "pos", "a")
    p.annotate("e1", "neg", "b")  # a tie: the latest wins
    rows = {r["id"]: r for r in p.rows()}
    assert rows["e0"]["value"] == "neg" and rows["e1"]["value"] == "neg" and "e2" not in rows
    assert rows["e0"]["annotators"] == {"a": "pos", "b": "neg", "c": "neg"}
    assert {r["id"]: r["value"] for r in p.rows(annotator="a")} == {"e0": "pos", "e1": "pos"}
    assert [r["value"] for r in p.rows(include_unlabeled=True)][-1] is None


WRITER = textwrap.dedent("""
    import sys
    from lmforge.label.project import Project
    p = Project(sys.argv[1])
    for i in range(100000):
        p.annotate(f"e{i % 500}", "pos" if i % 2 else "neg", annotator=f"w{i // 500}")
        print(i, flush=True)  # reported only after the commit returned
""")


def test_kill_9_loses_no_saved_annotation(tmp_path):
    p = Project.create(tmp_path / "p.db", "classification", ["pos", "neg"])
    p.add_examples([{"id": f"e{i}", "text": str(i)} for i in range(500)])
    p.close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "p.db")], stdout=subprocess.PIPE, text=True)
    reported = -1
    for line in proc.stdout:
        reported = int(line)
        if reported >= 60:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    p = Project(tmp_path / "p.db")
    assert p._q("PRAGMA integrity_check")[0][0] == "ok"
    saved = p._q("SELECT COUNT(*) FROM annotations")[0][0]
    assert saved >= reported + 1  # every annotation reported saved is there (maybe one more)
    assert p.value_of(f"e{reported % 500}", f"w{reported // 500}") == ("pos" if reported % 2 else "neg")
