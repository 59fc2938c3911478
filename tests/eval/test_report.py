import json

from lmforge.eval.report import build_report
from lmforge.runs import RunDir, StageResult


def test_report_has_curves_confusion_and_verdict(tmp_path):
    run = RunDir(tmp_path / "r", config={"name": "r"})
    for stage in ("pretrain", "finetune/pretrained", "finetune/random", "evaluate", "generate"):
        (run.path / stage).mkdir(parents=True)
    rows = [{"step": s, "train_loss": 5 - s / 10, "val_loss": 5.1 - s / 10} for s in (10, 20, 30)]
    (run.path / "pretrain" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for v in ("pretrained", "random"):
        acc = [{"step": s, "val_loss": 0.7, "val_accuracy": 0.6} for s in (5, 10)]
        (run.path / "finetune" / v / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in acc))
    ev = {v: {"accuracy": a, "macro_f1": a, "roc_auc": a, "n": 10, "labels": ["neg", "pos"],
              "confusion_matrix": [[4, 1], [1, 4]]} for v, a in (("pretrained", 0.8), ("random", 0.6))}
    (run.path / "evaluate" / "metrics.json").write_text(json.dumps(ev))
    (run.path / "generate" / "samples.jsonl").write_text(json.dumps({"prompt": "the <b>", "completion": " end"}) + "\n")
    run.begin("pretrain", "fp", {})
    run.finish("pretrain", StageResult(metrics={"val_loss": 2.0}), 3.0)

    page = build_report(run.path).read_text()
    assert page.count("<img") == 5  # 3 curves + 2 confusion matrices
    assert "+20.0 accuracy points" in page
    assert "the &lt;b&gt;" in page  # samples are escaped
    pngs = sorted(p.name for p in (run.path / "report").glob("*.png"))
    assert pngs == ["confusion_pretrained.png", "confusion_random.png", "curve_finetune_pretrained.png",
                    "curve_finetune_random.png", "curve_pretrain.png"]
    assert all((run.path / "report" / p).stat().st_size > 5000 for p in pngs)


def test_report_says_when_pretraining_did_not_help(tmp_path):
    run = RunDir(tmp_path / "r")
    (run.path / "evaluate").mkdir()
    ev = {v: {"accuracy": a, "macro_f1": a, "n": 10, "labels": ["a", "b"], "confusion_matrix": [[1, 0], [0, 1]]}
          for v, a in (("pretrained", 0.5), ("random", 0.6))}
    (run.path / "evaluate" / "metrics.json").write_text(json.dumps(ev))
    assert "did NOT help" in build_report(run.path).read_text()
