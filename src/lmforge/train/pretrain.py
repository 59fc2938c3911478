"""The pretrain stage: a model from zero on token shards (or plain text/jsonl files).

``objective`` picks the family: ``clm`` trains a GPT decoder, ``mlm`` a BERT encoder (masked LM +
next-sentence prediction), ``seq2seq`` an encoder-decoder. Under torchrun every rank runs this
function; rank 0 encodes the text (the others wait at a barrier and read its shards) and writes all
outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch.nn as nn

from ..errors import ConfigError, InputError
from ..runs import StageResult, atomic_write_json, set_seed
from . import distributed
from .config import PretrainConfig
from .loop import Trainer
from .objectives import BertPretrainModel, CausalLM, MaskedLM, Seq2SeqLM


def build_model(cfg: PretrainConfig, vocab_size: int, tok=None) -> nn.Module:
    """The plain model for ``cfg.model`` (the trainer may wrap it; ``unwrap`` gets it back)."""
    return build_family(cfg.family, cfg.model, vocab_size, tok)


def build_family(family: str, model_cfg, vocab_size: int, tok=None) -> nn.Module:
    """A fresh model of ``family`` from a recipe's ``model`` section (train.config.ModelConfig)."""
    fields = {**model_cfg.family_dict(family), "vocab_size": vocab_size}
    if family in ("rnn", "bow"):  # their modules know how to use the tokenizer (e.g. to load word vectors)
        import importlib

        return importlib.import_module(f"..models.{family}", __package__).build_from_recipe(fields, tok)
    if family == "gpt":
        from ..models.gpt import GPT, GPTConfig

        return GPT(GPTConfig.from_dict(fields))
    if family == "bert":
        from ..models.bert import BERT, BertConfig

        return BERT(BertConfig.from_dict({**fields, "pad_token_id": _need(tok, "pad")}))
    from ..models.seq2seq import Seq2Seq, Seq2SeqConfig

    pad = tok.pad_id if tok is not None and tok.pad_id is not None else 0
    eos = tok.eos_id if tok is not None else None
    start = tok.bos_id if tok is not None and tok.bos_id is not None else (eos if eos is not None else pad)
    return Seq2Seq(Seq2SeqConfig.from_dict({**fields, "pad_token_id": pad, "decoder_start_token_id": start,
                                            "eos_token_id": eos}))


def _need(tok, role: str) -> int:
    value = getattr(tok, f"{role}_id", None) if tok is not None else None
    if value is None:
        raise ConfigError(f"the tokenizer has no {role} token, which this objective needs",
                          "train it with tokenizer.family: bert (for mlm) or seq2seq")
    return value


# -- data -------------------------------------------------------------------------------------------

def _documents(path: Path, cfg) -> list[str]:
    """Documents of one file, split by ``separator`` lines when set, the last dropped with ``drop_last``."""
    from ..tokenizer import iter_documents

    if cfg.separator is not None and path.suffix.lower() in (".txt", ".text", ".md", ""):
        text = path.read_text(encoding="utf-8")
        docs, cur = [], []
        for line in text.splitlines(keepends=True):
            if line.strip() == cfg.separator:
                docs.append("".join(cur).strip("\n"))
                cur = []
            else:
                cur.append(line)
        docs.append("".join(cur).strip("\n"))
        docs = [d for d in docs[:-1] if d] + [docs[-1]]  # keep the last (maybe cut) one for drop_last
    else:
        docs = list(iter_documents(path, cfg.txt_split))
    if cfg.drop_last and docs:
        docs = docs[:-1]
    return [d for d in docs if d]


def _encode(files: list[str], tok, out: Path, cfg) -> dict:
    from ..tokenizer import encode_corpus, expand_inputs

    paths = expand_inputs(files)
    if cfg.separator is None and not cfg.drop_last:
        return encode_corpus(paths, tok, out, txt_split=cfg.txt_split, progress=False)
    docs_file = out.with_suffix(".docs.jsonl")
    with open(docs_file, "w", encoding="utf-8") as f:
        for p in paths:
            for d in _documents(p, cfg):
                f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    try:
        return encode_corpus([docs_file], tok, out, progress=False)
    finally:
        docs_file.unlink(missing_ok=True)


