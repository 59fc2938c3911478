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


def _flat(metrics: dict, limit: int = 8) -> str:
    """Headline metrics as ``key value`` pairs (nested variants as ``variant: ...``), not raw JSON."""
    parts = []
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            parts.append(f"{k} {_fmt(v)}")
        elif isinstance(v, dict):
            inner = ", ".join(f"{a} {_fmt(b)}" for a, b in v.items()
                              if isinstance(b, (int, float)) and not isinstance(b, bool))
            if inner:
                parts.append(f"{k}: {inner}")
        elif isinstance(v, str) and k in ("task", "report"):
            parts.append(f"{k} {v}")
    return "; ".join(parts[:limit])


def plot_reliability(name: str, rel: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4, 3.6))
    pts = [(c, a) for c, a in zip(rel["confidence"], rel["accuracy"]) if c is not None]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    if pts:
        ax.plot(*zip(*pts), marker="o", ms=4)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability: {name}")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_roc_pr(name: str, curves: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for lab, c in list(curves.get("roc", {}).items())[:10]:
        axes[0].plot(c["fpr"], c["tpr"], label=lab)
    for lab, c in list(curves.get("pr", {}).items())[:10]:
        axes[1].plot(c["recall"], c["precision"], label=f"{lab} (AP {c['average_precision']:.2f})")
    axes[0].plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    for ax, (x, y, t) in zip(axes, [("false positive rate", "true positive rate", "ROC"),
                                    ("recall", "precision", "precision-recall")]):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{t}: {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _examples_html(path: Path, title: str, n: int = 5) -> str:
    if not path.exists():
        return ""
    rows = _read_jsonl(path)[:n]
    if not rows:
        return ""
    cells = [[json.dumps({k: v for k, v in r.items() if k != "scores"}, ensure_ascii=False)[:400]] for r in rows]
    return f"<h4>{html.escape(title)}</h4>" + _table(cells, ["example"])


def _evaluation_html(run_dir: Path, img_dir: Path) -> list[str]:
    """Per variant: headline metrics with confidence intervals, the task's tables and plots, examples."""
    parts = []
    for mfile in sorted((run_dir / "evaluate").glob("*/metrics.json")):
        variant = mfile.parent.name
        m = json.loads(mfile.read_text())
        ci = m.get("ci", {})
        heads = [k for k in m if isinstance(m[k], (int, float)) and not isinstance(m[k], bool)
                 and k not in ("n", "confidence", "bootstrap_resamples")]
        rows = [[k, m[k], *(ci.get(k) or ["", ""])] for k in heads]
        pct = int(round(100 * m.get("confidence", 0.95)))
        parts.append(f"<h3>{html.escape(variant)} ({m.get('task')}, {m.get('n')} test examples)</h3>"
                     + _table(rows, ["metric", "value", f"{pct}% CI low", f"{pct}% CI high"]))
        d = m.get("details", {})
        if "confusion_matrix" in d and len(d.get("labels", [])) <= 30:
            parts.append(_img(plot_confusion(variant, d["confusion_matrix"], d["labels"],
                                             img_dir / f"confusion_{variant}.png")))
        if d.get("reliability"):
            parts.append(f"<p>Expected calibration error: {_fmt(d.get('ece'))}</p>"
                         + _img(plot_reliability(variant, d["reliability"], img_dir / f"reliability_{variant}.png")))
        if d.get("curves", {}).get("roc"):
            parts.append(_img(plot_roc_pr(variant, d["curves"], img_dir / f"roc_pr_{variant}.png")))
        for key in ("per_type", "per_class", "per_label"):
            table = d.get(key)
            if isinstance(table, dict) and table:
                cols = sorted({c for v in table.values() if isinstance(v, dict) for c in v})
                parts.append(f"<h4>{key.replace('_', ' ')}</h4>" + _table(
                    [[name, *[v.get(c) for c in cols]] for name, v in list(table.items())[:40]], [key, *cols]))
        if isinstance(d.get("lengths"), dict):
            parts.append("<h4>lengths</h4>" + _table([[k, v] for k, v in d["lengths"].items()], ["", "value"]))
        for w in m.get("warnings") or []:
            parts.append(f"<p class='note'>{html.escape(str(w))}</p>")
        parts.append(_examples_html(mfile.parent / "errors.jsonl", "wrong predictions (first 5)"))
        right = mfile.parent / "predictions.jsonl"
        if right.exists():
            wrong = {r.get("id") for r in _read_jsonl(mfile.parent / "errors.jsonl")} \
                if (mfile.parent / "errors.jsonl").exists() else set()
            good = [r for r in _read_jsonl(right) if r.get("id") not in wrong][:5]
            if good:
                parts.append("<h4>right predictions (first 5)</h4>" + _table(
                    [[json.dumps({k: v for k, v in r.items() if k != "scores"}, ensure_ascii=False)[:400]]
                     for r in good], ["example"]))
    return parts


def build_report(run_dir: Path, finishing: str | None = None) -> Path:
    """``finishing`` names the stage that is building this report (shown as done, not running)."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
    img_dir = run_dir / "report"
    parts = [f"<h1>lmforge run: {html.escape(manifest.get('name', run_dir.name))}</h1>"]
    stages = manifest.get("stages", {})
    if stages:
        rows = [[s, "done" if s == finishing else r.get("status"), r.get("seconds"),
                 "" if s == "report" else _flat(r.get("metrics", {}))] for s, r in stages.items()]
        parts.append("<h2>Stages</h2>" + _table(rows, ["stage", "status", "seconds", "headline metrics"]))

    for section in (_comparison(run_dir), _baselines(run_dir), _lm_baseline(run_dir, stages), _tune(run_dir),
                    _cv(run_dir)):
        if section:
            parts.append(section)

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

    evaluation = _evaluation_html(run_dir, img_dir)
    if evaluation:
        parts.append("<h2>Evaluation (test split)</h2>")
        parts.extend(evaluation)

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


def _tune(run_dir: Path) -> str:
    """``lmforge tune`` results: every trial, the best values, history and importance plots."""
    path = run_dir / "tune" / "results.json"
    if not path.exists():
        return ""
    r = json.loads(path.read_text())
    keys = list(r["space"])
    rows = [[t["number"], t["state"], t["value"], t.get("last_step"), t.get("seconds"), t.get("rss_mb"),
             *[t["params"].get(k) for k in keys]] for t in r["trials"]]
    out = [f"<h2>Hyperparameter search ({html.escape(r['direction'])} {html.escape(r['metric'])}, "
           f"{html.escape(r['sampler'])} sampler, {html.escape(r['pruner'])} pruner)</h2>"]
    if "best" in r:
        b = r["best"]
        out.append(f"<p class='note'>best: trial {b['number']}, {html.escape(r['metric'])} = {_fmt(b['value'])}; "
                   + html.escape(", ".join(f"{k}={_fmt(v)}" for k, v in b["params"].items()))
                   + " (recipe: tune/best.yaml)</p>")
    out.append(_table(rows, ["trial", "state", "value", "last step", "seconds", "RSS MB", *keys]))
    for name in ("history.png", "importance.png"):
        if (run_dir / "tune" / name).exists():
            out.append(_img(run_dir / "tune" / name))
    return "".join(out)


def _cv(run_dir: Path) -> str:
    """``lmforge cv`` results: mean ± std per metric, then the per-fold values."""
    path = run_dir / "cv" / "results.json"
    if not path.exists():
        return ""
    r = json.loads(path.read_text())
    out = [f"<h2>Cross-validation ({r['folds']} folds, {html.escape(str(r['mode'] or 'stratified/random'))})</h2>"]
    for variant, metrics in r["summary"].items():
        keys = [k for k in metrics if k != "n"]
        out.append(f"<h3>{html.escape(variant)}</h3>" + _table(
            [["mean ± std", *[f"{metrics[k]['mean']:.4f} ± {metrics[k]['std']:.4f}" for k in keys], ""]]
            + [[f"fold {i + 1}", *[metrics[k]["folds"][i] for k in keys], metrics["n"][i]]
               for i in range(r["folds"])], ["", *keys, "n"]))
    if (run_dir / "cv" / "folds.png").exists():
        out.append(_img(run_dir / "cv" / "folds.png"))
    return "".join(out)


def _comparison(run_dir: Path) -> str:
    """Pretrained body vs random init at equal budget: paired bootstrap interval and p-value."""
    f = run_dir / "evaluate" / "comparison.json"
    if not f.exists():
        return ""
    c = json.loads(f.read_text())
    rows = [[k, v["a"], v["b"], v["delta"], f"[{_fmt(v['ci'][0])}, {_fmt(v['ci'][1])}]", v["p_value"]]
            for k, v in c["metrics"].items()]
    first = next(iter(c["metrics"]), None)
    if first is None:
        return ""
    v = c["metrics"][first]
    if v["delta"] > 0 and v["p_value"] < 0.05:
        verdict = (f"Pretraining helped: {first} +{v['delta']:.4f} at the same fine-tuning budget "
                   f"(95% CI of the difference {v['ci'][0]:+.4f} to {v['ci'][1]:+.4f}, p={v['p_value']}).")
    elif v["delta"] > 0:
        verdict = (f"Pretraining is ahead by {v['delta']:+.4f} {first}, but the difference is not significant "
                   f"(p={v['p_value']}): on {c['n']} test examples it could be chance.")
    else:
        verdict = (f"Pretraining did NOT help here ({v['delta']:+.4f} {first}, p={v['p_value']}). With this little "
                   "pretraining compute the body may not have learned features the task can use; train longer or larger.")
    return ("<h2>Does pretraining help? (test split, same fine-tuning budget, paired bootstrap)</h2>"
            + _table(rows, ["metric", "pretrained", "random init", "difference", "95% CI", "p-value"])
            + f"<p class='note'>{html.escape(verdict)}</p>")


def _baselines(run_dir: Path) -> str:
    """Linear baselines beside the model on the same test examples (paired bootstrap per variant)."""
    f = run_dir / "evaluate" / "baselines.json"
    if not f.exists():
        return ""
    base = json.loads(f.read_text())
    if not base:
        return ""
    first = next(iter(base.values()))
    metric = first["headline"][0]
    variants = list(first.get("vs", {}))
    rows, notes = [], []
    for name, b in base.items():
        lo, hi = (b.get("ci", {}).get(metric) or ["", ""])
        row = [name, b[metric], f"[{_fmt(lo)}, {_fmt(hi)}]" if lo != "" else "", b.get("seconds")]
        for v in variants:
            c = b["vs"][v].get(metric)
            row.append(f"{c['delta']:+.4f} (p={c['p_value']})" if c else "")
            if c and (c["delta"] <= 0 or c["p_value"] >= 0.05):
                notes.append(f"The {v} model does not clearly beat {name} ({c['delta']:+.4f} {metric}, "
                             f"p={c['p_value']}): a linear model does about as well here.")
        rows.append(row)
    header = ["baseline", metric, "95% CI", "seconds", *[f"{v} − baseline" for v in variants]]
    return ("<h2>Baselines (same training split, same test examples)</h2>" + _table(rows, header)
            + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes))


def _lm_baseline(run_dir: Path, stages: dict) -> str:
    """The pretrained LM beside a Kneser-Ney n-gram on the same validation text, in bits per byte."""
    f = run_dir / "pretrain" / "ngram_baseline.json"
    if not f.exists():
        return ""
    ng = json.loads(f.read_text())
    lm = (stages.get("pretrain") or {}).get("metrics", {}).get("val_bpb")
    rows = [["pretrained LM (validation windows)", lm], [ng["model"] + " (same training text)", ng["bits_per_byte"]]]
    note = ""
    if isinstance(lm, (int, float)):
        verdict = "beats" if lm < ng["bits_per_byte"] else "does NOT beat"
        note = (f"<p class='note'>The LM {verdict} the n-gram baseline "
                f"({lm:.3f} vs {ng['bits_per_byte']:.3f} bits per byte; lower is better).</p>")
    return ("<h2>Language model vs n-gram baseline (validation text, bits per byte)</h2>"
            + _table(rows, ["model", "bits per byte"]) + note)
