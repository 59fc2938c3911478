"""Translation and summarization: text in, text out, on the encoder-decoder body (models/seq2seq.py).

The body IS the model: labels are the target ids + EOS, decoder inputs their ``shift_right`` behind
the start token, the loss the summed token cross-entropy (optionally label-smoothed) over target
tokens. Predictions decode with beam search (``num_beams``) or greedily; evaluation during training
decodes with ``eval_decode`` (greedy by default: beam search on every evaluation is slow on a CPU).

Data, by what the path names (``finetune.data.*``, ``lmforge evaluate --data``):

* a ``.jsonl``/``.json``/``.csv``/``.tsv`` file (optionally .gz/.zst): one pair per record,
  ``source_field`` and ``target_field`` by name or column number;
* a PREFIX for line-aligned files ``PREFIX.<source_lang>`` and ``PREFIX.<target_lang>`` (the
  Multi30k / fairseq layout, e.g. ``multi30k/train`` -> ``train.en`` + ``train.de``); naming one of
  the two files works too;
* an LCSTS ``PART_*.txt`` file (``<doc id=N> <human_label> <summary> <short_text>`` blocks): records
  with ``short_text``/``summary``/``human_label`` (also as ``source``/``target``);
* any of them followed by ``#FIELD OP VALUE`` selects records, e.g. ``PART_III.txt#human_label>=3``
  (the standard LCSTS test set) or ``xsum.jsonl#line>900`` (``line`` is the record's line number),
  so a recipe can carve train and test out of one file without a hand-made copy.
"""

from __future__ import annotations

import operator
import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError, InputError
from .base import Task, WarningCounter, attention_mask, field_value, pad_batch, register, require_examples

RECORD_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv")
_SELECT_RE = re.compile(r"^(?P<path>.+?)#(?P<field>[\w.]+)\s*(?P<op>>=|<=|==|!=|=|>|<)\s*(?P<value>.+)$")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
        "=": operator.eq, "!=": operator.ne}
_LCSTS_RE = re.compile(r"<doc id=(\d+)>\s*<human_label>\s*(\d+)\s*</human_label>\s*<summary>(.*?)</summary>\s*"
                       r"<short_text>(.*?)</short_text>\s*</doc>", re.S)


class _Seq2SeqConfig(StrictModel):
    source_field: str | int = Field("source", description="jsonl/csv/tsv field (or column number) of the input text")
    target_field: str | int = Field("target", description="field of the output text")
    source_lang: str | None = Field(None, description="line-aligned files: suffix of the source file (PREFIX.en)")
    target_lang: str | None = Field(None, description="suffix of the target file; also the metrics' language "
                                    "(zh: sacreBLEU's zh tokenizer; unset = detected from the references)")
    id_field: str | None = None
    header: bool | None = Field(None, description="csv/tsv: first row is a header (None = detect)")
    max_source_len: int = Field(256, ge=2, description="source tokens; longer sources are cut (counted warning)")
    max_target_len: int = Field(128, ge=2, description="target tokens incl. EOS; longer targets are cut")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    num_beams: int = Field(4, ge=1, description="beam size for predictions (1 = greedy)")
    length_penalty: float = Field(1.0, description="beam score = logprob / length**length_penalty")
    max_new_tokens: int | None = Field(None, ge=1, description="decoding limit (unset = max_target_len)")
    min_new_tokens: int = Field(0, ge=0)
    eval_decode: Literal["greedy", "beam"] = Field("greedy", description="decoding for the validation metrics "
                                                   "during training (greedy is num_beams times cheaper)")

    def data_files(self, path: str) -> list[str]:
        """The files a data path reads (a PREFIX is two files; a ``#selector`` is not part of the name),
        so the recipe cache can hash what the task really reads."""
        file, _ = split_selector(path)
        aligned = None if file.lower().endswith(RECORD_SUFFIXES) else line_aligned_files(
            file, self.source_lang, self.target_lang)
        return [str(p) for p in aligned] if aligned else [file]



class TranslationConfig(_Seq2SeqConfig):
    kind: Literal["translation"] = "translation"
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class SummarizationConfig(_Seq2SeqConfig):
    kind: Literal["summarization"] = "summarization"
    use_stemmer: bool = Field(True, description="ROUGE: Porter stemming of English words (rouge-score's option)")


# -------------------------------------------------------------------------------------------------
# Reading


def split_selector(path: str | Path) -> tuple[str, tuple[str, str, str] | None]:
    """``"FILE#field>=3"`` -> ("FILE", ("field", ">=", "3")); a plain path -> (path, None)."""
    m = _SELECT_RE.match(str(path))
    if not m:
        return str(path), None
    return m["path"], (m["field"], m["op"], m["value"].strip())


