"""Import/export: jsonl/csv/tsv and the data stage's output in, finetune's formats out (read back by
the real task readers), Label Studio round trips (CJK, emoji, old UTF-16 offsets), the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmforge.label.cli import app
from lmforge.label.io import conll_tokens, export, import_file
from lmforge.label.labelstudio import index_to_utf16, labeling_config, utf16_to_index
from lmforge.label.project import Project
from lmforge.label.values import LabelError

DATA = Path(__file__).parent / "data"


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_utf16_offsets():
    text = "a😀b👨‍👩‍👧c"
    for i in range(len(text) + 1):
        u = index_to_utf16(text, i)
        assert u == len(text[:i].encode("utf-16-le")) // 2
        assert utf16_to_index(text, u) == i


def test_classification_jsonl_roundtrip_read_by_finetune(tmp_path):
    from lmforge.tasks.classification import Classification, ClassificationConfig

    src = _jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "好吃 😋", "label": "pos", "lang": "zh"},
                                         {"id": "b", "text": "awful", "label": "neg"},
                                         {"id": "c", "text": "no label yet"}])
    res = import_file(tmp_path / "p.db", src)
    assert (res["added"], res["annotations"], res["kind"], res["labels"]) == (3, 2, "classification", ["pos", "neg"])
    with Project(tmp_path / "p.db") as p:
        p.annotate("c", "pos", "alice")
        assert p.example("a")["meta"] == {"lang": "zh"}
    assert import_file(tmp_path / "p.db", src)["annotations"] == 2  # re-import: nothing new written
    with Project(tmp_path / "p.db") as p:
        assert len([h for h in p.history() if h["source"] == "import"]) == 2
    out = tmp_path / "train.jsonl"
    assert export(tmp_path / "p.db", "jsonl", out) == 3
    task = Classification(ClassificationConfig())
    examples = task.read(out)
    assert [(e["id"], e["text"], e["label"]) for e in examples] == [("a", "好吃 😋", "pos"), ("b", "awful", "neg"),
                                                                     ("c", "no label yet", "pos")]


def test_multilabel_csv_and_tsv(tmp_path):
    from lmforge.tasks.classification import Classification, ClassificationConfig

    csv = tmp_path / "in.csv"
    csv.write_text('id,text,label\n1,"sports, and politics","sports,politics"\n2,just weather,weather\n3,none,\n',
                   encoding="utf-8")
    res = import_file(tmp_path / "m.db", csv, kind="multilabel")
    assert res["labels"] == ["sports", "politics", "weather"] and res["annotations"] == 2
    out = tmp_path / "m.jsonl"
    export(tmp_path / "m.db", "jsonl", out)
    got = Classification(ClassificationConfig(multi_label=True)).read(out)
    assert [(e["id"], e["label"]) for e in got] == [("1", ["sports", "politics"]), ("2", ["weather"])]
    tsv = tmp_path / "in.tsv"
    tsv.write_text("sentence\tlabel\nhello there\tgreeting\n", encoding="utf-8")
    res = import_file(tmp_path / "t.db", tsv)
    assert res["kind"] == "classification" and res["annotations"] == 1


def test_data_split_output(tmp_path):
    from lmforge.data.config import SplitConfig
    from lmforge.data.split import split_files

    docs = _jsonl(tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": f"文档 {i}", "meta": {"label": "ab"[i % 2]}}
                                            for i in range(20)])
    split_files([docs], tmp_path / "splits", SplitConfig(val_fraction=0.2, test_fraction=0.2))
    res = import_file(tmp_path / "p.db", tmp_path / "splits")
    assert res["added"] == 20 and res["annotations"] == 20
    with Project(tmp_path / "p.db") as p:
        splits = [ex["meta"]["split"] for ex in p.examples()]
        assert sorted(set(splits)) == ["test", "train", "val"] and splits.count("test") == 4
        assert all(p.value_of(f"d{i}", "import") == "ab"[i % 2] for i in range(20))


NER_ROWS = [{"id": "zh", "text": "😀我爱北京天安门", "spans": [{"start": 3, "end": 5, "label": "LOC", "text": "北京"},
                                                            {"start": 5, "end": 8, "label": "LOC"}]},
            {"id": "zh2", "text": "张三在上海🎉工作", "spans": [[0, 2, "PER"], [3, 5, "LOC"]]},
            {"id": "en", "text": "Bob moved to New York, then Paris.",
             "entities": [{"start": 0, "end": 3, "type": "PER"}, {"start": 13, "end": 21, "type": "LOC"},
                          {"start": 28, "end": 33, "type": "LOC"}]}]


def test_ner_offsets_and_conll_read_by_finetune(tmp_path):
    from lmforge.eval.ner_metrics import spans_from_tags
    from lmforge.tasks.ner import NER, NERConfig

    res = import_file(tmp_path / "n.db", _jsonl(tmp_path / "n.jsonl", NER_ROWS))
    assert res["kind"] == "ner" and res["labels"] == ["LOC", "PER"]
    with Project(tmp_path / "n.db") as p:
        for r in p.rows():
            assert all(r["text"][s["start"]:s["end"]] == s["text"] for s in r["value"])
        assert [s["text"] for s in p.value_of("zh2", "import")] == ["张三", "上海"]
    export(tmp_path / "n.db", "jsonl", tmp_path / "out.jsonl")
    back = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["text"] for s in back[2]["spans"]] == ["Bob", "New York", "Paris"]
    for fmt_rows in ([NER_ROWS[0], NER_ROWS[1]], [NER_ROWS[2]]):  # a Chinese (characters) and an English file
        name = fmt_rows[0]["id"]
        import_file(tmp_path / f"{name}.db", _jsonl(tmp_path / f"{name}.jsonl", fmt_rows))
        export(tmp_path / f"{name}.db", "conll", tmp_path / f"{name}.conll")
        examples = NER(NERConfig()).read(tmp_path / f"{name}.conll")
        with Project(tmp_path / f"{name}.db") as p:
            want = [[s["text"] for s in r["value"]] for r in p.rows()]
            texts = [r["text"] for r in p.rows()]
        got = []
        for e in examples:
            ents = spans_from_tags(e["tags"], "IOB2", "strict")
            got.append([e["text"][e["offsets"][a][0]:e["offsets"][z - 1][1]] for _, a, z in ents])
        assert got == want
        if name == "zh":  # characters joined without spaces: the very text
            assert [e["text"] for e in examples] == [t.replace(" ", "") for t in texts]
    assert conll_tokens("Paris, 北京ok", [0, 5]) == [(0, 5), (5, 6), (7, 8), (8, 9), (9, 11)]


def test_labelstudio_roundtrip_lossless(tmp_path):
    for name in ("labelstudio_ner_zh.json", "labelstudio_sentiment.json"):
        src = DATA / name
        db = tmp_path / f"{name}.db"
        res = import_file(db, src)
        export(db, "labelstudio", tmp_path / "out.json")
        assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == json.loads(src.read_text("utf-8"))
        if "ner" in name:
            assert (res["kind"], res["annotations"], res["skipped"], res["predictions"]) == ("ner", 4, 1, 1)
            with Project(db) as p:
                v = p.value_of("101", "1")
                assert [(s["text"], s["label"]) for s in v] == [("北京", "LOC"), ("天安门", "LOC"), ("Bob", "PER"),
                                                                ("Paris", "LOC")]
                assert [s["text"] for s in p.value_of("102", "1")] == ["Apple", "上海", "iPhone 🍎"]
                assert p.predictions("101")[0]["score"] == 0.83
                assert p.value_of("103", "1") == []  # annotated: no entities
        else:
            assert res["kind"] == "classification" and res["labels"] == ["Positive", "Negative", "Neutral"]
    with Project(tmp_path / "labelstudio_sentiment.json.db") as p:
        assert "<Choices name=\"sentiment\" toName=\"text\" choice=\"single\">" in labeling_config(p)


def test_labelstudio_old_utf16_offsets_and_lmforge_annotations(tmp_path):
    res = import_file(tmp_path / "old.db", DATA / "labelstudio_ner_utf16.json")
    assert res["spans_dropped"] == 0
    with Project(tmp_path / "old.db") as p:
        assert [s["text"] for s in p.value_of("101", "1")] == ["北京", "天安门", "Bob", "Paris"]
        assert [s["text"] for s in p.value_of("102", "1")] == ["Apple", "上海", "iPhone 🍎"]
    forced = import_file(tmp_path / "forced.db", DATA / "labelstudio_ner_utf16.json", offsets="codepoints")
    with Project(tmp_path / "forced.db") as p:  # read as code points, spans after an emoji are off by one
        assert [s["text"] for s in p.value_of("101", "1")] != ["北京", "天安门", "Bob", "Paris"]
    assert forced["spans_dropped"] == 0
    # annotations made in lmforge: Label Studio layout out, the same values back in
    import_file(tmp_path / "n.db", _jsonl(tmp_path / "n.jsonl", NER_ROWS))
    with Project(tmp_path / "n.db") as p:
        p.annotate("zh", [{"start": 1, "end": 2, "label": "PER"}], "alice")
        p.skip("en", "alice")
    for offsets in ("codepoints", "utf16"):
        export(tmp_path / "n.db", "labelstudio", tmp_path / f"ls_{offsets}.json", offsets=offsets)
        tasks = json.loads((tmp_path / f"ls_{offsets}.json").read_text(encoding="utf-8"))
        zh = tasks[0]
        alice = [a for a in zh["annotations"] if a.get("lmforge_annotator") == "alice"][0]
        assert alice["result"][0]["value"] == {"start": 1 if offsets == "codepoints" else 2,
                                               "end": 2 if offsets == "codepoints" else 3, "text": "我",
                                               "labels": ["PER"]}
        assert [a["was_cancelled"] for a in tasks[2]["annotations"]] == [False, True]
        import_file(tmp_path / f"back_{offsets}.db", tmp_path / f"ls_{offsets}.json", offsets="auto")
        with Project(tmp_path / "n.db") as a, Project(tmp_path / f"back_{offsets}.db") as b:
            assert b.current() == a.current()


def test_errors(tmp_path):
    from lmforge.errors import InputError

    with pytest.raises(InputError, match="not found"):
        import_file(tmp_path / "p.db", tmp_path / "nope.jsonl")
    plain = _jsonl(tmp_path / "plain.jsonl", [{"text": "no labels"}])
    with pytest.raises(LabelError, match="--kind"):
        import_file(tmp_path / "p.db", plain)
    with pytest.raises(LabelError, match="--labels"):
        import_file(tmp_path / "p.db", plain, kind="classification")
    with pytest.raises(InputError, match="no text field"):
        import_file(tmp_path / "q.db", _jsonl(tmp_path / "x.jsonl", [{"body2": "x", "label": "a"}]))
    import_file(tmp_path / "c.db", plain, kind="classification", labels=["a"])
    with pytest.raises(LabelError, match="conll"):
        export(tmp_path / "c.db", "conll", tmp_path / "o.conll")
    with pytest.raises(LabelError, match="unknown export format"):
        export(tmp_path / "c.db", "xml", tmp_path / "o.xml")


def test_labelstudio_export_from_another_config(tmp_path):
    """A rating/textarea project's export: say what its results hold, write nothing (all unreadable),
    or import the readable ones and count the rest."""
    other = [{"id": 1, "data": {"text": "good film"}, "annotations": [{"result": [
        {"type": "rating", "value": {"rating": 4}, "from_name": "stars", "to_name": "text"}]}]}]
    path = tmp_path / "rating.json"
    path.write_text(json.dumps(other))
    with pytest.raises(LabelError, match=r"task 1: no annotation has Choices results \(value.choices\).*"
                                         r"rating 'stars' with value keys \['rating'\]"):
        import_file(tmp_path / "p.db", path)
    assert not (tmp_path / "p.db").exists()  # nothing half-written
    mixed = other + [{"id": 2, "data": {"text": "bad film"}, "annotations": [{"result": [
        {"type": "choices", "value": {"choices": ["neg"]}, "from_name": "s", "to_name": "text"}]}]}]
    path.write_text(json.dumps(mixed))
    r = CliRunner().invoke(app, ["import", str(path), "--project", str(tmp_path / "q.db")])
    assert r.exit_code == 0, r.output
    assert "1 annotations" in r.output and "1 annotations were left out" in r.output and "rating 'stars'" in r.output
    with Project(tmp_path / "q.db") as p:
        assert p.current() == {"2": {"labelstudio": "neg"}} and p.history("1") == []


def test_cli(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "p.db")
    r = runner.invoke(app, ["import", str(DATA / "labelstudio_sentiment.json"), "--project", db])
    assert r.exit_code == 0, r.output
    assert "4 examples added" in r.output
    r = runner.invoke(app, ["export", "--project", db, "--format", "jsonl", "--output", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 0 and "4 examples" in r.output
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[0]["label"] == "Positive" and "_labelstudio" not in rows[0]["meta"]
    r = runner.invoke(app, ["export", "--project", db, "--format", "labelstudio", "--output", str(tmp_path / "o.json")])
    assert r.exit_code == 0 and (tmp_path / "o.label_config.xml").exists()
    r = runner.invoke(app, ["agreement", "--project", db, "--json", "--conflicts", str(tmp_path / "c.jsonl")])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["annotators"] == ["1", "2"] and rep["conflicts"] == 1
    assert json.loads((tmp_path / "c.jsonl").read_text(encoding="utf-8"))["text"] == "服务太慢了，等了一个小时。"
    r = runner.invoke(app, ["stats", "--project", db])
    assert r.exit_code == 0 and json.loads(r.output)["examples"] == 4
