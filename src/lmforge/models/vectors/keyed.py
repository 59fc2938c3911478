"""WordVectors: lookup, nearest neighbours, analogies, similarity, and the standard evaluations.

Evaluations follow gensim's ``evaluate_word_analogies`` / ``evaluate_word_pairs`` (3CosAdd over the
first ``restrict_vocab`` words, case-insensitive, questions with unknown words skipped and counted)
so our numbers and gensim's mean the same thing; tests check they agree on the same vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import InputError
from .io import Format, read_vectors, write_vectors
from .subwords import SubwordTable

SUBWORDS_FILE = "subwords.safetensors"
META_FILE = "vectors_meta.json"


class WordVectors:
    """Words, their vectors (float32, frequent first) and, for fastText models, the n-gram table."""

    def __init__(self, words: list[str], vectors: np.ndarray, subwords: SubwordTable | None = None):
        self.words = list(words)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.subwords = subwords
        self._unit: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def unit(self) -> np.ndarray:
        """Rows scaled to length 1 (zero rows stay zero), computed once."""
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = self.vectors / np.maximum(norms, 1e-12)
        return self._unit

    def has_vector(self, word: str) -> bool:
        return word in self.index or (self.subwords is not None and self.subwords.vector(word) is not None)

    def vector(self, word: str) -> np.ndarray:
        """The word's vector; unknown words get one from their n-grams when the model has subwords."""
        i = self.index.get(word)
        if i is not None:
            return self.vectors[i]
        if self.subwords is not None:
            v = self.subwords.vector(word)
            if v is not None:
                return v
        raise InputError(f"'{word}' is not in the vocabulary ({len(self)} words)",
                         "try another word" + ("" if self.subwords else ", or train with subwords=true for OOV vectors"))

    __getitem__ = vector

    def _unit_of(self, word: str) -> np.ndarray:
        i = self.index.get(word)
        if i is not None:
            return self.unit[i]
        v = self.vector(word)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity."""
        return float(self._unit_of(a) @ self._unit_of(b))

    def most_similar(self, positive: str | list[str], negative: list[str] | tuple = (), topn: int = 10,
                     restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """Words closest (cosine) to mean(unit(positive)) - unit(negative); the query words are left out."""
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = list(negative)
        if not positive and not negative:
            raise InputError("most_similar needs at least one word", "pass a word")
        q = sum(self._unit_of(w) for w in positive) - sum((self._unit_of(w) for w in negative), np.zeros(self.dim))
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        n = len(self) if restrict_vocab is None else min(restrict_vocab, len(self))
        sims = self.unit[:n] @ q.astype(np.float32)
        for w in positive + negative:
            i = self.index.get(w)
            if i is not None and i < n:
                sims[i] = -np.inf
        k = min(topn, n)
        top = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.argsort(-sims[top])]
        return [(self.words[i], float(sims[i])) for i in top if np.isfinite(sims[i])]

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """a is to b as c is to ?  (3CosAdd: nearest to b - a + c)."""
        return self.most_similar([b, c], [a], topn=topn)

    # -- evaluation ------------------------------------------------------------------------------

    def _ok_vocab(self, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
        first = self.words[:restrict_vocab]
        if not case_insensitive:
            return {w: i for i, w in enumerate(first)}
        out: dict[str, int] = {}
        for i in range(len(first) - 1, -1, -1):  # the most frequent casing wins, as in gensim
            out[first[i].upper()] = i
        return out

    def evaluate_analogies(self, path: str | Path, restrict_vocab: int = 300_000, case_insensitive: bool = True,
                           batch: int = 512) -> dict:
        """Accuracy on an analogy file (': section' headers, 'a b c d' lines) over covered questions."""
        ok = self._ok_vocab(restrict_vocab, case_insensitive)
        n = min(restrict_vocab, len(self))
        sections: dict[str, dict] = {}
        questions: list[tuple[str, int, int, int, int]] = []
        skipped = 0
        section = "(none)"
        for lineno, line in _read_lines(path):
            if line.startswith(":"):
                section = line[1:].strip()
                sections.setdefault(section, {"correct": 0, "total": 0, "oov": 0})
                continue
            parts = line.split()
            if len(parts) != 4:
                raise InputError(f"{path}:{lineno}: expected 4 words 'a b c d', got {len(parts)}",
                                 "analogy files hold ': section' headers and 'a b c d' lines")
            sections.setdefault(section, {"correct": 0, "total": 0, "oov": 0})
            keys = [p.upper() for p in parts] if case_insensitive else parts
            if any(k not in ok for k in keys):
                skipped += 1
                sections[section]["oov"] += 1
                continue
            questions.append((section, *(ok[k] for k in keys)))
        unit = self.unit[:n]
        upper = [w.upper() for w in self.words[:n]] if case_insensitive else self.words[:n]
        for lo in range(0, len(questions), batch):
            qs = questions[lo:lo + batch]
            idx = np.array([q[1:] for q in qs], dtype=np.int64)  # a b c d
            query = unit[idx[:, 1]] + unit[idx[:, 2]] - unit[idx[:, 0]]
            sims = query @ unit.T  # (B, n); normalising the query does not change the ranking
            rows = np.arange(len(qs))[:, None]
            sims[rows, idx[:, :3]] = -np.inf
            top = np.argpartition(-sims, min(4, n - 1), axis=1)[:, :5]  # gensim looks at topn=5
            for r, q in enumerate(qs):
                cand = top[r][np.argsort(-sims[r, top[r]])]
                ignore = {upper[q[1]], upper[q[2]], upper[q[3]]}
                pred = next((int(i) for i in cand if upper[i] not in ignore), -1)
                s = sections[q[0]]
                s["total"] += 1
                s["correct"] += int(pred >= 0 and upper[pred] == upper[q[4]])
        correct = sum(s["correct"] for s in sections.values())
        total = sum(s["total"] for s in sections.values())
        return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total,
                "oov_questions": skipped, "coverage": total / (total + skipped) if total + skipped else 0.0,
                "sections": sections}

    def evaluate_word_pairs(self, path: str | Path, restrict_vocab: int = 300_000, case_insensitive: bool = True,
                            delimiter: str = "\t") -> dict:
        """Spearman/Pearson between cosine and human scores ('#' comments, 'w1<TAB>w2<TAB>score' lines)."""
        from scipy import stats

        ok = self._ok_vocab(restrict_vocab, case_insensitive)
        gold, model = [], []
        oov = 0
        for lineno, line in _read_lines(path):
            if line.startswith("#"):
                continue
            parts = line.split(delimiter)
            if len(parts) < 3:
                raise InputError(f"{path}:{lineno}: expected 'word1{delimiter!r}word2{delimiter!r}score'",
                                 "word-pair files are tab-separated with '#' comment lines")
            a, b = (parts[0].upper(), parts[1].upper()) if case_insensitive else (parts[0], parts[1])
            try:
                score = float(parts[2])
            except ValueError:
                raise InputError(f"{path}:{lineno}: score '{parts[2]}' is not a number", "fix the line") from None
            if a not in ok or b not in ok:
                oov += 1
                continue
            gold.append(score)
            model.append(float(self.unit[ok[a]] @ self.unit[ok[b]]))
        n = len(gold)
        ok_stats = n >= 3
        return {"spearman": float(stats.spearmanr(gold, model)[0]) if ok_stats else float("nan"),
                "pearson": float(stats.pearsonr(gold, model)[0]) if ok_stats else float("nan"),
                "pairs": n, "oov_pairs": oov, "oov_ratio": oov / (n + oov) if n + oov else 0.0}

    # -- files -----------------------------------------------------------------------------------

    def save(self, path: str | Path, fmt: Format = "word2vec") -> Path:
        return write_vectors(path, self.words, self.vectors, fmt)

    @classmethod
    def load(cls, path: str | Path, limit: int | None = None) -> "WordVectors":
        """A vector file (any of the three formats) or a `vectors train` directory (subwords included)."""
        path = Path(path)
        subwords = None
        if path.is_dir():
            directory = path
            path = directory / "vectors.txt"
            if not path.is_file():
                raise InputError(f"{directory} holds no vectors.txt", "pass the output directory of `lmforge vectors train`")
            if (directory / SUBWORDS_FILE).is_file():
                subwords = _load_subwords(directory)
        words, matrix = read_vectors(path, limit=limit)
        return cls(words, matrix, subwords)


def _load_subwords(directory: Path) -> SubwordTable:
    from safetensors.numpy import load_file

    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        matrix = load_file(str(directory / SUBWORDS_FILE))["ngrams"]
        return SubwordTable(matrix, int(meta["min_n"]), int(meta["max_n"]))
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{directory}: unreadable subword table ({err})",
                         f"{SUBWORDS_FILE} and {META_FILE} must come from `lmforge vectors train`") from None


def save_subwords(directory: Path, table: SubwordTable) -> None:
    from safetensors.numpy import save_file

    save_file({"ngrams": table.matrix}, str(directory / SUBWORDS_FILE))
    (directory / META_FILE).write_text(json.dumps({"min_n": table.min_n, "max_n": table.max_n,
                                                   "bucket": table.bucket, "hash": "fnv1a32-utf8"}) + "\n")


def _read_lines(path: str | Path):
    """(line number, text) of a UTF-8 evaluation file, CRLF-tolerant; bad bytes name the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"evaluation file not found: {path}", "check the path")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InputError(f"{path}:{lineno}: not valid UTF-8", "re-encode the file as UTF-8") from None
            if line:
                yield lineno, line
