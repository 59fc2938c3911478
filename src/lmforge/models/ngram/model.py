"""The n-gram language model: train, query (vectorised), sample, save/load, evaluate.

A model is an ARPA-shaped back-off table (see estimate.py). Querying scores a whole batch of
sentences at once: for each order m, the m-gram ending at token i is found with one
``np.searchsorted`` from the (m-1)-gram ending at token i-1, then the longest match's log10 p plus
the back-offs of the longer contexts that were missed give log10 p(w_i | history), exactly as a
reader of the ARPA file (KenLM, SRILM) computes it.

Model directory: ``config.json`` (``model_type: ngram``), ``vocab.txt`` (one word a line, id order),
``model.npz`` (numpy arrays, loaded with ``allow_pickle=False``) and ``model.arpa``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ...errors import ConfigError, InputError
from .arpa import read_arpa, write_arpa
from .config import SPACE, NgramConfig, iter_lines, make_tokenizer
from .counts import BOS_ID, EOS_ID, UNK_ID, Vocab, count_files, encode_sentences, pack, unpack
from .estimate import estimate
from .query import KeyHash, Scorer, numba
from .bytesplit import blank_unicode_spaces

MODEL_TYPE = "ngram"
BATCH_TOKENS = 200_000  # tokens scored per vectorised batch when streaming a file


class NgramLM:
    """Back-off n-gram model: ``logp[n-1]``/``bow[n-1]`` are log10 values of the n-grams in ``keys[n-1]``."""

    def __init__(self, cfg: NgramConfig, words: list[str], keys: list[np.ndarray | None],
                 logp: list[np.ndarray], bow: list[np.ndarray], counts: list[np.ndarray] | None = None,
                 info: dict | None = None):
        self.cfg = cfg
        self.vocab = Vocab()
        self.vocab.index = dict(zip(words, range(len(words))))
        self.keys, self.logp, self.bow, self.counts = keys, logp, bow, counts
        self.info = info or {}
        self.tokenize = make_tokenizer(cfg)
        self._hash: list | None = None  # per-order hash tables over the keys, built at the first query
        self._scorer: Scorer | None = None  # the compiled query path (numba), built at the first query

    @property
    def order(self) -> int:
        return len(self.logp)

    @property
    def words(self) -> list[str]:
        return self.vocab.words

    # ---- querying -------------------------------------------------------------------------------

    def _tables(self) -> list:
        if self._hash is None:
            self._hash = [None] + [KeyHash(k) for k in self.keys[1:]]
        return self._hash

    def scorer(self) -> Scorer | None:
        """The compiled query path, or None without numba (then numpy gives the same numbers)."""
        if numba is None:
            return None
        if self._scorer is None:
            self._scorer = Scorer(self.words, self.logp, self.bow, self.keys, BOS_ID, EOS_ID, UNK_ID)
        return self._scorer

    def _matches(self, ids: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
        """idx[m-1][i]: index of the m-gram ending at token i in table m, or -1."""
        self._tables()
        idx = [ids]
        for m in range(2, self.order + 1):
            prev = idx[-1]
            cur = np.full(len(ids), -1, np.int64)
            ok = np.flatnonzero((pos[1:] >= m - 1) & (prev[:-1] >= 0)) + 1
            if len(ok):
                cur[ok] = self._hash[m - 1].find(pack(prev[ok - 1], ids[ok]))
            idx.append(cur)
        return idx

    def log10_probs(self, ids: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log10 p of every token after <s> (float64) and the length of the n-gram that matched."""
        sc = self.scorer()
        if sc is not None:
            return sc.score(np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(pos, np.int64))
        return self.log10_probs_numpy(ids, pos)

    def log10_probs_numpy(self, ids: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``log10_probs`` with array operations only (no numba): one probe round per order."""
        idx = self._matches(ids, pos)
        lp = self.logp[0][ids].astype(np.float64)
        length = np.ones(len(ids), np.int64)
        for m in range(2, self.order + 1):
            has = idx[m - 1] >= 0
            lp[has] = self.logp[m - 1][idx[m - 1][has]]
            length[has] = m
        for j in range(1, self.order):  # back-off of each longer context that did not match
            ctx = idx[j - 1][:-1]
            use = np.flatnonzero((length[1:] <= j) & (pos[1:] >= j) & (ctx >= 0)) + 1
            lp[use] += self.bow[j - 1][ctx[use - 1]]
        keep = pos > 0
        return lp[keep], length[keep]

    def encode(self, lines: Iterable[str]) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        sents = [t for t in map(self.tokenize, lines) if t]
        ids, pos = encode_sentences(sents, self.vocab)
        return ids, pos, sents

    def encode_ids(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``encode`` without the token lists: for whitespace words, split and looked up in compiled
        code straight from the UTF-8 bytes (same ids as ``encode``)."""
        sc = self.scorer()
        if sc is not None and self.cfg.unit == "word" and self.cfg.segmenter == "whitespace":
            text = "\n".join(lines)
            if self.cfg.lowercase:
                text = text.lower()
            data = text.encode("utf-8")
            if data.count(b"\n") == len(lines) - 1:  # no line holds a line break of its own
                u = np.frombuffer(data, np.uint8)
                return sc.tokenize(u if data.isascii() else blank_unicode_spaces(u))
        ids, pos, _ = self.encode(lines)
        return ids, pos

    def full_scores(self, sentence: str) -> list[tuple[float, int, bool]]:
        """(log10 p, matched n-gram length, oov) per word and for </s>, like ``kenlm.Model.full_scores``."""
        ids, pos, _ = self.encode([sentence])
        if not len(ids):
            ids, pos = np.array([BOS_ID, EOS_ID]), np.array([0, 1])
        lp, length = self.log10_probs(ids, pos)
        oov = ids[pos > 0] == UNK_ID
        return [(float(a), int(b), bool(c)) for a, b, c in zip(lp, length, oov)]

    def score(self, sentence: str) -> float:
        """Total log10 probability of one sentence with <s> and </s>, like ``kenlm.Model.score``."""
        return float(sum(s for s, _, _ in self.full_scores(sentence)))

    def score_lines(self, lines: Iterable[str], per_token: bool = False) -> dict:
        """Totals over many lines (one sentence each), scored in vectorised batches of ~200k tokens."""
        total = total_in = 0.0
        tokens = oov = sentences = nbytes = 0
        rows: list[list[float]] = []
        batch: list[str] = []
        size = 0

        def flush() -> None:
            nonlocal total, total_in, tokens, oov, sentences
            ids, pos = self.encode_ids(batch)
            if not len(ids):
                return
            lp, _ = self.log10_probs(ids, pos)
            is_oov = ids[pos > 0] == UNK_ID
            total += float(lp.sum())
            total_in += float(lp[~is_oov].sum())
            tokens += len(lp)
            oov += int(is_oov.sum())
            starts = np.flatnonzero(pos == 0)
            sentences += len(starts)
            if per_token:  # sentence k's scored tokens: from its <s> to the next one, less the <s>
                ends = np.append(starts[1:], len(ids)) - np.arange(1, len(starts) + 1)
                rows.extend(np.split(np.round(lp, 6), ends[:-1]))

        for line in lines:
            batch.append(line)
            nbytes += len(line.encode("utf-8")) + 1
            size += len(line)
            if size >= BATCH_TOKENS * 4:
                flush()
                batch, size = [], 0
        flush()
        out = {"log10_prob": total, "tokens": tokens, "oov": oov, "sentences": sentences, "bytes": nbytes,
               "log10_prob_in_vocab": total_in}
        if per_token:
            out["per_token"] = [r.tolist() for r in rows]
        return out

    def perplexity(self, lines: Iterable[str]) -> float:
        s = self.score_lines(lines)
        return 10 ** (-s["log10_prob"] / max(s["tokens"], 1))

    # ---- sampling -------------------------------------------------------------------------------

    def next_probs(self, context: list[int]) -> np.ndarray:
        """p(w | context) for every word id (back-off applied), as float64; <s> gets 0."""
        p = 10.0 ** self.logp[0].astype(np.float64)
        ctx_idx = -1
        hist = [BOS_ID] + context
        hist = hist[-(self.order - 1):] if self.order > 1 else []
        for j in range(1, len(hist) + 1):  # contexts of length 1, 2, ... ending at the last word
            words = hist[-j:]
            idx = words[0]
            for m, w in enumerate(words[1:], start=2):
                t = self.keys[m - 1]
                k = pack(np.array([idx]), np.array([w]))[0]
                i = int(np.searchsorted(t, k))
                if i == len(t) or t[i] != k:
                    idx = -1
                    break
                idx = i
            if idx < 0:
                break  # a longer context cannot exist without this one
            ctx_idx = idx
            p *= 10.0 ** float(self.bow[j - 1][ctx_idx])
            t = self.keys[j]
            lo = np.searchsorted(t, np.uint64(ctx_idx) << np.uint64(32))
            hi = np.searchsorted(t, np.uint64(ctx_idx + 1) << np.uint64(32))
            _, child = unpack(t[lo:hi])
            p[child] = 10.0 ** self.logp[j][lo:hi].astype(np.float64)
        p[BOS_ID] = 0.0
        return p

    def sample(self, prompt: str = "", max_tokens: int = 50, temperature: float = 1.0,
               top_k: int | None = None, seed: int = 0, allow_unk: bool = False) -> list[str]:
        """Continue ``prompt`` one token at a time until </s> or ``max_tokens``; returns the new tokens."""
        rng = np.random.default_rng(seed)
        context = [self.vocab.index.get(t, UNK_ID) for t in self.tokenize(prompt)] if prompt.strip() else []
        words = self.words
        out: list[str] = []
        for _ in range(max_tokens):
            p = self.next_probs(context)
            if not allow_unk:
                p[UNK_ID] = 0.0
            if temperature <= 0:
                w = int(np.argmax(p))
            else:
                logits = np.log(np.maximum(p, 1e-300)) / temperature
                if top_k:
                    cut = np.partition(logits, -top_k)[-top_k]
                    logits[logits < cut] = -np.inf
                logits[p == 0] = -np.inf
                q = np.exp(logits - logits.max())
                w = int(rng.choice(len(q), p=q / q.sum()))
            if w == EOS_ID:
                break
            out.append(words[w])
            context.append(w)
        return out

    def detokenize(self, tokens: list[str]) -> str:
        if self.cfg.unit == "char":
            return "".join(tokens).replace(SPACE, " ")
        if self.cfg.segmenter == "jieba":
            return "".join(tokens)
        return " ".join(tokens)

    # ---- files ----------------------------------------------------------------------------------

    def to_arpa(self, path: str | Path) -> Path:
        return write_arpa(path, self.words, self.keys, self.logp, self.bow)

    @classmethod
    def from_arpa(cls, path: str | Path, cfg: NgramConfig | None = None) -> "NgramLM":
        t = read_arpa(path)
        order = len(t["logp"])
        if cfg is None:
            cfg = NgramConfig(order=order)
        elif cfg.order != order:
            cfg = cfg.model_copy(update={"order": order})
        return cls(cfg, t["words"], t["keys"], t["logp"], t["bow"], info={"source": str(path)})

    def save(self, out_dir: str | Path, arpa: bool = True) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for n in range(self.order):
            arrays[f"logp_{n + 1}"] = self.logp[n]
            if n:
                arrays[f"keys_{n + 1}"] = self.keys[n]
            if n < self.order - 1:
                arrays[f"bow_{n + 1}"] = self.bow[n]
            if self.counts is not None:
                arrays[f"counts_{n + 1}"] = self.counts[n]
        np.savez(out / "model.npz.tmp.npz", **arrays)
        (out / "model.npz.tmp.npz").replace(out / "model.npz")
        (out / "vocab.txt").write_text("\n".join(self.words) + "\n", encoding="utf-8")
        if arpa:
            self.to_arpa(out / "model.arpa")
        meta = {"model_type": MODEL_TYPE, "config": self.cfg.model_dump(mode="json"), "order": self.order,
                "vocab_size": len(self.words), "ngram_counts": [len(x) for x in self.logp],
                "files": {"tables": "model.npz", "vocab": "vocab.txt", "arpa": "model.arpa" if arpa else None},
                **self.info}
        (out / "config.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, model_dir: str | Path) -> "NgramLM":
        d = Path(model_dir)
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            raise InputError(f"{d} is not an n-gram model directory (no config.json)",
                             "pass the --output directory of `lmforge ngram train`")
        try:
            meta = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InputError(f"{cfg_path}:{err.lineno}: invalid JSON: {err.msg}", "restore the file") from None
        if meta.get("model_type") != MODEL_TYPE:
            raise InputError(f"{cfg_path}: model_type is {meta.get('model_type')!r}, not 'ngram'",
                             "pass an n-gram model directory")
        from ...config import validate

        cfg = validate(NgramConfig, meta.get("config", {}), str(cfg_path))
        if not (d / "model.npz").is_file():
            if (d / "model.arpa").is_file():
                return cls.from_arpa(d / "model.arpa", cfg)
            raise InputError(f"{d}: neither model.npz nor model.arpa found", "retrain or restore the model files")
        words = (d / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
        with np.load(d / "model.npz", allow_pickle=False) as z:
            order = int(meta["order"])
            logp = [z[f"logp_{n}"] for n in range(1, order + 1)]
            keys = [None] + [z[f"keys_{n}"] for n in range(2, order + 1)]
            bow = [z[f"bow_{n}"] for n in range(1, order)]
            counts = [z[f"counts_{n}"] for n in range(1, order + 1)] if "counts_1" in z.files else None
        if len(words) != len(logp[0]):
            raise InputError(f"{d / 'vocab.txt'}: {len(words)} words but model.npz has {len(logp[0])} 1-grams",
                             "the files come from different models; retrain")
        info = {k: v for k, v in meta.items() if k in ("train", "discounts", "discounts_estimated", "good_turing")}
        return cls(cfg, words, keys, logp, bow, counts, info)


def train(files: list[str | Path], cfg: NgramConfig, output: str | Path | None = None) -> NgramLM:
    """Count ``files`` (one sentence a line; directories expand), estimate, and save to ``output`` if given."""
    from ...tokenizer.corpus import expand_inputs

    paths = expand_inputs(files)
    start = time.perf_counter()
    vocab, counts = count_files(paths, cfg, make_tokenizer(cfg))
    t_count = time.perf_counter() - start
    tables = estimate(counts, cfg.smoothing, cfg.k, cfg.discount_fallback)
    info = {"train": {"files": [str(p) for p in paths], "sentences": counts.sentences, "tokens": counts.tokens,
                      "count_seconds": round(t_count, 3),
                      "seconds": round(time.perf_counter() - start, 3)}, **tables.info}
    model = NgramLM(cfg, vocab.words, counts.keys, tables.logp, tables.bow, counts.counts, info)
    if output is not None:
        model.save(output)
    return model


def _lines(path: Path) -> Iterator[str]:
    for _, line in iter_lines(path):
        yield line


def evaluate_file(model_dir: str | Path, data_file: str | Path, per_token_out: str | Path | None = None) -> dict:
    """Perplexity of an n-gram model directory on a text file (one sentence a line).

    ``loss`` is nats per token, tokens being the words plus one </s> per line (KenLM's count);
    OOV words are scored as <unk> and included. ``bits_per_byte`` divides by the UTF-8 bytes of the
    scored lines (newline included), which is comparable across tokenizations, e.g. with a
    Transformer's bits per byte on the same file.
    """
    data_file = Path(data_file)
    model = model_dir if isinstance(model_dir, NgramLM) else NgramLM.load(model_dir)
    s = model.score_lines(_lines(data_file), per_token=per_token_out is not None)
    if s["tokens"] == 0:
        raise InputError(f"{data_file}: no text to score", "pass a UTF-8 file with one sentence per line")
    words = s["tokens"] - s["sentences"]
    if words and s["oov"] >= words:
        raise InputError(f"{data_file}: all {words} words are out of the model's vocabulary",
                         f"score text in the training language and units (unit={model.cfg.unit}, "
                         f"segmenter={model.cfg.segmenter}, lowercase={model.cfg.lowercase})")
    nats = -s["log10_prob"] * math.log(10)
    in_vocab = s["tokens"] - s["oov"]
    out = {"loss": nats / s["tokens"], "perplexity": math.exp(nats / s["tokens"]),
           "perplexity_excluding_oov": 10 ** (-s["log10_prob_in_vocab"] / max(in_vocab, 1)),
           "bits_per_byte": nats / math.log(2) / s["bytes"], "tokens": s["tokens"], "sentences": s["sentences"],
           "oov": s["oov"], "oov_rate": s["oov"] / s["tokens"], "log10_prob": s["log10_prob"],
           "order": model.order, "smoothing": model.cfg.smoothing}
    if per_token_out is not None:
        with open(per_token_out, "w", encoding="utf-8") as f:
            for row in s["per_token"]:
                f.write(json.dumps(row) + "\n")
    return out


def config_from(order: int | None, overrides: list[str]) -> NgramConfig:
    """NgramConfig from ``--order`` and ``key=value`` overrides, with lmforge's one-line errors."""
    from ...config import apply_overrides, validate

    base = {"order": order} if order is not None else {}
    try:
        data = apply_overrides(base, overrides)
    except ConfigError:
        raise
    return validate(NgramConfig, data, "ngram config")