def _selected(value, op: str, want: str) -> bool:
    try:
        return _OPS[op](float(value), float(want))
    except (TypeError, ValueError):
        if op not in ("==", "=", "!="):
            return False  # a non-number never passes a numeric comparison
        return _OPS[op](str(value), want)


def line_aligned_files(prefix: str, source_lang: str | None, target_lang: str | None) -> tuple[Path, Path] | None:
    """(PREFIX.src, PREFIX.tgt) when ``prefix`` names line-aligned files (or one of them), else None."""
    if not source_lang or not target_lang:
        return None
    p = str(prefix)
    for lang in (source_lang, target_lang):
        if p.endswith("." + lang) and not Path(p + "." + source_lang).exists():
            p = p[: -len(lang) - 1]
            break
    src, tgt = Path(f"{p}.{source_lang}"), Path(f"{p}.{target_lang}")
    return (src, tgt) if src.exists() or tgt.exists() else None


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte {e.start})", "convert the file to UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return [line.rstrip("\r") for line in lines]


def read_line_aligned(src: Path, tgt: Path) -> list[tuple[int, dict]]:
    """(line, {"source", "target"}) for line-aligned files; both must exist and have as many lines."""
    for p in (src, tgt):
        if not p.exists():
            other = tgt if p == src else src
            raise InputError(f"file not found: {p} (its pair {other} exists)",
                             "line-aligned data needs both PREFIX.<source_lang> and PREFIX.<target_lang>")
    a, b = _read_lines(src), _read_lines(tgt)
    if len(a) != len(b):
        raise InputError(f"line-aligned files differ in length: {src} has {len(a):,} lines, {tgt} has {len(b):,}",
                         "each line of the source file must pair with the same line of the target file")
    return [(i, {"source": s, "target": t}) for i, (s, t) in enumerate(zip(a, b), 1)]


