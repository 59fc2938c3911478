"""A labeling project: one SQLite file holding examples, annotations, model predictions and an audit trail.

The file is opened in WAL mode with ``synchronous=FULL`` and every action is its own transaction, so
a killed process (or a power cut) loses no annotation that was reported saved. Annotations are never
overwritten: a new one, a skip or an undo adds or marks rows, and an annotator's current value for an
example is their latest row that was not undone.

Values by kind are described (and checked) in ``values.py``.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import InputError
from .values import KINDS, LabelError, NotFoundError, normalize_value

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS examples(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    kind TEXT NOT NULL,
    label_set TEXT,                      -- JSON list; NULL: the project's labels
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotations(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    example TEXT NOT NULL REFERENCES examples(id),
    annotator TEXT NOT NULL,
    value TEXT,                          -- JSON, NULL for a skip
    status TEXT NOT NULL CHECK(status IN ('done', 'skipped')),
    created_at TEXT NOT NULL,
    undone_at TEXT,
    source TEXT NOT NULL DEFAULT 'manual',
    extra TEXT);                         -- JSON: the imported original (e.g. a Label Studio annotation)
CREATE INDEX IF NOT EXISTS annotations_by_example ON annotations(example, annotator);
CREATE INDEX IF NOT EXISTS annotations_by_annotator ON annotations(annotator, id);
CREATE TABLE IF NOT EXISTS predictions(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    example TEXT NOT NULL REFERENCES examples(id),
    model TEXT NOT NULL,
    value TEXT NOT NULL,
    score REAL,
    created_at TEXT NOT NULL,
    extra TEXT,
    UNIQUE(example, model));
CREATE TABLE IF NOT EXISTS audit(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}');
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


LOCK_TIMEOUT = 30.0  # seconds a write waits for another process's transaction before giving up


def _locked(path: Path, e: sqlite3.OperationalError) -> InputError:
    return InputError(f"{path}: the project database is locked by another process ({e}; waited "
                      f"{LOCK_TIMEOUT:g} s)", "wait for the other writer (a `lmforge label` command or an "
                      "annotation page with a long transaction) to finish, or close it, then retry; nothing "
                      "was written")


class Project:
    """``Project(path)`` opens an existing project; ``Project.create`` / ``open_or_create`` make one."""

    def __init__(self, path: str | Path, _create: tuple[str, list[str]] | None = None):
        self.path = Path(path)
        if _create is None and not self.path.is_file():
            raise InputError(f"labeling project not found: {self.path}",
                             "create it with `lmforge label import FILE --project PATH`")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                       timeout=LOCK_TIMEOUT)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.OperationalError as e:
            if "locked" in str(e):
                raise _locked(self.path, e) from None
            raise InputError(f"{self.path}: cannot open the project database ({e})",
                             "check the file and its directory are readable and writable") from None
        except sqlite3.DatabaseError as e:
            raise InputError(f"{self.path}: not a labeling project ({e})", "pass a .db made by `lmforge label`") from None
        if version > SCHEMA_VERSION:
            raise InputError(f"{self.path}: project schema version {version} is newer than this lmforge "
                             f"({SCHEMA_VERSION})", "upgrade lmforge")
        if version == 0:
            if _create is None:
                raise InputError(f"{self.path}: not a labeling project", "pass a .db made by `lmforge label`")
            kind, labels = _create
            if kind not in KINDS:
                raise LabelError(f"unknown task kind {kind!r}", f"use one of {', '.join(KINDS)}")
            with self._tx():
                for stmt in re.sub(r"--[^\n]*", "", _SCHEMA).split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._set_info(kind=kind, labels=_unique(labels), created_at=now())
                self._audit("create", "lmforge", {"kind": kind, "labels": labels})

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, kind: str, labels: Iterable[str] = ()) -> "Project":
        if Path(path).exists() and Path(path).stat().st_size:
            raise LabelError(f"{path} already exists", "open it instead, or choose a new --project path")
        return cls(path, _create=(kind, list(labels)))

    @classmethod
    def open_or_create(cls, path: str | Path, kind: str | None = None, labels: Iterable[str] = ()) -> "Project":
        if Path(path).is_file() and Path(path).stat().st_size:
            p = cls(path)
            if kind is not None and kind != p.kind:
                raise LabelError(f"{path} is a {p.kind} project, not {kind}", "drop --kind or use another --project")
            p.add_labels(labels)
            return p
        if kind is None:
            raise LabelError(f"{path} does not exist and no task kind was given",
                             f"pass --kind ({', '.join(KINDS)}) to create it")
        return cls(path, _create=(kind, list(labels)))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "busy" in str(e):
                    raise _locked(self.path, e) from None
                raise
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _q(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- schema ---------------------------------------------------------------------------------
    def _set_info(self, **kv) -> None:
        for k, v in kv.items():
            self._db.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (k, _dumps(v)))

    def info(self) -> dict:
        return {r["key"]: json.loads(r["value"]) for r in self._q("SELECT key, value FROM info")}

    @property
    def kind(self) -> str:
        return self.info()["kind"]

    @property
    def labels(self) -> list[str]:
        return self.info()["labels"]

    @property
    def schema_version(self) -> int:
        return self._q("PRAGMA user_version")[0][0]

    def add_labels(self, names: Iterable[str], who: str = "lmforge") -> list[str]:
        """Add label names (kept in order of first appearance); returns the new ones."""
        names = [str(n).strip() for n in names if str(n).strip()]
        with self._tx():
            have = self.labels
            new = [n for n in _unique(names) if n not in have]
            if new:
                self._set_info(labels=have + new)
                self._audit("add_labels", who, {"labels": new})
        return new

    def _audit(self, event: str, who: str, detail: dict) -> None:
        self._db.execute("INSERT INTO audit(event, who, at, detail) VALUES (?, ?, ?, ?)",
                         (event, who, now(), _dumps(detail)))

    def audit_log(self) -> list[dict]:
        return [{"event": r["event"], "who": r["who"], "at": r["at"], "detail": json.loads(r["detail"])}
                for r in self._q("SELECT * FROM audit ORDER BY id")]

    # -- examples -------------------------------------------------------------------------------
    def add_examples(self, records: Iterable[dict], who: str = "import") -> dict:
        """Add ``{"id", "text", "meta"}`` records; an id already present with the same text is kept as
        it is (re-importing a file is harmless), with another text it is an error."""
        added = existing = 0
        kind = self.kind
        with self._tx() as db:
            for rec in records:
                rid, text = str(rec["id"]), rec["text"]
                if not isinstance(text, str):
                    raise LabelError(f"example {rid}: text must be a string, got {type(text).__name__}")
                row = db.execute("SELECT text FROM examples WHERE id = ?", (rid,)).fetchone()
                if row is not None:
                    if row["text"] != text:
                        raise LabelError(f"example id {rid!r} is already in {self.path} with another text",
                                         "give the examples unique ids (or use a new project)")
                    existing += 1
                    continue
                label_set = rec.get("label_set")
                db.execute("INSERT INTO examples(id, text, meta, kind, label_set, created_at) VALUES (?,?,?,?,?,?)",
                           (rid, text, _dumps(rec.get("meta") or {}), kind,
                            _dumps(list(label_set)) if label_set else None, now()))
                added += 1
            self._audit("add_examples", who, {"added": added, "existing": existing})
        return {"added": added, "existing": existing}

    def _example(self, row: sqlite3.Row) -> dict:
        return {"id": row["id"], "text": row["text"], "meta": json.loads(row["meta"]), "kind": row["kind"],
                "labels": json.loads(row["label_set"]) if row["label_set"] else self.labels, "seq": row["seq"]}

    def example(self, example_id: str) -> dict:
        rows = self._q("SELECT * FROM examples WHERE id = ?", (str(example_id),))
        if not rows:
            raise NotFoundError(f"no example {example_id!r} in {self.path.name}")
        return self._example(rows[0])

    def examples(self) -> Iterator[dict]:
        for row in self._q("SELECT * FROM examples ORDER BY seq"):
            yield self._example(row)

    def __len__(self) -> int:
        return self._q("SELECT COUNT(*) FROM examples")[0][0]

    # -- annotating -----------------------------------------------------------------------------
    def annotate(self, example_id: str, value: Any, annotator: str = "default", source: str = "manual",
                 extra: dict | None = None, created_at: str | None = None, if_changed: bool = False) -> Any:
        """Record ``annotator``'s value for an example (validated and normalised); committed on return.
        ``if_changed``: nothing is written when it is the annotator's current value already (re-imports)."""
        ex = self.example(example_id)
        value = normalize_value(ex["kind"], value, ex["labels"], ex["text"], f"example {ex['id']}")
        with self._tx():
            if if_changed and self.value_of(ex["id"], annotator) == value:
                return value
            self._db.execute("INSERT INTO annotations(example, annotator, value, status, created_at, source, extra)"
                             " VALUES (?,?,?,?,?,?,?)", (ex["id"], _who(annotator), _dumps(value), "done",
                                                         created_at or now(), source, _extra(extra)))
            self._audit("annotate", _who(annotator), {"example": ex["id"], "source": source})
        return value

    def skip(self, example_id: str, annotator: str = "default", source: str = "manual",
             extra: dict | None = None, created_at: str | None = None) -> None:
        ex = self.example(example_id)
        with self._tx():
            self._db.execute("INSERT INTO annotations(example, annotator, value, status, created_at, source, extra)"
                             " VALUES (?,?,NULL,'skipped',?,?,?)", (ex["id"], _who(annotator), created_at or now(),
                                                                  source, _extra(extra)))
            self._audit("skip", _who(annotator), {"example": ex["id"]})

    def undo(self, annotator: str = "default") -> str | None:
        """Undo ``annotator``'s latest action (an annotation or a skip) that is not undone yet; returns
        the example's id, or None when there is nothing to undo."""
        who = _who(annotator)
        with self._tx() as db:
            row = db.execute("SELECT id, example, status FROM annotations WHERE annotator = ? AND undone_at IS NULL "
                             "AND source = 'manual' ORDER BY id DESC LIMIT 1", (who,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE annotations SET undone_at = ? WHERE id = ?", (now(), row["id"]))
            self._audit("undo", who, {"example": row["example"], "undid": row["status"]})
        return row["example"]

    def _current_rows(self, annotator: str | None = None, status: str | None = "done") -> list[sqlite3.Row]:
        """Each (example, annotator)'s latest action that was not undone (SQLite takes the bare columns
        from the MAX(id) row)."""
        sql = ("SELECT example, annotator, value, status, created_at, source, extra, MAX(id) AS id FROM annotations "
               "WHERE undone_at IS NULL" + (" AND annotator = ?" if annotator else "") +
               " GROUP BY example, annotator")
        rows = self._q(sql, (_who(annotator),) if annotator else ())
        return [r for r in rows if status is None or r["status"] == status]

    def current(self, annotator: str | None = None) -> dict[str, dict[str, Any]]:
        """``{example id: {annotator: value}}`` of every current (not skipped, not undone) annotation."""
        out: dict[str, dict[str, Any]] = {}
        for r in self._current_rows(annotator):
            out.setdefault(r["example"], {})[r["annotator"]] = json.loads(r["value"])
        return out

    def value_of(self, example_id: str, annotator: str) -> Any:
        """``annotator``'s current value for one example (None when none, or skipped)."""
        rows = self._q("SELECT value, status FROM annotations WHERE example = ? AND annotator = ? AND undone_at IS NULL "
                       "ORDER BY id DESC LIMIT 1", (str(example_id), _who(annotator)))
        return json.loads(rows[0]["value"]) if rows and rows[0]["status"] == "done" else None

    def annotators(self) -> list[str]:
        return [r[0] for r in self._q("SELECT DISTINCT annotator FROM annotations ORDER BY annotator")]

    def history(self, example_id: str | None = None) -> list[dict]:
        """Every annotation row (undone ones too), oldest first."""
        sql = "SELECT * FROM annotations" + (" WHERE example = ?" if example_id is not None else "") + " ORDER BY id"
        return [{"id": r["id"], "example": r["example"], "annotator": r["annotator"], "status": r["status"],
                 "value": json.loads(r["value"]) if r["value"] is not None else None, "created_at": r["created_at"],
                 "undone_at": r["undone_at"], "source": r["source"],
                 "extra": json.loads(r["extra"]) if r["extra"] else None}
                for r in self._q(sql, (str(example_id),) if example_id is not None else ())]

    def next_unlabeled(self, annotator: str = "default") -> dict | None:
        """The first example (in import order) that ``annotator`` has neither labeled nor skipped, with
        the best-scoring model prediction under ``prediction`` (None without one)."""
        rows = self._q("SELECT * FROM examples e WHERE NOT EXISTS (SELECT 1 FROM annotations a WHERE "
                       "a.example = e.id AND a.annotator = ? AND a.undone_at IS NULL) ORDER BY seq LIMIT 1",
                       (_who(annotator),))
        if not rows:
            return None
        ex = self._example(rows[0])
        preds = self.predictions(ex["id"])
        ex["prediction"] = preds[0] if preds else None
        return ex

    def progress(self, annotator: str = "default") -> dict:
        rows = self._current_rows(annotator, status=None)
        done = sum(r["status"] == "done" for r in rows)
        total = len(self)
        return {"total": total, "done": done, "skipped": len(rows) - done, "remaining": total - len(rows)}

    # -- predictions ----------------------------------------------------------------------------
    def set_predictions(self, rows: Iterable[dict], model: str = "model") -> int:
        """Store ``{"id", "value", "score"[, "extra"]}`` rows from ``model`` (replacing its earlier ones)."""
        n = 0
        with self._tx() as db:
            for r in rows:
                ex = self.example(r["id"])
                value = normalize_value(ex["kind"], r["value"], ex["labels"], ex["text"], f"prediction for {ex['id']}")
                score = r.get("score")
                db.execute("INSERT OR REPLACE INTO predictions(example, model, value, score, created_at, extra) "
                           "VALUES (?,?,?,?,?,?)", (ex["id"], model, _dumps(value),
                                                    None if score is None else float(score), now(),
                                                    _extra(r.get("extra"))))
                n += 1
            self._audit("set_predictions", model, {"count": n})
        return n

    def predictions(self, example_id: str, by: str = "score") -> list[dict]:
        """An example's predictions, the highest score first (``by="id"``: in the order stored)."""
        order = "id" if by == "id" else "score IS NULL, score DESC, id"
        return [{"model": r["model"], "value": json.loads(r["value"]), "score": r["score"], "created_at": r["created_at"],
                 "extra": json.loads(r["extra"]) if r["extra"] else None}
                for r in self._q(f"SELECT * FROM predictions WHERE example = ? ORDER BY {order}", (str(example_id),))]

    # -- export ---------------------------------------------------------------------------------
    def rows(self, annotator: str | None = None, include_unlabeled: bool = False) -> Iterator[dict]:
        """Export rows ``{"id", "text", "meta", "value", "annotators"}``: ``value`` is ``annotator``'s
        value, or else the majority of the current annotations (ties: the latest one); None when the
        example has none (yielded only with ``include_unlabeled``)."""
        cur: dict[str, list[sqlite3.Row]] = {}
        for r in self._current_rows(annotator):
            cur.setdefault(r["example"], []).append(r)
        for ex in self.examples():
            anns = cur.get(ex["id"], [])
            if not anns and not include_unlabeled:
                continue
            yield {"id": ex["id"], "text": ex["text"], "meta": ex["meta"], "value": _majority(anns),
                   "annotators": {a["annotator"]: json.loads(a["value"]) for a in anns}}

    def stats(self) -> dict:
        per = {}
        for a in self.annotators():
            p = self.progress(a)
            per[a] = {"done": p["done"], "skipped": p["skipped"]}
        labeled = len({r["example"] for r in self._current_rows()})
        return {"path": str(self.path), "schema_version": self.schema_version, "kind": self.kind,
                "labels": self.labels, "examples": len(self), "labeled": labeled, "annotators": per,
                "predictions": self._q("SELECT COUNT(*) FROM predictions")[0][0]}


def _majority(anns: list[sqlite3.Row]) -> Any:
    if not anns:
        return None
    votes: dict[str, list[int]] = {}
    for a in anns:
        votes.setdefault(a["value"], []).append(a["id"])
    best = max(votes.items(), key=lambda kv: (len(kv[1]), max(kv[1])))
    return json.loads(best[0])


def _who(annotator: str | None) -> str:
    who = str(annotator or "").strip()
    if not who or len(who) > 200:
        raise LabelError("an annotator name must be 1-200 characters", "pass --annotator NAME")
    return who


def _extra(extra: dict | None) -> str | None:
    return _dumps(extra) if extra else None


def _unique(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        n = str(n).strip()
        if n and n not in out:
            out.append(n)
    return out
