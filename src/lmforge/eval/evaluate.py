"""Evaluation for any model directory on any file in its task's format.

``evaluate_model`` is what ``lmforge evaluate --model DIR --data FILE`` and the recipe's evaluate
stage call: it predicts, scores with the task's metrics, adds 95% bootstrap confidence intervals for
every headline metric and writes ``metrics.json`` (headline numbers at the top level),
``predictions.jsonl`` and ``errors.jsonl`` (the examples it got wrong). Language models (a pretrain
output, or an n-gram model) are scored by loss, perplexity and bits per byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from pydantic import Field

from ..config import StrictModel
from ..errors import InputError
from ..runs import StageResult, atomic_write_json, atomic_write_text


class EvaluateConfig(StrictModel):
    batch_size: int = Field(64, ge=1)
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples for confidence intervals (0 = none)")
    confidence: float = Field(0.95, gt=0, lt=1)
    data: str | None = Field(None, description="file to evaluate on (default: finetune.data.test)")
    baselines: bool = Field(True, description="classification: also fit TF-IDF+LR and fastText-style baselines "
                            "on the fine-tuning train split and compare them with the model on the same test")

    def input_paths(self) -> list[str]:
        return [self.data] if self.data else []


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)


def resample_indices(n: int, n_resamples: int, seed: int = 0) -> list[np.ndarray]:
    """Bootstrap index sets (rows of ``eval.stats.resample_indices``) as a list, so two systems can
    be rescored on exactly the same resamples."""
    from .stats import resample_indices as blocks

    return [row.astype(np.intp) for block in blocks(n, n_resamples, seed) for row in block]


def confidence_intervals(task, predictions: list[dict], examples: list[dict], n_resamples: int,
                         confidence: float = 0.95, seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap interval of each headline metric (examples resampled with replacement)."""
    if n_resamples <= 0 or len(examples) < 2:
        return {}
    scores = task.subset_scores(predictions, examples, resample_indices(len(examples), n_resamples, seed))
    a = (1 - confidence) / 2
    return {k: [round(float(np.quantile(v, a)), 6), round(float(np.quantile(v, 1 - a)), 6)]
            for k, v in scores.items() if v}


def evaluate_model(model_dir: str | Path, data_file: str | Path, out_dir: str | Path | None = None,
                   overrides: dict | None = None, batch_size: int = 64, bootstrap: int = 1000,
                   confidence: float = 0.95, max_examples: int | None = None, progress: bool = False,
                   examples: list[dict] | None = None) -> dict:
    """Score ``model_dir`` on ``data_file`` (or on ``examples`` already read, e.g. a held-out
    cross-validation fold; ``data_file`` then only names them); returns the metrics (and writes
    them under ``out_dir``)."""
    from ..models.io import read_config_dict

    model_dir = Path(model_dir)
    cfg = read_config_dict(model_dir)
    if not (model_dir / "task.json").exists():
        if cfg.get("model_type") == "ngram":
            from ..models.ngram import evaluate_file

            result = {"task": "language_model", **evaluate_file(model_dir, data_file)}
        else:
            result = evaluate_lm(model_dir, data_file, batch_size=batch_size, max_examples=max_examples)
        result.update(model=str(model_dir), data=str(data_file))
        if out_dir is not None:
            atomic_write_json(Path(out_dir) / "metrics.json", result)
        return result
    from ..tasks.stage import encode_all, load_task_model, predict_features

    task, model, tok = load_task_model(model_dir, overrides)
    examples = task.read(data_file) if examples is None else examples
    if max_examples:
        examples = examples[:max_examples]
    warnings = task.check(examples, str(data_file))
    features = encode_all(task, examples, tok)
    warnings += getattr(getattr(task, "warnings", None), "lines", lambda: [])()
    preds = predict_features(task, model, tok, features, batch_size, progress=progress)
    details = task.metrics(preds, examples)
    headline = {k: details[k] for k in task.headline if k in details}
    result = {**{k: round(float(v), 6) for k, v in headline.items()}, "n": len(examples), "task": task.kind,
              "model": str(model_dir), "data": str(data_file),
              "ci": confidence_intervals(task, preds, examples, bootstrap, confidence),
              "confidence": confidence, "bootstrap_resamples": bootstrap, "warnings": warnings,
              "details": {k: v for k, v in details.items() if k not in headline}}
    if out_dir is not None:
        out = Path(out_dir)
        rows = [{"id": e["id"], "reference": task.reference(e), **p} for e, p in zip(examples, preds)]
        errors = [r for e, p in zip(examples, preds) if (r := task.example_errors(p, e)) is not None]
        atomic_write_text(out / "predictions.jsonl", _jsonl(rows))
        atomic_write_text(out / "errors.jsonl", _jsonl(errors))
        atomic_write_json(out / "metrics.json", result)
        _write_compare_inputs(out, task, preds, examples)
    return result


def _write_compare_inputs(out: Path, task, preds: list[dict], examples: list[dict]) -> None:
    """What ``lmforge compare`` needs to rescore a run without the model: predictions + references."""
    atomic_write_json(out / "scoring.json", {"task": task.to_json(), "examples": examples, "predictions": preds})


# -------------------------------------------------------------------------------------------------
# Language models


