"""Prediction speed: ``lmforge predict`` vs transformers' text-classification pipeline, same model.

The fine-tuned SST-2 classifier (``recipes/classify/sst2-minilm.yaml``) on the 872 SST-2 dev
sentences, sentences per second, fp32 on the CPU, both with the model already loaded:

* ``lmforge``: what ``lmforge predict`` / ``tasks.predict.predict_texts`` run after loading:
  ``encode_all`` + ``predict_features`` (batch 64, rows sorted by length so a batch pads little).
* ``pipeline(batch_size=default)``: ``pipeline("text-classification")`` as called by default (one
  sentence per forward pass), and ``pipeline(batch_size=64)``, its batched mode.

The Hugging Face model is the same weights: ``lmforge export --to hf`` covers bodies, not task heads
(``models/hf.py`` raises for a SequenceClassifier), so the body is saved alone and exported with
``export_hf`` (BERT layout), and the head goes into a small ``BertPreTrainedModel`` subclass that
pools like lmforge's head (mean over real tokens, or the first token) — ``BertForSequenceClassification``
would put its tanh pooler in between. Both sides must predict the same label for every sentence.
Rounds alternate; the first is warm-up; best and median rounds are reported.

    python benchmarks/predict_speed.py [--model runs/sst2-minilm/finetune/pretrained/model]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import transformers  # noqa: E402
from transformers.modeling_outputs import SequenceClassifierOutput  # noqa: E402
from transformers.models.bert.modeling_bert import BertModel, BertPreTrainedModel  # noqa: E402

from lmforge.models.hf import export_hf  # noqa: E402
from lmforge.models.io import save_model  # noqa: E402
from lmforge.tasks.stage import encode_all, load_task_model, predict_features  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEV = Path(os.environ.get("LMFORGE_DATASETS", "../shared/datasets")) / "classification/sst2/dev.tsv"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_meta.json", "vocab.txt", "special_tokens_map.json")
transformers.logging.set_verbosity_error()


class PooledBertClassifier(BertPreTrainedModel):
    """BERT body + lmforge's SequenceClassifier head (mean / first-token pooling, one linear layer)."""

    def __init__(self, config):
        super().__init__(config)
        self.pooling = getattr(config, "lmforge_pooling", "mean")
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return SequenceClassifierOutput(logits=self.classifier(pooled))


def to_hf(model, model_dir: Path, out: Path) -> tuple[PooledBertClassifier, object]:
    """The lmforge classifier as a Hugging Face model + tokenizer (see the module docstring)."""
    if model.pooling == "last":
        raise SystemExit("this benchmark covers mean/cls pooling (BERT bodies)")
    body_dir = out / "body"
    save_model(model.body, body_dir, extra_files=[model_dir / f for f in TOKENIZER_FILES if (model_dir / f).exists()])
    hf_dir = export_hf(body_dir, out / "hf", layout="bert")
    cfg = transformers.BertConfig.from_pretrained(hf_dir, num_labels=len(model.labels),
                                                  id2label=dict(enumerate(model.labels)),
                                                  label2id={y: i for i, y in enumerate(model.labels)})
    cfg.lmforge_pooling = model.pooling
    hf = PooledBertClassifier.from_pretrained(hf_dir, config=cfg).eval()
    with torch.no_grad():
        hf.classifier.weight.copy_(model.head.weight)
        hf.classifier.bias.copy_(model.head.bias)
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    tok.pad_token, tok.cls_token, tok.sep_token, tok.unk_token = "[PAD]", "[CLS]", "[SEP]", "[UNK]"
    return hf, tok