def read_lcsts(path: Path) -> list[tuple[int, dict]]:
    """LCSTS ``PART_*.txt`` blocks -> (line of the ``<doc>``, record); whitespace around texts stripped."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _LCSTS_RE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        summary, short = m[3].strip(), m[4].strip()
        out.append((line, {"id": m[1], "human_label": int(m[2]), "summary": summary, "short_text": short,
                           "source": short, "target": summary}))
    if not out and text.strip():
        raise InputError(f"{path}: no LCSTS <doc> blocks found",
                         "use jsonl/csv/tsv with source and target fields, or PREFIX.<lang> line-aligned files")
    return out


def _is_lcsts(path: Path) -> bool:
    if path.suffix.lower() != ".txt" or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(256).lstrip().startswith("<doc")


# -------------------------------------------------------------------------------------------------
# The task


class _Seq2Seq(Task):
    """What translation and summarization share: everything but the metrics."""

    def __init__(self, cfg: _Seq2SeqConfig, state: dict | None = None):
        super().__init__(cfg, state)
        self.warnings = WarningCounter()
        self._in_training = False  # set by fit(): validation during training uses eval_decode

    # -- data ---------------------------------------------------------------------------------
    def read(self, path) -> list[dict]:
        from ..data.readers import read_records

        cfg = self.cfg
        file, select = split_selector(path)
        p = Path(file)
        records = p.name.lower().endswith(tuple(s + c for s in RECORD_SUFFIXES for c in ("", ".gz", ".zst")))
        aligned = None if records else line_aligned_files(file, cfg.source_lang, cfg.target_lang)
        src_key, tgt_key, shown, name = cfg.source_field, cfg.target_field, file, p.name
        if aligned is not None:
            rows, src_key, tgt_key, shown = read_line_aligned(*aligned), "source", "target", str(aligned[0])
            name = Path(str(aligned[0])[: -len(str(cfg.source_lang)) - 1]).name
        elif not records and _is_lcsts(p):
            rows = read_lcsts(p)
        elif not records and not p.exists():
            hint = ("line-aligned data: PREFIX.<source_lang> and PREFIX.<target_lang> must exist"
                    if cfg.source_lang and cfg.target_lang else "for line-aligned files PREFIX.en/PREFIX.de set "
                    "finetune.task.source_lang and target_lang; else give a jsonl/csv/tsv file")
            raise InputError(f"file not found: {file}", hint)
        else:
            rows = list(read_records(file, header=cfg.header))
        out = []
        for line, rec in rows:
            if select is not None:
                field, op, want = select
                value = line if field == "line" else field_value(rec, field, shown, line, "selector", "the path's #FIELD")
                if not _selected(value, op, want):
                    continue
            src = field_value(rec, src_key, shown, line, "source", "finetune.task.source_field")
            tgt = field_value(rec, tgt_key, shown, line, "target", "finetune.task.target_field")
            src, tgt = ("" if src is None else str(src)).strip(), ("" if tgt is None else str(tgt)).strip()
            where = f"{shown}:{line}"
            if not src:
                self.warnings.add("empty source text", where)
            if not tgt:
                self.warnings.add("empty target text", where)
            rid = rec.get(cfg.id_field) if cfg.id_field else rec.get("id")
            out.append({"id": str(rid) if rid is not None else f"{name}:{line}", "source": src, "target": tgt,
                        "line": line})
        if not out and rows and select is not None:
            raise InputError(f"{path}: the selector #{''.join(select)} keeps no records",
                             "check the field name and value after '#'")
        return require_examples(out, path)

    def fit(self, examples: list[dict]) -> None:
        self._in_training = True

    def example(self, value, i: int = 0) -> dict:
        if isinstance(value, dict):
            src = value.get("source", value.get(str(self.cfg.source_field), value.get("text", "")))
            return {"id": str(value.get("id", i)), "source": str(src), "target": str(value.get("target", ""))}
        return {"id": str(i), "source": str(value), "target": ""}

    def _limits(self) -> tuple[int, int]:
        block = self.state.get("block_size")
        src, tgt = self.cfg.max_source_len, self.cfg.max_target_len
        return (min(src, block), min(tgt, block)) if block else (src, tgt)

    def encode(self, example: dict, tok) -> dict:
        max_src, max_tgt = self._limits()
        src = tok.encode(example["source"])
        if len(src) > max_src:
            self.warnings.add(f"source longer than {max_src} tokens (max_source_len / the model's context), cut",
                              example["id"])
            src = src[:max_src]
        tgt = tok.encode(example["target"]) if example.get("target") else []
        eos = [tok.eos_id] if tok.eos_id is not None else []
        if len(tgt) + len(eos) > max_tgt:
            self.warnings.add(f"target longer than {max_tgt} tokens (max_target_len), cut for training",
                              example["id"])
            tgt = tgt[: max_tgt - len(eos)]
        return {"input_ids": src or [tok.pad_id or 0], "labels": tgt + eos}

    def collate(self, features: list[dict], tok) -> dict[str, torch.Tensor]:
        from ..models.seq2seq import shift_right

        src = [f["input_ids"] for f in features]
        tgt = [f["labels"] for f in features]
        pad = tok.pad_id or 0
        labels = pad_batch(tgt, -100)
        start = tok.bos_id if tok.bos_id is not None else (tok.eos_id if tok.eos_id is not None else pad)
        batch = {"input_ids": pad_batch(src, pad), "attention_mask": attention_mask(src), "labels": labels,
                 "decoder_input_ids": shift_right(labels, self.state.get("decoder_start_token_id", start), pad)}
        if all("teacher_ids" in f for f in features):  # distillation: the teacher's top-k (tasks/distill.py)
            from .distill import topk_rows

            batch.update(topk_rows(features))
        return batch

    def length(self, features: dict) -> int:
        return max(len(features["input_ids"]), len(features["labels"]))

    # -- model --------------------------------------------------------------------------------
    def build_model(self, body, tok):
        from ..models.seq2seq import Seq2Seq

        if not isinstance(body, Seq2Seq):
            kind = body.config.to_dict().get("model_type", type(body).__name__)
            raise ConfigError(f"{self.kind} needs an encoder-decoder (seq2seq) body, got a '{kind}' model",
                              "train from zero with finetune.model: {family: seq2seq, ...} or init_from a seq2seq "
                              "pretrain output")
        c = body.config
        if c.vocab_size < tok.vocab_size:
            raise ConfigError(f"the model's vocab_size {c.vocab_size} is smaller than the tokenizer's {tok.vocab_size}",
                              "fine-tune with the tokenizer the body was trained with")
        for key, n in (("max_source_len", self.cfg.max_source_len), ("max_target_len", self.cfg.max_target_len)):
            if n > c.block_size:
                raise ConfigError(f"finetune.task.{key}={n} exceeds the model's block_size={c.block_size}",
                                  f"lower {key} to at most {c.block_size} or raise finetune.model.block_size")
        self.state.update(block_size=c.block_size, decoder_start_token_id=c.decoder_start_token_id,
                          eos_token_id=c.eos_token_id)
        return body

    def _logits(self, model, batch) -> torch.Tensor:
        """(B, target length, vocab): teacher-forced next-token logits."""
        return model(batch["input_ids"], batch["decoder_input_ids"], attention_mask=batch["attention_mask"])[0]

    def loss(self, model, batch):
        from .distill import sequence_kd

        logits = self._logits(model, batch).float()
        labels = batch["labels"]
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100,
                               reduction="sum", label_smoothing=self.cfg.label_smoothing)
        count = int((labels != -100).sum())
        return sequence_kd(self, logits, batch, loss, count, model.training), count

    def count(self, batch) -> int:
        return int((batch["labels"] != -100).sum())

    def tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())

    @torch.no_grad()
    def predict(self, model, batch, tok, features) -> list[dict]:
        from ..models.generate import SamplingConfig

        beams = 1 if self._in_training and self.cfg.eval_decode == "greedy" else self.cfg.num_beams
        max_new = self.cfg.max_new_tokens or self._limits()[1]
        eos = self.state.get("eos_token_id", tok.eos_id)
        cfg = SamplingConfig(max_new_tokens=max_new, temperature=0.0, top_k=None, eos_token_id=eos,
                             min_new_tokens=self.cfg.min_new_tokens)
        ids = model.generate(batch["input_ids"], cfg, attention_mask=batch["attention_mask"], num_beams=beams,
                             length_penalty=self.cfg.length_penalty)
        return [{"prediction": tok.decode(seq, skip_special_tokens=True).strip()} for seq in ids]

    # -- scoring ------------------------------------------------------------------------------
    def _texts(self, predictions, examples) -> tuple[list[str], list[str]]:
        return [p["prediction"] for p in predictions], [e["target"] for e in examples]

    def _lengths(self, predictions, examples) -> dict:
        from ..eval.textmetrics import length_stats, tokenize

        hyps, refs = self._texts(predictions, examples)
        out = length_stats(hyps, refs)
        src = [len(tokenize(e["source"])) for e in examples]
        out.update(source_mean=float(np.mean(src)), source_median=float(np.median(src)),
                   unit="words (CJK: characters)")
        return out

    def reference(self, example: dict):
        return example["target"]

    def example_errors(self, prediction: dict, example: dict) -> dict | None:
        if prediction["prediction"] == example["target"]:
            return None
        return {"id": example["id"], "source": example["source"], "reference": example["target"],
                "predicted": prediction["prediction"]}


@register
class Translation(_Seq2Seq):
    kind = "translation"
    headline = ("bleu", "chrf")

    def metrics(self, predictions: list[dict], examples: list[dict]) -> dict:
        from ..eval.textmetrics import bleu, chrf

        hyps, refs = self._texts(predictions, examples)
        b = bleu(hyps, refs, lang=self.cfg.target_lang)
        c = chrf(hyps, refs, lang=self.cfg.target_lang)
        return {"bleu": b["bleu"], "chrf": c["chrf"], "bleu_signature": b["signature"],
                "chrf_signature": c["signature"], "precisions": b["precisions"], "bp": b["bp"],
                "sys_len": b["sys_len"], "ref_len": b["ref_len"], "tokenize": b["tokenize"],
                "lengths": self._lengths(predictions, examples)}

    def subset_scores(self, predictions, examples, index_sets):
        """Corpus BLEU/chrF of each resample from per-sentence statistics computed once."""
        from ..eval.textmetrics import bleu_fn, chrf_fn

        hyps, refs = self._texts(predictions, examples)
        fb, fc = bleu_fn(hyps, refs, lang=self.cfg.target_lang), chrf_fn(hyps, refs, lang=self.cfg.target_lang)
        out = {"bleu": [], "chrf": []}
        for idx in index_sets:
            out["bleu"].append(fb(idx))
            out["chrf"].append(fc(idx))
        return out


@register
class Summarization(_Seq2Seq):
    kind = "summarization"
    headline = ("rouge1", "rouge2", "rougeL")

    def _rouge_lang(self) -> str | None:
        return "en" if self.cfg.target_lang == "en" else None  # "en" = rouge-score exactly; else CJK-aware

    def metrics(self, predictions: list[dict], examples: list[dict]) -> dict:
        from ..eval.textmetrics import rouge

        hyps, refs = self._texts(predictions, examples)
        r = rouge(hyps, refs, lang=self._rouge_lang(), use_stemmer=self.cfg.use_stemmer)
        return {**r, "lengths": self._lengths(predictions, examples)}

    def subset_scores(self, predictions, examples, index_sets):
        """Mean per-example ROUGE of each resample (ROUGE is an average, so examples are its statistics)."""
        from ..eval.textmetrics import rouge_per_example

        hyps, refs = self._texts(predictions, examples)
        per = rouge_per_example(hyps, refs, lang=self._rouge_lang(), use_stemmer=self.cfg.use_stemmer)
        return {k: [float(per[k][idx].mean() * 100) for idx in index_sets] for k in self.headline}


CONFIG = (TranslationConfig, SummarizationConfig)