def _split(tokens: np.ndarray, offsets: np.ndarray, cut: int):
    """Tokens and document offsets before and after token ``cut`` (a document may straddle it)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    head = np.concatenate([offsets[offsets < cut], [cut]])
    tail = np.concatenate([[0], offsets[offsets > cut] - cut])
    return (tokens[:cut], head), (tokens[cut:], tail)


def load_tokens(cfg: PretrainConfig, tok_dir: Path, out_dir: Path, tok):
    """((train tokens, offsets), (val tokens, offsets), val bytes/token) from the tokenizer stage's
    shards, or from ``cfg.data`` encoded here (by rank 0; cached in ``out_dir/shards``)."""
    from ..tokenizer import read_shard

    if cfg.data is None:
        train, val = Path(tok_dir) / "train.bin", Path(tok_dir) / "val.bin"
        for p in (train, val):
            if not p.exists():
                raise InputError(f"token shard missing: {p}", "run the tokenizer stage first, or set pretrain.data.train")
        stats = _read_json(Path(tok_dir) / "stats.json")
        a, b = read_shard(train), read_shard(val)
        if len(b.tokens) == 0:
            raise InputError(f"{val} is empty", "give the data stage a validation split, or set pretrain.data")
        return (a.tokens, a.doc_offsets), (b.tokens, b.doc_offsets), stats.get("val_bytes_per_token")
    shard_dir = Path(out_dir) / "shards"
    meta_path = shard_dir / "meta.json"
    if distributed.is_main() and not meta_path.exists():
        shard_dir.mkdir(parents=True, exist_ok=True)
        meta = {"train": _encode(cfg.data.train, tok, shard_dir / "train.bin", cfg.data)}
        if cfg.data.val:
            meta["val"] = _encode(cfg.data.val, tok, shard_dir / "val.bin", cfg.data)
        atomic_write_json(meta_path, meta)
    distributed.barrier()  # the other ranks read what rank 0 wrote
    meta = _read_json(meta_path)
    train = read_shard(shard_dir / "train.bin")
    if cfg.data.val:
        val = read_shard(shard_dir / "val.bin")
        return (train.tokens, train.doc_offsets), (val.tokens, val.doc_offsets), meta["val"]["bytes_per_token"]
    cut = int(len(train.tokens) * (1 - cfg.data.val_fraction))
    head, tail = _split(train.tokens, train.doc_offsets, cut)
    return head, tail, meta["train"]["bytes_per_token"]


def _read_pairs(files: list[str], tok, src_field: str, tgt_field: str, max_len: int) -> list:
    """(source ids, target ids + EOS) from jsonl/json/csv/tsv records (``data.readers.read_records``,
    the reader the tasks use); both cut to the model's block_size."""
    from ..data.readers import read_records
    from ..tokenizer import expand_inputs

    eos = [tok.eos_id] if tok.eos_id is not None else []
    pairs = []
    for path in expand_inputs(files):
        rows = []
        for line, r in read_records(str(path)):
            if src_field not in r or tgt_field not in r:
                raise InputError(f"{path}:{line}: no '{src_field}'/'{tgt_field}' fields",
                                 "set pretrain.seq2seq.source_field and target_field to the record's keys")
            rows.append(r)
        src = tok.encode_batch([str(r[src_field]) for r in rows])
        tgt = tok.encode_batch([str(r[tgt_field]) for r in rows])
        pairs += [(s[:max_len], (t + eos)[:max_len - 1]) for s, t in zip(src, tgt) if s and t]
    return pairs


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


# -- objective --------------------------------------------------------------------------------------

def build_objective(cfg: PretrainConfig, tok, tok_dir: Path, out_dir: Path):
    T, tc = cfg.model.block_size, cfg.train
    if cfg.objective == "seq2seq" and cfg.seq2seq.source_field:
        if cfg.data is None or not cfg.data.val:
            raise ConfigError("seq2seq pairs need pretrain.data.train and pretrain.data.val (jsonl files)")
        s = cfg.seq2seq
        train = _read_pairs(cfg.data.train, tok, s.source_field, s.target_field, T)
        val = _read_pairs(cfg.data.val, tok, s.source_field, s.target_field, T)
        return Seq2SeqLM(tc.batch_size, tc.seed, _start(tok), tok.pad_id or 0, tok.eos_id,
                         train_pairs=train, val_pairs=val)
    (train, train_off), (val, val_off), bpt = load_tokens(cfg, tok_dir, out_dir, tok)
    if cfg.objective == "clm":
        if len(val) <= T + 1:
            raise InputError(f"validation data has only {len(val)} tokens, fewer than block_size+1",
                             "give more validation text or lower pretrain.model.block_size")
        return CausalLM(np.asarray(train), np.asarray(val), T, tc.batch_size, tc.seed, bpt)
    if cfg.objective == "mlm":
        from ..models.bert import MaskingInfo

        m = cfg.mlm
        return MaskedLM(train, train_off, val, val_off, T, tc.batch_size, tc.seed, MaskingInfo.from_tokenizer(tok),
                        _need(tok, "cls"), _need(tok, "sep"), _need(tok, "pad"), m.mask_prob, m.whole_word, m.nsp,
                        m.short_seq_prob)
    s = cfg.seq2seq
    src_len = s.source_len or T // 2
    tgt_len = s.target_len or T - T // 2 - 1
    if src_len > T or tgt_len > T:
        raise ConfigError(f"seq2seq source_len/target_len must fit block_size={T}")
    return Seq2SeqLM(tc.batch_size, tc.seed, _start(tok), tok.pad_id or 0, tok.eos_id, train_tokens=np.asarray(train),
                     val_tokens=np.asarray(val), source_len=src_len, target_len=tgt_len, val_bytes_per_token=bpt)