def read_dev(path: Path) -> list[tuple[str, str]]:
    rows = [line.rstrip("\r\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    return [(r[0].strip(), r[1].strip()) for r in rows if r and r[0].strip()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("runs/sst2-minilm/finetune/pretrained/model"))
    p.add_argument("--batch", type=int, default=64, help="lmforge's batch and the pipeline's batched setting")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per setting (plus one warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny run to check the script works (results not saved)")
    p.add_argument("--note", default="")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.max_examples = 1, a.max_examples or 64
    if not (a.model / "task.json").exists():
        raise SystemExit(f"{a.model} is not a fine-tuned model: run `lmforge run recipes/classify/sst2-minilm.yaml` "
                         "first or pass --model")
    torch.set_num_threads(a.threads)
    load_before = [round(x, 2) for x in os.getloadavg()]
    dev = read_dev(DEV)[: a.max_examples]
    sentences = [s for s, _ in dev]

    t = time.perf_counter()
    task, model, tok = load_task_model(a.model)
    load_lmforge = time.perf_counter() - t
    max_len = task.cfg.max_len
    with tempfile.TemporaryDirectory() as d:
        hf, hf_tok = to_hf(model, a.model, Path(d))
    pipes = {"pipeline(batch_size=default)": (transformers.pipeline("text-classification", model=hf, tokenizer=hf_tok,
                                                                    device=-1), None)}
    pipes[f"pipeline(batch_size={a.batch})"] = (pipes["pipeline(batch_size=default)"][0], a.batch)
    default_bs = getattr(pipes["pipeline(batch_size=default)"][0], "_batch_size", None)

    def run_lmforge():
        examples = [task.example(s, i) for i, s in enumerate(sentences)]
        for e in examples:  # Classification.encode reads example["label"], which a raw text lacks (reported
            e.setdefault("label", None)  # with a fix in /work/notes/classify-patch.diff); no label = no target
        return [p["label"] for p in predict_features(task, model, tok, encode_all(task, examples, tok), a.batch)]

    def runner(pipe, bs):
        kw = {"batch_size": bs} if bs else {}
        return lambda: [o["label"] for o in pipe(sentences, truncation=True, max_length=max_len, **kw)]

    runs = {"lmforge": run_lmforge, **{n: runner(pp, bs) for n, (pp, bs) in pipes.items()}}
    labels = {n: fn() for n, fn in runs.items()}  # warm-up round, and the parity check
    agree = {n: round(sum(x == y for x, y in zip(labels["lmforge"], v)) / len(sentences), 4) for n, v in labels.items()}
    accuracy = {n: round(sum(x == y for x, (_, y) in zip(v, dev)) / len(dev), 4) for n, v in labels.items()}
    rates: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(a.rounds):
        for n, fn in runs.items():
            t = time.perf_counter()
            fn()
            rates[n].append(len(sentences) / (time.perf_counter() - t))
            print(f"{n:30s} {rates[n][-1]:8.1f} sentences/s", flush=True)
    results = {"command": "python " + " ".join([sys.argv[0].replace(str(Path.cwd()) + "/", "")] + (argv or sys.argv[1:])),
               "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items() if k not in ("quick", "note")},
               "note": a.note, "sentences": len(sentences), "max_len": max_len, "pooling": model.pooling,
               "pipeline_default_batch_size": default_bs,
               "label_agreement_with_lmforge": agree, "dev_accuracy": accuracy,
               "lmforge_model_load_s": round(load_lmforge, 2),
               "env": {"torch": torch.__version__, "transformers": transformers.__version__,
                       "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                       "threads": torch.get_num_threads(), "dtype": "float32",
                       "hf_attn_implementation": getattr(hf.config, "_attn_implementation", None),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_before": load_before}}
    base = {n: max(r) for n, r in rates.items()}
    med = {n: statistics.median(r) for n, r in rates.items()}
    for n, r in rates.items():
        results[n] = {"best_sentences_per_s": round(base[n], 1), "median_sentences_per_s": round(med[n], 1),
                      "rounds": [round(x, 1) for x in r]}
    for n in rates:
        if n != "lmforge":
            results[n]["lmforge_speedup_best"] = round(base["lmforge"] / base[n], 3)
            results[n]["lmforge_speedup_median"] = round(med["lmforge"] / med[n], 3)
    results["env"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({n: results[n] for n in rates} | {"agreement": agree}, indent=1))
    if a.quick:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "predict_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = [f"| {n} | {results[n]['best_sentences_per_s']:.1f} | {results[n]['median_sentences_per_s']:.1f} | "
            + (f"{results[n]['lmforge_speedup_best']:.2f}x | {results[n]['lmforge_speedup_median']:.2f}x" if n != "lmforge"
               else "- | -") + f" | {agree[n]:.2%} | {accuracy[n]:.4f} |" for n in rates]
    md = ["# Prediction speed: lmforge predict vs transformers pipeline (SST-2 dev, fine-tuned all-MiniLM-L6-v2)", "",
          f"Command: `{results['command']}`", "", f"Environment: {json.dumps(results['env'])}", "",
          *([f"Note: {a.note}", ""] if a.note else []), f"Settings: {json.dumps(results['settings'])}", "",
          f"{len(sentences)} sentences, max_len {max_len}, pooling {model.pooling}; the pipeline's own default "
          f"batch_size is {default_bs} (one sentence per forward pass).", "",
          "| predictor | sentences/s (best round) | (median) | lmforge speed-up (best) | (median) | same label as lmforge | dev accuracy |",
          "|---|---|---|---|---|---|---|", *rows, "",
          "Model loading is not timed (lmforge loads in "
          f"{results['lmforge_model_load_s']} s). The Hugging Face model carries the same weights: body exported with "
          "`export_hf` (BERT layout), head copied into a BertPreTrainedModel subclass with lmforge's pooling."]
    (RESULTS / "predict_speed.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