def evaluate_lm(model_dir: Path, data_file: str | Path, batch_size: int = 16, max_examples: int | None = None) -> dict:
    """Loss (nats/token), perplexity and bits per byte of a decoder on a text/jsonl file, over
    non-overlapping windows of the model's context (documents joined by EOS, as in pretraining)."""
    import torch

    from ..models.io import load_model
    from ..tokenizer import Tok, iter_documents

    model = load_model(model_dir).eval()
    if model.config.to_dict().get("model_type") != "gpt":
        raise InputError(f"{model_dir} is a '{model.config.to_dict().get('model_type')}' model without task.json",
                         "evaluate a decoder (pretrain output) or a fine-tuned task model")
    tok = Tok.load(model_dir)
    docs = [d for d in iter_documents(Path(data_file), "paragraph") if d.strip()]
    if max_examples:
        docs = docs[:max_examples]
    if not docs:
        raise InputError(f"{data_file}: no text to score", "pass a text or jsonl file with documents")
    ids: list[int] = []
    for d in tok.encode_batch(docs):
        ids.extend(d + ([tok.eos_id] if tok.eos_id is not None else []))
    T = model.config.block_size
    data = torch.tensor(ids, dtype=torch.long)
    n_win = max(1, (len(data) - 1) // T)
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, n_win, batch_size):
            rows = [data[i * T: i * T + T + 1] for i in range(s, min(s + batch_size, n_win))]
            rows = [r for r in rows if len(r) > 1]
            L = min(len(r) for r in rows)
            x = torch.stack([r[: L - 1] for r in rows])
            y = torch.stack([r[1:L] for r in rows])
            _, loss = model(x, y, reduction="sum")
            total += float(loss)
            count += y.numel()
    loss = total / max(count, 1)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    scored_share = count / max(len(ids), 1)
    return {"task": "language_model", "loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50)), 4),
            "bits_per_byte": round(total / math.log(2) / max(n_bytes * scored_share, 1), 6), "tokens": count}


# -------------------------------------------------------------------------------------------------
# The evaluate stage


def run(cfg: EvaluateConfig, finetune_cfg, finetune_dir: Path, out_dir: Path, progress: bool = True) -> StageResult:
    data = cfg.data or (finetune_cfg.data.test if finetune_cfg is not None else None)
    fold = finetune_cfg.data.fold if finetune_cfg is not None and cfg.data is None else None
    if fold is not None:  # cross-validation: the held-out fold of train is the test set
        data = f"{finetune_cfg.data.train}#fold-{fold.index}-of-{fold.k}"
    if data is None:
        raise InputError("evaluate has no data", "set finetune.data.test or evaluate.data")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    cap = finetune_cfg.data.max_test_examples if finetune_cfg is not None else None
    for variant_dir in sorted(p for p in Path(finetune_dir).iterdir() if (p / "model" / "config.json").exists()):
        held = None
        if fold is not None:
            from ..tasks.base import load_task
            from ..tasks.stage import held_out_fold

            held = held_out_fold(load_task(variant_dir / "model"), finetune_cfg.data)
        results[variant_dir.name] = evaluate_model(variant_dir / "model", data, out_dir / variant_dir.name,
                                                   batch_size=cfg.batch_size, bootstrap=cfg.bootstrap,
                                                   confidence=cfg.confidence, max_examples=cap, progress=progress,
                                                   examples=held)
    if not results:
        raise InputError(f"no fine-tuned models under {finetune_dir}", "run the finetune stage first")
    metrics = {v: {k: r[k] for k in r if isinstance(r[k], (int, float)) and k != "n"} for v, r in results.items()}
    if {"pretrained", "random"} <= set(results):
        from .compare import compare_dirs

        comparison = compare_dirs(out_dir / "pretrained", out_dir / "random", n_resamples=max(cfg.bootstrap, 200))
        atomic_write_json(out_dir / "comparison.json", comparison)
        metrics["comparison"] = {k: v["delta"] for k, v in comparison["metrics"].items()}
    first = next(iter(results))
    if cfg.baselines and finetune_cfg is not None and results[first].get("task") == "classification":
        base = classification_baseline_scores(finetune_cfg.data, out_dir, list(results), cfg)
        atomic_write_json(out_dir / "baselines.json", base)
        metrics["baselines"] = {name: {k: b[k] for k in b["headline"]} for name, b in base.items()}
    atomic_write_json(out_dir / "metrics.json", results)
    return StageResult(metrics=metrics, outputs=[str(out_dir / "metrics.json")])


def classification_baseline_scores(data, out_dir: Path, variants: list[str], cfg: EvaluateConfig) -> dict:
    """TF-IDF+LR and fastText-style fitted on the model's own training split and scored on the very
    test examples the model was scored on, with the task's metrics, intervals and a paired bootstrap
    against each variant: a user sees at once whether the model beats a linear classifier."""
    from ..tasks.base import task_from_config
    from ..tasks.stage import training_split
    from .baselines import classification_baselines
    from .compare import _load, paired_bootstrap

    task, _, examples = _load(out_dir / variants[0])
    # a copy of the task for the baselines: multi-label thresholds tuned for the model do not apply
    state = {**task.state, **({"thresholds": [0.5] * len(task.labels)} if "thresholds" in task.state else {})}
    btask = task_from_config(task.cfg, state)
    train, _ = training_split(btask, data)
    out = {}
    for name, b in classification_baselines(btask, train, examples, return_probs=True).items():
        preds = btask.decode_probs(b.pop("probs"))
        details = btask.metrics(preds, examples)
        out[name] = {**{k: round(float(details[k]), 6) for k in btask.headline}, "headline": list(btask.headline),
                     "ci": confidence_intervals(btask, preds, examples, cfg.bootstrap, cfg.confidence),
                     "n": len(examples), "n_train": len(train), **{k: v for k, v in b.items() if k not in details},
                     "vs": {}}
        for v in variants:
            vtask, vpreds, _ = _load(out_dir / v)
            out[name]["vs"][v] = paired_bootstrap(vtask, vpreds, btask, preds, examples,
                                                  n_resamples=max(cfg.bootstrap, 200), confidence=cfg.confidence)
    return out
