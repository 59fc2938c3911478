import json

from lmforge.eval.report import build_report
from lmforge.runs import RunDir, StageResult


def _evaluation(run, variant: str, acc: float):
    d = run.path / "evaluate" / variant
    d.mkdir(parents=True)
    m = {"accuracy": acc, "macro_f1": acc, "n": 10, "task": "classification", "ci": {"accuracy": [acc - .1, acc + .1]},
         "confidence": 0.95, "details": {"labels": ["neg", "pos"], "confusion_matrix": [[4, 1], [1, 4]],
                                         "per_class": {"neg": {"f1": 0.8}, "pos": {"f1": 0.8}}}}
    (d / "metrics.json").write_text(json.dumps(m))
    (d / "predictions.jsonl").write_text(json.dumps({"id": "1", "label": "pos", "reference": "pos"}) + "\n"
                                         + json.dumps({"id": "2", "label": "pos", "reference": "neg"}) + "\n")
    (d / "errors.jsonl").write_text(json.dumps({"id": "2", "text": "<i>meh</i>", "label": "neg"}) + "\n")


def _comparison(run, delta: float, p: float):
    c = {"n": 10, "metrics": {"accuracy": {"a": 0.8, "b": 0.8 - delta, "delta": delta, "ci": [delta - .1, delta + .1],
                                           "p_value": p}}}
    (run.path / "evaluate" / "comparison.json").write_text(json.dumps(c))


def test_report_has_curves_confusion_tables_examples_and_verdict(tmp_path):
    run = RunDir(tmp_path / "r", config={"name": "r"})
    for stage in ("pretrain", "finetune/pretrained", "finetune/random", "generate"):
        (run.path / stage).mkdir(parents=True)
    rows = [{"step": s, "train_loss": 5 - s / 10, "val_loss": 5.1 - s / 10} for s in (10, 20, 30)]
    (run.path / "pretrain" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for v in ("pretrained", "random"):
        acc = [{"step": s, "val_loss": 0.7, "val_accuracy": 0.6} for s in (5, 10)]
        (run.path / "finetune" / v / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in acc))
        _evaluation(run, v, 0.8 if v == "pretrained" else 0.6)
    _comparison(run, 0.2, 0.01)
    (run.path / "generate" / "samples.jsonl").write_text(json.dumps({"prompt": "the <b>", "completion": " end"}) + "\n")
    run.begin("pretrain", "fp", {})
    run.finish("pretrain", StageResult(metrics={"val_loss": 2.0, "pretrained": {"accuracy": 0.8}}), 3.0)
    run.begin("report", "fp2", {})

    page = build_report(run.path, finishing="report").read_text()
    assert page.count("<img") == 5  # 3 curves + 2 confusion matrices
    assert "Pretraining helped: accuracy +0.2000" in page and "p=0.01" in page
    assert "val_loss 2.0000; pretrained: accuracy 0.8000" in page  # readable headline metrics, not JSON
    assert "<td>report</td><td>done</td>" in page  # the report's own stage is not "running"
    assert "the &lt;b&gt;" in page and "&lt;i&gt;meh" in page  # samples and examples are escaped
    assert "per class" in page and "95% CI low" in page and "wrong predictions" in page
    pngs = sorted(p.name for p in (run.path / "report").glob("*.png"))
    assert pngs == ["confusion_pretrained.png", "confusion_random.png", "curve_finetune_pretrained.png",
                    "curve_finetune_random.png", "curve_pretrain.png"]
    assert all((run.path / "report" / p).stat().st_size > 5000 for p in pngs)


def test_report_says_when_pretraining_did_not_help_or_is_not_significant(tmp_path):
    run = RunDir(tmp_path / "r")
    _evaluation(run, "pretrained", 0.5)
    _comparison(run, -0.1, 0.3)
    assert "did NOT help" in build_report(run.path).read_text()
    _comparison(run, 0.05, 0.4)
    assert "not significant" in build_report(run.path).read_text()
