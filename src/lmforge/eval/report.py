"""``report.html``: one self-contained page per run — curves, confusion matrices, tables, samples.

It reads only the run directory (manifest, every ``metrics.jsonl``, ``evaluate/metrics.json``,
``generate/samples.jsonl``), so it can be rebuilt at any time with ``lmforge report RUN_DIR``.
PNGs are written next to the page (``report/``) and embedded, so the HTML can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..runs import atomic_write_text  # noqa: E402


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(name: str, rows: list[dict], path: Path) -> Path:
    """Loss (and accuracy, if logged) against step for one training run."""
    has_acc = any("val_accuracy" in r for r in rows)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 6, 3.6))
    ax = axes[0] if has_acc else axes
    steps = [r["step"] for r in rows]
    for key in ("train_loss", "val_loss"):
        if any(key in r for r in rows):
            ax.plot(steps, [r.get(key) for r in rows], marker="o", ms=3, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(f"{name}: loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if has_acc:
        axes[1].plot(steps, [r.get("val_accuracy") for r in rows], marker="o", ms=3, color="tab:green")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("validation accuracy")
        axes[1].set_title(f"{name}: accuracy")
        axes[1].grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion(name: str, matrix: list[list[int]], labels: list[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(3.2 + 0.4 * len(labels), 3.0 + 0.4 * len(labels)))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion: {name}")
    top = max(max(r) for r in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
    return "" if v is None else str(v)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;margin:.5em 0;border:1px solid #eee}.note{background:#fff8e1;padding:.6em 1em}
pre{background:#f7f7f7;padding:.6em;white-space:pre-wrap}"""


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
    img_dir = run_dir / "report"
    parts = [f"<h1>lmforge run: {html.escape(manifest.get('name', run_dir.name))}</h1>"]
    stages = manifest.get("stages", {})
    if stages:
        rows = [[s, r.get("status"), r.get("seconds"), json.dumps(r.get("metrics", {}), ensure_ascii=False)[:300]]
                for s, r in stages.items()]
        parts.append("<h2>Stages</h2>" + _table(rows, ["stage", "status", "seconds", "headline metrics"]))

    comparison = _comparison(run_dir)
    if comparison:
        parts.append(comparison)

    curves = sorted(run_dir.glob("*/metrics.jsonl")) + sorted(run_dir.glob("*/*/metrics.jsonl"))
    if curves:
        parts.append("<h2>Training curves</h2>")
    for path in curves:
        rows = _read_jsonl(path)
        if not rows:
            continue
        name = str(path.parent.relative_to(run_dir))
        png = plot_curves(name, rows, img_dir / f"curve_{name.replace('/', '_')}.png")
        parts.append(f"<h3>{html.escape(name)}</h3>{_img(png)}")

    ev = run_dir / "evaluate" / "metrics.json"
    if ev.exists():
        parts.append("<h2>Confusion matrices (test split)</h2>")
        for variant, m in json.loads(ev.read_text()).items():
            png = plot_confusion(variant, m["confusion_matrix"], m["labels"], img_dir / f"confusion_{variant}.png")
            parts.append(_img(png))

    samples = run_dir / "generate" / "samples.jsonl"
    if samples.exists():
        parts.append("<h2>Generated samples</h2>")
        for s in _read_jsonl(samples):
            parts.append(f"<pre><b>{html.escape(s['prompt'])}</b>{html.escape(s['completion'])}</pre>")

    parts.append("<h2>Environment</h2>" + _table(
        [[k, v] for k, v in {**manifest.get("packages", {}), "git commit": manifest.get("git_commit")}.items()],
        ["package", "version"]))
    page = f"<!doctype html><meta charset='utf-8'><title>lmforge report</title><style>{CSS}</style>" + "\n".join(parts)
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out


def _comparison(run_dir: Path) -> str:
    """Pretrained body vs random init at equal budget, with an honest verdict."""
    ev = run_dir / "evaluate" / "metrics.json"
    if not ev.exists():
        return ""
    m = json.loads(ev.read_text())
    if not {"pretrained", "random"} <= set(m):
        return ""
    rows = [[v, m[v]["accuracy"], m[v]["macro_f1"], m[v].get("roc_auc"), m[v]["n"]] for v in ("pretrained", "random")]
    diff = m["pretrained"]["accuracy"] - m["random"]["accuracy"]
    verdict = (f"Pretraining on in-domain unlabeled text helped: +{diff * 100:.1f} accuracy points at the same budget."
               if diff > 0 else
               f"Pretraining did NOT help here ({diff * 100:+.1f} accuracy points). With this little pretraining "
               "compute the body may not have learned features the classifier can use; train longer or larger.")
    return ("<h2>Does pretraining help? (test split, same fine-tuning budget)</h2>"
            + _table(rows, ["body", "accuracy", "macro-F1", "ROC-AUC", "test examples"])
            + f"<p class='note'>{html.escape(verdict)}</p>")