def _write_docs(path: Path, tokens: np.ndarray, offsets: np.ndarray, tok, max_bytes: float = float("inf")) -> int:
    """The documents of a token stream decoded back to text, one line per line (what the n-gram reads)."""
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for a, b in zip(offsets[:-1], offsets[1:]):
            text = tok.decode(tokens[a:b].tolist(), skip_special_tokens=True).strip()
            if text:
                f.write(text + "\n")
                written += len(text.encode("utf-8")) + 1
            if written >= max_bytes:
                break
    return written


def ngram_baseline(cfg: PretrainConfig, tok, tok_dir: Path, out_dir: Path) -> dict:
    """A Kneser-Ney n-gram trained on the LM's own training text and scored on its validation text:
    an LM that does not beat it in bits per byte has not learned much yet. The text is the decoded
    token stream, so both models see exactly the same characters."""
    import tempfile
    import time

    from ..models.ngram import NgramConfig, evaluate_file, train

    b = cfg.ngram_baseline
    start = time.perf_counter()
    (tr, tr_off), (va, va_off), _ = load_tokens(cfg, tok_dir, out_dir, tok)
    with tempfile.TemporaryDirectory() as tmp:
        train_file, val_file = Path(tmp) / "train.txt", Path(tmp) / "val.txt"
        n_train = _write_docs(train_file, tr, tr_off, tok, b.max_train_mb * 1e6)
        _write_docs(val_file, va, va_off, tok)
        lm = train([train_file], NgramConfig(order=b.order, unit=b.unit, segmenter=b.segmenter))
        ev = evaluate_file(lm, val_file)
    return {"model": f"{b.order}-gram {b.unit} kneser-ney", "bits_per_byte": round(ev["bits_per_byte"], 6),
            "perplexity": round(ev["perplexity"], 4), "oov_rate": round(ev["oov_rate"], 6), "tokens": ev["tokens"],
            "train_bytes": n_train, "seconds": round(time.perf_counter() - start, 2)}


def _start(tok) -> int:
    for i in (tok.bos_id, tok.eos_id, tok.pad_id):
        if i is not None:
            return i
    return 0


def run(cfg: PretrainConfig, tok_dir: Path, out_dir: Path, progress: bool = True) -> StageResult:
    from ..tokenizer import Tok

    created = distributed.setup(cfg.train.distributed)  # no-op unless launched by torchrun
    try:
        set_seed(cfg.train.seed)
        tok = Tok.load(tok_dir)
        objective = build_objective(cfg, tok, Path(tok_dir), Path(out_dir))
        model = build_model(cfg, tok.vocab_size, tok)
        trained = BertPretrainModel(model, cfg.mlm.nsp) if cfg.objective == "mlm" else model
        trainer = Trainer(trained, objective, cfg.train, out_dir, progress=progress,
                          extra_files=sorted(Path(tok_dir).glob("tokenizer*.json")))
        result = trainer.train()
    finally:
        distributed.teardown(created)
    last = result.history[-1] if result.history else {}
    metrics = {"steps": result.steps, "tokens": result.tokens, "elapsed_s": round(result.elapsed_s, 1),
               "params": model.num_params(), "val_loss": last.get("val_loss"), "val_bpb": last.get("val_bpb"),
               "tokens_per_s": last.get("tokens_per_s")}
    if "val_accuracy" in last:
        metrics["val_accuracy"] = last["val_accuracy"]
    if cfg.objective == "clm" and cfg.ngram_baseline is not None and distributed.is_main():
        metrics["ngram"] = ngram_baseline(cfg, tok, Path(tok_dir), Path(out_dir))
        atomic_write_json(Path(out_dir) / "ngram_baseline.json", metrics["ngram"])
    return StageResult(metrics=metrics, outputs=[str(Path(out_dir) / "model")])
